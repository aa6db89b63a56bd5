"""Exporters: the canonical USD stage, the browser GLB, the AR Quick Look USDZ and the manifest."""
