"""A deterministic pump-station simulator: realistic telemetry plus injected faults.

The plant: inflow (metered by FT-100, upstream of the model, hence a tag) fills the wet well T-100;
duty pump P-101 (motor M-101) empties it through the control valve V-201 into the header; assist
pump P-102 (M-102) starts at high level. The valve moves between two setpoints by level. (The
model draws PIPE-006 back into T-100; here the discharge leaves the station, so the level moves.)
Signals follow physics closely enough for rules and detectors to be exercised honestly:
discharge pressure falls with flow (pump curve), motor temperature follows load with a 15-minute
thermal lag, vibration RMS is ~1.5-2 mm/s on a healthy running pump, header flow follows the valve
position, and the level integrates inflow minus outflow.

Channels are named "<TAG>.<prop>" (e.g. "PT-101.pressure"); a binding whose `key` is a channel name
receives that channel. Given the same seed and the same sequence of `step` times, the output is
identical (the plant integrates, so it depends on the times stepped through, not just the last).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np

from scene.bindings import Bindings
from scene.state import Reading, Scalar

# Longest time one step integrates: after a pause (a suspended laptop) the plant resumes rather than
# replaying hours of physics in one call.
MAX_STEP_S = 60.0
# Default length of a spike fault: one sample at the usual 1 Hz.
SPIKE_S = 1.0

WELL_CAPACITY_M3 = 40.0
PUMP_FLOW_M3H = 100.0  # one pump, valve fully open
ASSIST_FLOW_FACTOR = 1.7  # both pumps together, against the header's system curve
SHUTOFF_BAR = 4.6  # pump head at zero flow
STATIC_BAR = 0.25  # header pressure with the pump stopped
EFFICIENCY = 0.70  # wire-to-water
MAINS_V = 400.0
POWER_FACTOR = 0.86
AMBIENT_C = 22.0
THERMAL_TAU_S = 900.0
PRESSURE_TAU_S = 2.0
VALVE_RATE_PCT_S = 0.5  # actuator stroke speed
VALVE_LOW_PCT, VALVE_HIGH_PCT = 50.0, 85.0  # setpoints, chosen by level with hysteresis

CHANNELS = (
    "P-101.running",
    "P-102.running",
    "PT-101.pressure",
    "PT-102.pressure",
    "TT-101.temperature",
    "TT-102.temperature",
    "VT-101.vibration",
    "VT-102.vibration",
    "FT-201.flow",
    "FT-100.flow",
    "LT-100.level",
    "ZT-201.position",
    "M-101.power_kw",
    "M-102.power_kw",
    "M-101.current_a",
    "M-102.current_a",
    "M-101.running_hours",
    "M-102.running_hours",
)


class SignalSpec(msgspec.Struct, frozen=True):
    """One simulated channel delivered as one element property."""

    key: str  # a channel name from CHANNELS
    element: str
    prop: str
    unit: str = ""


class FaultSpec(msgspec.Struct, frozen=True):
    """A fault injected into one channel from `start` until `end` (None = for ever)."""

    kind: Literal["bearing", "spike", "stuck"]
    key: str
    start: float  # seconds after the first step
    end: float | None = None
    magnitude: float = 0.0  # bearing: added RMS at full development; spike: added value
    ramp_s: float = 0.0  # bearing: time to full development (0 = a step)


class _Pump:
    def __init__(self) -> None:
        self.running = False
        self.pressure = STATIC_BAR
        self.temperature = AMBIENT_C
        self.hours = 0.0


class Simulator:
    def __init__(self, source: Bindings | list[SignalSpec], seed: int, faults: list[FaultSpec] | None = None):
        if isinstance(source, Bindings):
            source = [SignalSpec(b.key, b.element, b.prop, b.unit) for b in source.bindings if b.key in CHANNELS]
        unknown = [s.key for s in source if s.key not in CHANNELS]
        unknown += [f.key for f in faults or () if f.key not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown simulator channels: {', '.join(unknown)}")
        self.specs = list(source)
        self.faults = list(faults or ())
        self._rng = np.random.default_rng(seed)
        self._t0: float | None = None
        self._t = 0.0
        self._pumps = (_Pump(), _Pump())
        self._pumps[0].running = True
        self._level = 55.0
        self._valve = VALVE_LOW_PCT
        self._valve_sp = VALVE_LOW_PCT
        self._stuck: dict[int, float] = {}

    def inflow(self, t: float) -> float:
        """m³/h into the well: a slow daily-like swing plus a storm surge every 40 minutes."""
        surge = 90.0 if (t % 2400.0) < 600.0 and t >= 1200.0 else 0.0
        return 70.0 + 12.0 * math.sin(2 * math.pi * t / 1800.0) + surge

    def step(self, t: float) -> list[Reading]:
        """Advance the plant to time `t` (unix or relative seconds) and return one reading per spec."""
        if self._t0 is None:
            self._t0 = t
        rel = t - self._t0
        dt = min(max(rel - self._t, 0.0), MAX_STEP_S)
        self._t = rel
        values = self._advance(rel, dt)
        out: list[Reading] = []
        for spec in self.specs:
            value = self._faulted(spec.key, values[spec.key], rel)
            out.append(Reading(spec.element, spec.prop, value, spec.unit, t))
        return out

    def _advance(self, t: float, dt: float) -> dict[str, Scalar]:
        rng = self._rng
        p1, p2 = self._pumps
        # Level control: duty pump protects against dry running, assist pump handles surges.
        if self._level < 15.0:
            p1.running = False
        elif self._level > 30.0:
            p1.running = True
        if self._level > 80.0:
            p2.running = True
        elif self._level < 60.0:
            p2.running = False
        if self._level > 65.0:
            self._valve_sp = VALVE_HIGH_PCT
        elif self._level < 55.0:
            self._valve_sp = VALVE_LOW_PCT
        move = VALVE_RATE_PCT_S * dt
        self._valve += max(-move, min(move, self._valve_sp - self._valve))
        open_frac = math.sqrt(self._valve / 100.0)  # equal-percentage-ish trim, linearised
        running = [p.running for p in self._pumps]
        n = sum(running)
        outflow = PUMP_FLOW_M3H * open_frac * (0 if n == 0 else 1 if n == 1 else ASSIST_FLOW_FACTOR)
        self._level += (self.inflow(t) - outflow) / 3600.0 * dt / WELL_CAPACITY_M3 * 100.0
        self._level = min(max(self._level, 0.0), 100.0)

        values: dict[str, Scalar] = {
            "FT-201.flow": round(outflow * (1 + 0.01 * rng.standard_normal()), 2),
            "FT-100.flow": round(self.inflow(t) * (1 + 0.01 * rng.standard_normal()), 2),
            "LT-100.level": round(self._level + 0.2 * rng.standard_normal(), 2),
            "ZT-201.position": round(self._valve + 0.2 * rng.standard_normal(), 1),
        }
        per_pump = outflow / n if n else 0.0
        for i, pump in enumerate(self._pumps):
            pt, tt, vt, m = (
                ("PT-101", "TT-101", "VT-101", "M-101") if i == 0 else ("PT-102", "TT-102", "VT-102", "M-102")
            )
            load = per_pump / PUMP_FLOW_M3H if pump.running else 0.0
            target_p = SHUTOFF_BAR - 1.4 * load * load if pump.running else STATIC_BAR
            pump.pressure += (target_p - pump.pressure) * (1 - math.exp(-dt / PRESSURE_TAU_S))
            target_t = AMBIENT_C + 13.0 + 40.0 * load if pump.running else AMBIENT_C
            pump.temperature += (target_t - pump.temperature) * (1 - math.exp(-dt / THERMAL_TAU_S))
            if pump.running:
                pump.hours += dt / 3600.0
            power = per_pump / 3600.0 * pump.pressure * 1e5 / EFFICIENCY / 1000.0 if pump.running else 0.0
            power *= 1 + 0.01 * rng.standard_normal()
            vib = (1.5 + 0.4 * load) * math.exp(0.06 * rng.standard_normal()) if pump.running else 0.05 * rng.random()
            values |= {
                f"P-10{i + 1}.running": pump.running,
                f"{pt}.pressure": round(pump.pressure + 0.03 * rng.standard_normal(), 3),
                f"{tt}.temperature": round(pump.temperature + 0.1 * rng.standard_normal(), 2),
                f"{vt}.vibration": round(vib, 3),
                f"{m}.power_kw": round(max(power, 0.0), 2),
                f"{m}.current_a": round(max(power, 0.0) * 1000.0 / (math.sqrt(3) * MAINS_V * POWER_FACTOR), 2),
                f"{m}.running_hours": round(pump.hours, 4),
            }
        return values

    def _faulted(self, key: str, value: Scalar, t: float) -> Scalar:
        for i, f in enumerate(self.faults):
            end = f.end if f.end is not None else (f.start + SPIKE_S if f.kind == "spike" else math.inf)
            if f.key != key or not f.start <= t < end or isinstance(value, bool | str):
                continue
            if f.kind == "stuck":
                value = self._stuck.setdefault(i, value)
            elif f.kind == "spike":
                value = value + f.magnitude
            else:
                grown = 1.0 if f.ramp_s <= 0 else min((t - f.start) / f.ramp_s, 1.0)
                value = round(value + f.magnitude * grown, 3)
        return value
