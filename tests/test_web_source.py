"""Rules of the web client's source that a review would otherwise have to catch: text from users and
files never goes through an HTML parser, and nothing is loaded from a CDN at run time."""

from __future__ import annotations

import json
import re

from tests.web_helpers import REPO

CLIENT = REPO / "web_client"
SOURCES = [*sorted((CLIENT / "src").rglob("*.js")), CLIENT / "index.html"]


def test_no_html_is_parsed_from_strings():
    sink = re.compile(
        r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment"
    )
    offenders = [
        f"{p.relative_to(REPO)}:{n}"
        for p in SOURCES
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if sink.search(line)
    ]
    assert offenders == []


def test_nothing_is_fetched_from_another_origin():
    url = re.compile(r"https?://(?!www\.w3\.org/)")
    offenders = [
        f"{p.relative_to(REPO)}:{n}"
        for p in SOURCES
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if url.search(line)
    ]
    assert offenders == []


def test_dependencies_are_pinned_exactly():
    pkg = json.loads((CLIENT / "package.json").read_text())
    versions = {**pkg.get("dependencies", {}), **pkg.get("devDependencies", {})}
    assert versions and all(re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", v) for v in versions.values()), versions
