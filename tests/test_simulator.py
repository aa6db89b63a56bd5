"""The pump-station simulator: deterministic, physically coupled, within the bindings' ranges, faults."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from scene.bindings import load_bindings
from scene.simulator import CHANNELS, THERMAL_TAU_S, WELL_CAPACITY_M3, FaultSpec, SignalSpec, Simulator
from scene.state import Scalar

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "pump_station.bindings.yaml"
ALL = [SignalSpec(c, c.split(".")[0], c.split(".")[1]) for c in CHANNELS]


def trace(seed: int = 0, duration_s: int = 3600, faults: list[FaultSpec] | None = None) -> dict[str, np.ndarray]:
    sim = Simulator(ALL, seed, faults or [])
    rows = [[r.value for r in sim.step(float(t))] for t in range(duration_s)]
    return {c: np.array([row[i] for row in rows], dtype=float) for i, c in enumerate(CHANNELS)}


def test_same_seed_same_readings_other_seed_other_noise() -> None:
    def run(seed: int) -> list[list[Scalar]]:
        sim = Simulator(ALL, seed)
        return [[r.value for r in sim.step(1.7e9 + t)] for t in range(200)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_readings_follow_the_bindings_and_pass_their_validation() -> None:
    bindings = load_bindings(SAMPLE)
    sim = Simulator(bindings, seed=3)
    keyed = {b.key for b in bindings.bindings if b.key}
    assert {s.key for s in sim.specs} == keyed  # every bound key is simulated
    for t in range(0, 3 * 3600, 5):
        for r in sim.step(1.7e9 + t):
            b = bindings.binding(r.element, r.prop)
            assert b is not None and r.unit == b.unit and r.ts == 1.7e9 + t
            assert b.key is not None
            bindings.from_key(b.key, r.value, r.ts)  # raises if out of range or of the wrong kind


def test_flow_follows_valve_position_and_pressure_falls_with_flow() -> None:
    tr = trace(duration_s=2 * 3600)
    single = (tr["P-101.running"] == 1) & (tr["P-102.running"] == 0)
    assert np.corrcoef(tr["ZT-201.position"][single], tr["FT-201.flow"][single])[0, 1] > 0.95
    settled = single & (np.arange(len(single)) > 60)
    assert np.corrcoef(tr["FT-201.flow"][settled], tr["PT-101.pressure"][settled])[0, 1] < -0.9
    assert set(np.unique(tr["ZT-201.position"].round(-1))) >= {50.0, 80.0}  # moves between setpoints


def test_level_integrates_inflow_minus_outflow() -> None:
    tr = trace(duration_s=3600)
    net = (tr["FT-100.flow"] - tr["FT-201.flow"]).sum() / 3600.0  # m³ over the hour at 1 Hz
    predicted = tr["LT-100.level"][0] + net / WELL_CAPACITY_M3 * 100.0
    assert tr["LT-100.level"][-1] == pytest.approx(predicted, abs=1.5)


def test_assist_pump_cycles_during_surges_and_the_level_stays_in_band() -> None:
    tr = trace(duration_s=3 * 3600)
    starts = np.count_nonzero(np.diff(tr["P-102.running"]) > 0)
    assert starts >= 2
    assert tr["LT-100.level"].min() > 10 and tr["LT-100.level"].max() < 90


def test_motor_temperature_lags_load_with_its_time_constant() -> None:
    tr = trace(duration_s=int(THERMAL_TAU_S) * 2)
    temp = tr["TT-101.temperature"]
    rise_at_tau = (temp[int(THERMAL_TAU_S)] - temp[0]) / (temp[-1] - temp[0])
    assert 0.6 < rise_at_tau < 0.8  # 1 - e^-1 = 0.63 of a first-order step, slowed by the final rise
    assert np.all(np.diff(temp[:600]) > -0.5)  # no jumps, only sensor noise


def test_healthy_running_vibration_is_iso_zone_b_and_power_matches_hydraulics() -> None:
    tr = trace(duration_s=1800)
    running = tr["VT-101.vibration"][tr["P-101.running"] == 1]
    assert 1.2 < running.mean() < 2.4 and running.max() < 2.8
    assert np.all(tr["M-102.power_kw"][tr["P-102.running"] == 0] == 0)
    kw = tr["M-101.power_kw"][600:]
    assert 8 < kw.mean() < 16
    assert tr["M-101.running_hours"][-1] == pytest.approx(1799 / 3600, rel=1e-3)


def test_bearing_fault_ramps_up() -> None:
    clean = trace(1, 1000)["VT-101.vibration"]
    faulty = trace(1, 1000, [FaultSpec("bearing", "VT-101.vibration", 500, magnitude=3.0, ramp_s=300)])
    added = faulty["VT-101.vibration"] - clean
    assert np.allclose(added[:500], 0)
    assert added[650] == pytest.approx(1.5, abs=0.01)
    assert np.allclose(added[800:], 3.0, atol=0.01)


def test_spike_is_one_sample_and_stuck_holds_the_value() -> None:
    faults = [
        FaultSpec("spike", "PT-101.pressure", 300, magnitude=10.0),
        FaultSpec("stuck", "LT-100.level", 400, end=500),
    ]
    clean, faulty = trace(2, 600), trace(2, 600, faults)
    jump = faulty["PT-101.pressure"] - clean["PT-101.pressure"]
    assert np.flatnonzero(np.abs(jump) > 1e-9).tolist() == [300]
    level = faulty["LT-100.level"]
    assert np.all(level[400:500] == level[400]) and level[500] != level[400]
    assert np.array_equal(level[:400], clean["LT-100.level"][:400])


def test_a_long_pause_is_not_replayed() -> None:
    sim = Simulator(ALL, 0)
    sim.step(0.0)
    [hours] = [r.value for r in sim.step(86_400.0) if r.prop == "running_hours" and r.element == "M-101"]
    assert math.isclose(float(hours), 60.0 / 3600.0, abs_tol=1e-4)  # one MAX_STEP_S, not a day


def test_unknown_channels_are_refused() -> None:
    with pytest.raises(ValueError, match=r"XX-1\.p"):
        Simulator([SignalSpec("XX-1.p", "X", "p")], 0)
    with pytest.raises(ValueError, match="nope"):
        Simulator(ALL, 0, [FaultSpec("stuck", "nope", 0)])
