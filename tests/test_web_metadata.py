"""Element metadata on demand in the browser: the tree comes with the model and pages long child lists, search asks
the server's index, properties ask for one element; the manifest is never downloaded (docs/CLIENT.md)."""

from __future__ import annotations

from tests.web_helpers import WAIT_MS, element_id, live_twin

COUNT = 450  # two storeys of 225: more than one page of rows each
PAGE = 200  # ui/tree.js TREE_PAGE


def test_tree_search_and_properties_without_the_manifest(browser, tmp_path):
    with live_twin(tmp_path, count=COUNT) as live:
        requests: list[str] = []
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(live.url)
        page.evaluate("window.twinview.ready")
        page.wait_for_selector("#tree li[data-id=storey-0]", timeout=WAIT_MS)
        # The tree, from the model's nodes: a storey opens a page of rows, then more on request.
        storey = page.locator("#tree li[data-id=storey-0]")
        storey.locator(":scope > .twisty").click()
        rows = storey.locator(":scope > ul > li[role=treeitem]")
        assert rows.count() == PAGE
        more = storey.locator(":scope > ul > li.more button")
        assert more.inner_text() == f"Show more ({COUNT // 2 - PAGE} of {COUNT // 2})"
        more.click()
        assert rows.count() == COUNT // 2 and storey.locator("li.more").count() == 0
        # Selecting an element beyond the first page of a storey not opened yet shows its row.
        far = element_id(COUNT - 1)
        page.evaluate("id => window.twinview.select(id)", far)
        assert page.locator(f"#tree li[data-id='{far}']").get_attribute("class") == "selected"
        # Properties: the element's property sets, asked of the server for this element only.
        props = page.locator("#properties")
        props.locator("details.pset").first.wait_for(timeout=WAIT_MS)
        assert f"P-{COUNT - 1:03d}" in props.inner_text() and "15 kW" in props.inner_text()
        # Search: the server's index, every word in any field.
        page.fill("#search", f"{live.twin.names[far].split()[0]} {COUNT - 1}")
        hits = page.locator("#tree .results li[data-id]")
        hits.first.wait_for(timeout=WAIT_MS)
        assert hits.evaluate_all("els => els.map((e) => e.dataset.id)") == [far]
        page.fill("#search", "no such thing")
        page.locator("#tree .results li.empty").wait_for(timeout=WAIT_MS)
        assert not [u for u in requests if "manifest.json" in u], "the manifest was downloaded"
        assert [u for u in requests if f"/elements/{far}" in u], "properties were not asked of the server"
        assert [u for u in requests if "/elements?brief=1&q=" in u], "search did not ask the server"
        page.close()
