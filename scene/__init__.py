"""Scene content: import, the canonical model, USD/GLB/USDZ export, twin state, bindings and rules."""
