"""The rules engine as the hub uses it: layers, visuals, alarm conditions, how long values stay fresh.

A scene served without a bindings file has one layer ("default") and no rules.
"""

from __future__ import annotations

from typing import Final

from scene.bindings import Bindings
from scene.rules import AlarmEvent, RuleEngine
from scene.state import Change, TwinState
from viewer_server import protocol as p

NO_BINDINGS_LAYER: Final = "default"


class LiveRules:
    def __init__(self, bindings: Bindings | None) -> None:
        self.bindings = bindings
        self.engine = RuleEngine(bindings) if bindings is not None else None
        self.layers: list[str] = self.engine.layers() if self.engine else [NO_BINDINGS_LAYER]
        self.default_layer = bindings.default_layer if bindings is not None else NO_BINDINGS_LAYER

    def all_targets(self) -> list[tuple[str, str]]:
        """Every (layer, element) that has a rule: the visuals a snapshot carries."""
        if self.engine is None:
            return []
        return [(layer, el) for layer in self.layers for el in self.engine.targets(layer)]

    def affected(self, element: str, prop: str) -> list[tuple[str, str]]:
        return self.engine.affected(element, prop) if self.engine else []

    def visual(self, element: str, layer: str, state: TwinState) -> p.Visual:
        return self.engine.evaluate(element, layer, state) if self.engine else p.Visual()

    def observe(self, change: Change) -> list[AlarmEvent]:
        return self.engine.observe(change) if self.engine else []

    def tick(self, now: float) -> list[AlarmEvent]:
        return self.engine.tick(now) if self.engine else []

    def prime(self, state: TwinState, active: dict[str, str]) -> list[AlarmEvent]:
        return self.engine.prime(state, active) if self.engine else []

    def adopt_detectors(self, old: LiveRules) -> None:
        """Keep `old`'s detectors of unchanged anomaly rules (RuleEngine.adopt_detectors)."""
        if self.engine is not None and old.engine is not None:
            self.engine.adopt_detectors(old.engine)

    def alarm_ids(self) -> set[str]:
        return self.engine.alarm_ids() if self.engine else set()

    def stale_after(self, element: str, prop: str) -> float | None:
        return self.bindings.stale_after(element, prop) if self.bindings is not None else None
