"""The REST API of a real server: health counters, scenes, elements, state, history, ingest, OpenAPI."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import jsonschema
import pytest
import yarl
from aiohttp import web

from scene.bindings import BindingsError
from tests.live_server import BINDINGS, ELEMENTS, JSON_BODY, live_server, mint_token
from viewer_server import protocol as p
from viewer_server.api import ROUTES
from viewer_server.app import make_app, web_client_dir
from viewer_server.permissions import Role
from viewer_server.scenes import TREE_PAGE_MAX, SceneError
from viewer_server.serve import RunningServer, running_server

REPO = Path(__file__).resolve().parents[1]


async def post_ingest(http: aiohttp.ClientSession, url: str, readings: list[dict]) -> tuple[int, dict]:
    async with http.post(f"{url}/api/ingest", json={"readings": readings}) as r:
        return r.status, await r.json()


async def get(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_health_counts_every_rejection_reason(tmp_path: Path) -> None:
    now = time.time()
    bad = {
        "unknown_element": {"element": "NOPE", "prop": "pressure", "value": 1},
        "unbound_key": {"key": "NOPE.pressure", "value": 1},
        "unknown_property": {"element": "PT-1", "prop": "colour", "value": 1},
        "not_numeric": {"key": "PT-1.pressure", "value": "high"},
        "future_timestamp": {"key": "PT-1.pressure", "value": 1, "ts": now + 3600},
        "malformed": {"value": 1},
        "out_of_range": {"key": "PT-1.pressure", "value": 99},
    }
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        status, body = await post_ingest(http, srv.url, [{"key": "PT-1.pressure", "value": 4.2}, *bad.values()])
        assert status == 200
        assert body["accepted"] == 1
        assert [r["reason"] for r in body["rejected"]] == list(bad)
        assert all(r["detail"] for r in body["rejected"])
        status, body = await post_ingest(
            http, srv.url, [{"key": "PT-1.pressure", "value": 1}] * (p.MAX_BATCH_READINGS + 1)
        )
        assert status == 413 and body["error"] == "batch_too_large"
        # JSON cannot carry NaN or infinity (1e999 overflows): the decoder refuses the whole body.
        # (not_finite readings arrive over MessagePack: see test_server_ws.)
        for body in (b"{not json", b'{"readings": [{"key": "PT-1.pressure", "value": 1e999}]}'):
            async with http.post(f"{srv.url}/api/ingest", headers=JSON_BODY, data=body) as r:
                assert r.status == 400 and (await r.json())["error"] == "malformed"
        health = await get(http, f"{srv.url}/api/health")
        for reason in bad:
            assert health["rejected"][reason] >= 1, reason
        assert health["rejected"]["batch_too_large"] == p.MAX_BATCH_READINGS + 1
        assert health["rejected"]["malformed"] == 3
        assert health["accepted"] == 1 and health["seq"] > 0 and health["status"] == "ok"


async def test_scenes_elements_state_history_and_files(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        for value in (1.0, 2.0, 2.0, 3.0):
            await post_ingest(http, srv.url, [{"key": "PT-1.pressure", "value": value}])
        scenes = await get(http, f"{srv.url}/api/scenes")
        assert [s["id"] for s in scenes] == ["pump-test"]
        assert scenes[0]["layers"] == ["operations", "energy"] and scenes[0]["ws_url"] == "/ws/pump-test"
        detail = await get(http, f"{srv.url}/api/scenes/pump-test")
        assert detail["stats"] == {"elements": 5}
        found = await get(http, f"{srv.url}/api/scenes/pump-test/elements?q=ifcsensor")
        assert {e["id"] for e in found["elements"]} == {"PT-1", "LT-1"}
        found = await get(http, f"{srv.url}/api/scenes/pump-test/elements?q=wet")
        assert [e["id"] for e in found["elements"]] == ["T-1"]
        found = await get(http, f"{srv.url}/api/scenes/pump-test/elements?q=transmitter%20IFCSENSOR%201&brief=1")
        assert found["elements"] == [  # every word, any field; brief: what a list of hits shows
            {"id": "PT-1", "name": "Pressure transmitter 1", "class": "IfcSensor", "parent": "P-1"},
            {"id": "LT-1", "name": "Level transmitter 1", "class": "IfcSensor", "parent": None},
        ]
        el = await get(http, f"{srv.url}/api/scenes/pump-test/elements/PT-1")
        assert el["element"]["name"] == "Pressure transmitter 1"
        assert el["props"]["pressure"]["v"] == 3.0
        assert el["visuals"]["operations"]["label"] == "3.00 bar"
        state = await get(http, f"{srv.url}/api/state")
        assert state["props"]["PT-1/pressure"] == {"v": 3.0, "ts": state["props"]["PT-1/pressure"]["ts"], "u": "bar"}
        hist = await get(http, f"{srv.url}/api/history/PT-1/pressure?limit=3")
        assert [v for _, v in hist["samples"]] == [2.0, 2.0, 3.0]  # a repeated sample is history too
        async with http.get(f"{srv.url}/api/bindings", headers=bearer(srv, "olga", "operator")) as r:
            b = await r.json()
        assert b["content"] == BINDINGS and b["keys"][0] == "PT-1.pressure" and len(b["sha256"]) == 64
        async with http.get(f"{srv.url}/scenes/pump-test/scene.glb") as r:
            assert r.status == 200 and r.content_type == "model/gltf-binary"
        async with http.get(f"{srv.url}/scenes/pump-test/secret.txt") as r:
            assert r.status == 404
        async with http.get(f"{srv.url}/api/scenes/other/elements/PT-1") as r:
            assert r.status == 404
        async with http.get(f"{srv.url}/api/scenes/pump-test/elements/NOPE") as r:
            assert r.status == 404 and (await r.json())["error"] == "unknown_element"


async def test_the_tree_is_read_a_page_of_children_at_a_time(tmp_path: Path) -> None:
    staff = [{"id": f"V-{i}", "name": f"Valve {i}", "class": "IfcValve", "parent": "PIPE-1"} for i in range(7)]
    elements = [*ELEMENTS, *staff, {"id": "a:/b/c", "name": "", "class": "GltfNode", "parent": "V-0"}]
    tree = "/api/scenes/pump-test/tree"
    async with live_server(tmp_path, elements=elements) as srv, aiohttp.ClientSession() as http:
        roots = await get(http, f"{srv.url}{tree}")
        assert roots["parent"] is None and roots["total"] == 4 and roots["offset"] == 0
        counts = [(n["id"], n["children"]) for n in roots["nodes"]]
        assert counts == [("P-1", 1), ("LT-1", 0), ("PIPE-1", 7), ("T-1", 0)]
        assert roots["nodes"][0] == {"id": "P-1", "name": "Pump 1", "class": "IfcPump", "children": 1}
        page = await get(http, f"{srv.url}{tree}?parent=PIPE-1&offset=5&limit=3")
        assert page["total"] == 7 and [n["id"] for n in page["nodes"]] == ["V-5", "V-6"]
        page = await get(http, f"{srv.url}{tree}?parent=V-0")
        assert [n["id"] for n in page["nodes"]] == ["a:/b/c"]
        # An id with "/" in it, escaped in the path.
        async with http.get(yarl.URL(f"{srv.url}/api/scenes/pump-test/elements/a%3A%2Fb%2Fc", encoded=True)) as r:
            assert r.status == 200 and (await r.json())["element"]["class"] == "GltfNode"
        for query, status in [("limit=0", 400), (f"limit={TREE_PAGE_MAX + 1}", 400), ("offset=-1", 400),
                              ("offset=x", 400), ("parent=NOPE", 404)]:  # fmt: skip
            async with http.get(f"{srv.url}{tree}?{query}") as r:
                assert r.status == status, query
                assert (await r.json())["error"] in ("bad_query", "unknown_element")


def bearer(srv: RunningServer, user: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(srv, user, role)}"}


@pytest.mark.deployable
async def test_bindings_show_their_file_name_to_all_and_their_content_only_to_operators(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        for headers in ({}, bearer(srv, "vic", "viewer"), bearer(srv, "ana", "annotator")):
            async with http.get(f"{srv.url}/api/bindings", headers=headers) as r:
                b = await r.json()
            assert b == {
                "loaded": True,
                "file": "test.bindings.yaml",
                "sha256": b["sha256"],
                "default_layer": "operations",
                "layers": ["operations", "energy"],
            }
            assert str(tmp_path) not in await r.text()
        for role in ("operator", "admin"):
            async with http.get(f"{srv.url}/api/bindings", headers=bearer(srv, role, role)) as r:  # type: ignore[arg-type]
                b = await r.json()
            assert (
                b["content"] == BINDINGS and "plant/PT-1/telemetry" in b["topics"] and b["file"] == "test.bindings.yaml"
            )
        async with http.get(f"{srv.url}/api/bindings", headers={"Authorization": "Bearer junk"}) as r:
            assert r.status == 401


async def test_openapi_lists_every_route_and_schemas_are_served(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        doc = await get(http, f"{srv.url}/api/openapi.json")
        assert doc["openapi"].startswith("3.1")
        app_routes = {  # everything but the web client's files (index page and static files)
            (r.method, r.resource.canonical)
            for r in srv.runner.app.router.routes()
            if r.method != "HEAD" and r.resource is not None and r.resource.canonical not in ("/", "")
        }
        documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
        assert app_routes == documented
        assert len(documented) == len(ROUTES)
        # Every $ref resolves, and the OpenAPI schemas validate a real response.
        health = await get(http, f"{srv.url}/api/health")
        schema = {**doc["paths"]["/api/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]}
        jsonschema.validate(health, {**schema, "components": doc["components"]}, cls=jsonschema.Draft202012Validator)
        async with http.get(f"{srv.url}/api/protocol.schema.json") as r:  # the very file in docs/, byte for byte
            assert await r.read() == (REPO / "docs" / "protocol.schema.json").read_bytes()


async def test_bindings_error_names_file_entry_and_problem(tmp_path: Path) -> None:
    broken = BINDINGS.replace("element: LT-1, prop: level", "element: LT-9, prop: level")
    with pytest.raises(BindingsError) as err:
        async with live_server(tmp_path, bindings=broken):
            pass
    assert str(err.value).startswith(f"{tmp_path / 'test.bindings.yaml'}: bindings[2].element: unknown element 'LT-9'")


async def test_missing_manifest_is_a_scene_error(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match=r"manifest\.json"):
        async with running_server(
            tmp_path, bindings=None, mqtt_url=None, host="127.0.0.1", port=0, data_dir=tmp_path / "d", simulate=False
        ):
            pass


async def test_the_web_client_is_served_at_the_root(tmp_path: Path) -> None:
    client_dir = tmp_path / "web"
    client_dir.mkdir()
    (client_dir / "index.html").write_text("<!doctype html><title>TwinView</title>")
    (client_dir / "app.js").write_text("export {};")
    assert web_client_dir(tmp_path) is None  # neither web_client/dist nor web_client/ there
    async with live_server(tmp_path) as srv:
        app = make_app(srv.live, client_dir)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/") as r:
                    assert r.status == 200 and "TwinView" in await r.text()
                async with http.get(f"{url}/app.js") as r:
                    assert r.status == 200
                async with http.get(f"{url}/api/health") as r:
                    assert r.status == 200  # the API still wins over static files
        finally:
            await runner.cleanup()
