"""Batching keeps large twins fast: draw calls and frame time of the viewer versus a plain
GLTFLoader `scene.add` of the same GLB, in headless Chromium with SwiftShader.

The 1 000-element comparison always runs; set TWINVIEW_WEB_BENCH=10000 (or any count) to add a larger
one. Figures are written to test-artifacts/web-perf.json for the report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.web_helpers import ARTIFACTS, REPO, build_client, chromium_browser, live_twin, open_viewer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

THREE = REPO / "web_client" / "node_modules" / "three"
FRAMES = 30
# The plain baseline: every glTF node becomes its own mesh and draw call, as GLTFLoader gives it.
PLAIN_PAGE = """<!doctype html><html><body style="margin:0">
<script type="importmap">{"imports": {"three": "/bench/three/build/three.module.js",
  "three/addons/": "/bench/three/examples/jsm/"}}</script>
<script type="module">
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
const renderer = new THREE.WebGLRenderer({ antialias: true });
renderer.setSize(innerWidth, innerHeight);
document.body.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.add(new THREE.HemisphereLight(0xffffff, 0x445566, 1.4));
const camera = new THREE.PerspectiveCamera(50, innerWidth / innerHeight, 0.05, 5000);
const gltf = await new GLTFLoader().loadAsync(new URLSearchParams(location.search).get('glb'));
scene.add(gltf.scene);
const box = new THREE.Box3().setFromObject(gltf.scene);
const c = box.getCenter(new THREE.Vector3());
const r = box.getSize(new THREE.Vector3()).length();
camera.position.copy(c).add(new THREE.Vector3(r * 0.6, r * 0.5, r * 0.6));
camera.lookAt(c);
window.bench = async (n) => {
  const stamps = [];
  for (let i = 0; i <= n; i++) {
    camera.position.applyAxisAngle(camera.up, 0.01); camera.lookAt(c);
    renderer.render(scene, camera);
    stamps.push(await new Promise((res) => requestAnimationFrame(res)));
  }
  return { meanMs: (stamps[n] - stamps[0]) / n, drawCalls: renderer.info.render.calls };
};
window.loadMs = Math.round(performance.now());
window.benchReady = true;
</script></body></html>"""


def plain_baseline(browser, base_url: str, glb_url: str) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 800})

    def serve(route):
        path = route.request.url.split("/bench/", 1)[1].split("?", 1)[0]
        if path == "plain.html":
            return route.fulfill(body=PLAIN_PAGE, content_type="text/html")
        return route.fulfill(path=str(THREE / path.removeprefix("three/")), content_type="text/javascript")

    page.route(f"{base_url}/bench/**", serve)
    page.goto(f"{base_url}/bench/plain.html?glb={glb_url}")
    page.wait_for_function("window.benchReady === true", timeout=120_000)
    result = page.evaluate(f"window.bench({FRAMES})")
    result["loadMs"] = page.evaluate("window.loadMs")
    page.close()
    return result


def measure(tmp_path: Path, count: int) -> dict:
    with live_twin(tmp_path, count=count) as live, chromium_browser() as browser:
        page = open_viewer(browser, live.url)
        load_ms = page.evaluate("window.twinview.ready")["loadMs"]
        page.wait_for_timeout(300)
        batched = page.evaluate(f"window.twinview.frameTime({FRAMES})") | {"loadMs": load_ms}
        page.close()
        plain = plain_baseline(browser, live.url, "/scenes/synthetic/scene.glb")
    figures = {"elements": count, "batched": batched, "plain": plain}
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "web-perf.json"
    known = json.loads(out.read_text()) if out.exists() else {}
    known[str(count)] = figures
    out.write_text(json.dumps(known, indent=2))
    return figures


def test_a_thousand_elements_draw_in_a_few_calls(tmp_path):
    build_client()
    f = measure(tmp_path, 1000)
    assert f["batched"]["drawCalls"] <= 3
    assert f["plain"]["drawCalls"] >= 1000
    assert f["batched"]["meanMs"] < f["plain"]["meanMs"] * 1.5  # never slower in any real sense


@pytest.mark.skipif(not os.environ.get("TWINVIEW_WEB_BENCH"), reason="set TWINVIEW_WEB_BENCH=<count> to run")
def test_large_twin_benchmark(tmp_path):
    build_client()
    f = measure(tmp_path, int(os.environ["TWINVIEW_WEB_BENCH"]))
    assert f["batched"]["drawCalls"] <= 3
