"""Tiles for streaming large scenes (scene/export/tiles.py): the partition, the tile files, the index as hostile
input, and how the server serves them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from scene.export.tiles import (
    IMPOSTORS_PER_TILE,
    MAX_INDEX_BYTES,
    MAX_TILES,
    TilesError,
    partition,
    read_index,
    write_tiles,
)
from scene.pipeline import build
from tests.scene_factory import grid_scene
from viewer_server.serve import running_server

ELEMENTS = 300
PER_TILE = 40


def glb_nodes(path: Path) -> list[dict]:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + length])["nodes"]


def test_partition_puts_every_index_in_exactly_one_cell_of_bounded_size() -> None:
    rng = np.random.default_rng(7)
    centres = np.concatenate([rng.normal(size=(997, 3)), np.zeros((60, 3))])  # a pile of equal centres too
    cells = partition(centres, 50)
    flat = np.concatenate(cells)
    assert sorted(flat.tolist()) == list(range(len(centres)))
    assert max(len(c) for c in cells) <= 50
    with pytest.raises(ValueError):
        partition(centres, 0)


def test_tiles_hold_every_drawn_element_once_with_its_ancestors(tmp_path: Path) -> None:
    scene = grid_scene(ELEMENTS)
    index = write_tiles(scene, tmp_path, compress=True, per_tile=PER_TILE)
    assert read_index(tmp_path / "tiles" / "tiles.json") == index
    drawn = [e.id for e in scene.elements.values() if e.mesh]
    assert index.elements == len(drawn) and len(index.tiles) >= len(drawn) // PER_TILE
    seen: list[str] = []
    for tile in index.tiles:
        nodes = glb_nodes(tmp_path / "tiles" / tile.file)
        meshed = [n["extras"]["id"] for n in nodes if "mesh" in n]
        assert len(meshed) == tile.elements <= PER_TILE
        assert {n["extras"]["id"] for n in nodes if "mesh" not in n} == {"root"}  # the ancestor, without geometry
        for n in nodes:  # same ids, names and classes as the scene
            el = scene.elements[n["extras"]["id"]]
            assert (n["extras"]["name"], n["extras"]["class"]) == (el.name, el.cls)
        assert 0 < len(tile.impostors) <= IMPOSTORS_PER_TILE
        assert all(np.all(np.asarray(tile.lo) <= b.lo) and np.all(np.asarray(b.hi) <= tile.hi) for b in tile.impostors)
        seen += meshed
    assert sorted(seen) == sorted(drawn)
    catalog = json.loads((tmp_path / "tiles" / "elements.json").read_bytes())
    assert catalog["ids"] == list(scene.elements) and catalog["names"][1] == "Element 0"
    assert catalog["parent"][:2] == [-1, 0] and catalog["classes"][catalog["class"][1]] == "IfcKind0"
    for n, tile in enumerate(index.tiles):  # the catalogue says which tile holds each element
        held = {eid for eid, t in zip(catalog["ids"], catalog["tile"], strict=True) if t == n}
        assert held == {n["extras"]["id"] for n in glb_nodes(tmp_path / "tiles" / tile.file) if "mesh" in n}
    assert catalog["tile"][0] == -1


def hostile_indexes(good: dict) -> dict[str, bytes]:
    tile = good["tiles"][0]

    def index(**changes: object) -> bytes:
        return json.dumps({**good, **changes}).encode()

    return {
        "a path as a tile name": index(tiles=[{**tile, "file": "../../secret.glb"}]),
        "a tile listed twice": index(tiles=[tile, tile], elements=2 * tile["elements"]),
        "counts that do not add up": index(elements=good["elements"] + 1),
        "a negative count": index(tiles=[{**tile, "elements": -1}], elements=-1),
        "too many tiles": index(tiles=[tile] * (MAX_TILES + 1)),
        "too many impostors": index(tiles=[{**tile, "impostors": tile["impostors"] * (IMPOSTORS_PER_TILE + 1)}]),
        "an infinite bound": index(lo=[0, 0, 1e999]).replace(b"Infinity", b"1e999"),
        "another format": index(format="3d-tiles"),
        "not JSON": b"\x00\xff{",
        "too large": b" " * (MAX_INDEX_BYTES + 1),
    }


def test_a_hostile_index_is_refused_with_what_to_do(tmp_path: Path) -> None:
    write_tiles(grid_scene(60), tmp_path, per_tile=PER_TILE)
    path = tmp_path / "tiles" / "tiles.json"
    good = json.loads(path.read_bytes())
    good["tiles"] = good["tiles"][:1]
    good["elements"] = good["tiles"][0]["elements"]
    for why, raw in hostile_indexes(good).items():
        path.write_bytes(raw)
        with pytest.raises(TilesError, match=r"tiles\.json") as err:
            read_index(path)
        assert "rebuild" in str(err.value) or "larger than" in str(err.value), why


def test_build_writes_tiles_above_the_threshold_only(tmp_path: Path) -> None:
    source = tmp_path / "grid.glb"
    write_glb(grid_scene(30), source)
    build([source], tmp_path / "small", tile_threshold=100)
    assert not (tmp_path / "small" / "tiles").exists()
    build([source], tmp_path / "tiled", tile_threshold=10)
    index = read_index(tmp_path / "tiled" / "tiles" / "tiles.json")
    assert index.elements == 29


async def test_the_server_serves_the_listed_tile_files_and_no_content_without_tiles(tmp_path: Path) -> None:
    tiled, single = tmp_path / "tiled", tmp_path / "single"
    for folder, tiles in ((tiled, True), (single, False)):
        scene = grid_scene(60)
        folder.mkdir()
        write_glb(scene, folder / "scene.glb")
        write_manifest(scene, folder / "manifest.json", {})
        if tiles:
            write_tiles(scene, folder, per_tile=PER_TILE)
    (tiled / "tiles" / "secret.glb").write_bytes(b"not listed")
    async with aiohttp.ClientSession() as http:
        async with running_server(
            tiled, bindings=None, mqtt_url=None, host="127.0.0.1", port=0, data_dir=tmp_path / "d", simulate=False
        ) as srv:
            base = f"{srv.url}/scenes/tiled/tiles"
            async with http.get(f"{srv.url}/api/scenes/tiled") as r:
                assert (await r.json())["urls"]["tiles"] == "/scenes/tiled/tiles/tiles.json"
            async with http.get(f"{base}/tiles.json") as r:
                assert r.status == 200 and (await r.json())["format"] == "twinview-tiles"
            listed = {"tile-0.glb": 200, "elements.json": 200, "secret.glb": 404, "tile-99.glb": 404}
            for name, status in listed.items():
                async with http.get(f"{base}/{name}") as r:
                    assert r.status == status, name
        (tiled / "tiles" / "tiles.json").write_text('{"format": "twinview-tiles", "tiles": "../"}')
        for folder in (single, tiled):  # no tiles, and a hostile index: the scene is served as one file
            async with running_server(
                folder, bindings=None, mqtt_url=None, host="127.0.0.1", port=0, data_dir=tmp_path / "d", simulate=False
            ) as srv:
                async with http.get(f"{srv.url}/scenes/{folder.name}/tiles/tiles.json") as r:
                    assert r.status == 204
                async with http.get(f"{srv.url}/api/scenes/{folder.name}") as r:
                    assert "tiles" not in (await r.json())["urls"]
                async with http.get(f"{srv.url}/scenes/{folder.name}/tiles/tile-0.glb") as r:
                    assert r.status == 404
