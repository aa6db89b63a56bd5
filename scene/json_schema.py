"""JSON Schemas generated from msgspec Structs, written the same way under every msgspec release.

msgspec copies each Struct's docstring into `description`; releases differ in whether they strip the
docstring's indentation (0.23 does, 0.22 did not). The published schemas (`docs/*.schema.json`) are
tidied here so that a new msgspec release changes them only where the schema itself changed.
"""

from __future__ import annotations

import inspect
from typing import Any

import orjson


def tidy(node: Any) -> Any:
    """`node` with every `description` dedented and stripped, as `inspect.cleandoc` does."""
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value) if key == "description" and isinstance(value, str) else tidy(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [tidy(item) for item in node]
    return node


def schema_text(schema: dict[str, Any]) -> str:
    """A schema file's text: two-space indent and sorted keys, so a diff shows only real changes."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
