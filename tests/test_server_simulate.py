"""`serve(simulate=True)` with the sample pump-station bindings: the simulator feeds the same ingest
path, clients see live values and visuals, and /api/health answers once `ready` is set."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import yaml

from tests.live_server import write_scene
from tests.mosquitto import free_port
from viewer_server.client import TwinClient
from viewer_server.serve import serve

REPO = Path(__file__).resolve().parents[1]
SAMPLE_BINDINGS = REPO / "assets" / "pump_station.bindings.yaml"


def sample_elements() -> list[dict]:
    """Every element id the sample bindings name (tags are not manifest elements)."""
    spec = yaml.safe_load(SAMPLE_BINDINGS.read_text())
    tags = {t["id"] for t in spec.get("tags", [])}
    ids = {b["element"] for b in spec["bindings"]} | {t["host"] for t in spec.get("tags", [])}
    for layer in spec["layers"].values():
        for rule in layer["rules"]:
            ids |= {rule["element"], rule.get("target") or rule["element"]}
    return [{"id": i, "name": i, "class": "IfcBuildingElementProxy", "parent": None} for i in sorted(ids - tags)]


async def test_simulated_plant_reaches_a_client(tmp_path: Path) -> None:
    ready = asyncio.Event()
    port = free_port()
    task = asyncio.create_task(
        serve(
            write_scene(tmp_path, sample_elements()),
            bindings=SAMPLE_BINDINGS,
            mqtt_url=None,
            host="127.0.0.1",
            port=port,
            data_dir=tmp_path / "data",
            simulate=True,
            ready=ready,
        )
    )
    try:
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({waiter, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), task.exception() if task.done() else "not ready within 15 s"
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/health") as r:
            assert r.status == 200
        async with TwinClient(f"ws://127.0.0.1:{port}/ws") as tc:
            await tc.wait_for(lambda c: len(c.props) >= 10, timeout=10)
            assert tc.layer == "operations"
            assert any(v.label for v in tc.visuals.values())  # labels rendered from live values
            assert "tag:FT-100/flow" in tc.props
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
