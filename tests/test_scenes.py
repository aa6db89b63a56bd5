"""The server's view of a built scene: the element search index, the tree and the areas."""

from __future__ import annotations

from viewer_server.scenes import ElementBoxes, ElementIndex, ElementTree


def records(n: int) -> list[dict[str, str]]:
    return [
        {"id": f"E{i:06d}", "name": f"Pump P-{i}" if i % 10 == 0 else f"Pipe {i}", "class": "IfcPump"} for i in range(n)
    ]


def test_search_matches_id_name_or_class_once_per_element_in_order() -> None:
    index = ElementIndex(records(1000))
    hits = index.search("pump p-1", 50)
    assert [r["name"] for r in hits] == [f"Pump P-{i}" for i in (10, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190)]
    assert [r["id"] for r in index.search("e000999", 5)] == ["E000999"]
    assert len(index.search("ifcpump", 30)) == 30  # every record matches its class; the limit holds
    assert index.search("IFCPUMP", 1) == index.search("ifcpump", 1)  # case-insensitive
    # Every word, in any order and any field (as the web client's search box asks).
    assert [r["id"] for r in index.search("p-12  pump", 5)] == ["E000120"]
    assert [r["id"] for r in index.search("999 PIPE", 5)] == ["E000999"]


def test_a_match_never_spans_two_fields_or_two_records() -> None:
    index = ElementIndex([{"id": "ab", "name": "cd", "class": "ef"}, {"id": "gh", "name": "", "class": ""}])
    assert index.search("bc", 10) == [] and index.search("efg", 10) == [] and index.search("f\ng", 10) == []
    assert index.search("", 1) == [{"id": "ab", "name": "cd", "class": "ef"}]


def test_names_with_line_breaks_are_found_and_do_not_shift_later_records() -> None:
    index = ElementIndex([{"id": "a", "name": "two\nlines", "class": "X"}, {"id": "b", "name": "after", "class": "X"}])
    assert [r["id"] for r in index.search("two lines", 5)] == ["a"]
    assert [r["id"] for r in index.search("after", 5)] == ["b"]


def test_an_area_holds_the_elements_whose_own_box_meets_it() -> None:
    boxes = ElementBoxes(
        [
            {"id": "a", "bbox": [[0, 0, 0], [1, 1, 1]]},
            {"id": "b", "bbox": [[2, 0, 0], [3, 1, 1]]},
            {"id": "storey", "bbox": None},  # no geometry of its own: never in an area
            {"id": "odd", "bbox": [[0, 0], [1, 1]]},  # not a box: ignored
            {"id": "c", "bbox": [[-5, -5, -5], [5, 5, 5]]},  # around the area
        ]
    )
    assert boxes.overlapping((0.5, 0.5, 0.5), (0.6, 0.6, 0.6)) == ["a", "c"]
    assert boxes.overlapping((1, 1, 1), (2, 1, 1)) == ["a", "b", "c"]  # touching counts
    assert boxes.overlapping((10, 10, 10), (11, 11, 11)) == []
    assert ElementBoxes([]).overlapping((0, 0, 0), (1, 1, 1)) == []


def test_the_tree_pages_children_in_file_order_with_their_counts() -> None:
    tree = ElementTree(
        [
            {"id": "site", "name": "Site", "class": "IfcSite", "parent": None},
            *({"id": f"e{i}", "name": f"E {i}", "class": "IfcWall", "parent": "site"} for i in range(5)),
            {"id": "orphan", "name": "", "class": "X", "parent": "gone"},  # its parent is not in the scene: a root
        ]
    )
    total, roots = tree.page(None, 0, 10)
    assert total == 2 and [(n.id, n.children) for n in roots] == [("site", 5), ("orphan", 0)]
    total, page = tree.page("site", 3, 10)
    assert total == 5 and [n.id for n in page] == ["e3", "e4"] and page[0].cls == "IfcWall"
    assert tree.page("e0", 0, 10) == (0, [])
