"""The server's view of a built scene: the element search index."""

from __future__ import annotations

from viewer_server.scenes import ElementIndex


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
