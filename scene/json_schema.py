"""JSON Schemas generated from msgspec Structs, written the same way under every msgspec release, and
TypeScript declarations generated from them.

msgspec copies each Struct's docstring into `description`; releases differ in whether they strip the
docstring's indentation (0.23 does, 0.22 did not). The published schemas (`docs/*.schema.json`) are
tidied here so that a new msgspec release changes them only where the schema itself changed.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
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


_TS_PRIMITIVES = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}


def typescript(schema: dict[str, Any], header: str) -> str:
    """TypeScript declarations of every `$defs` entry of `schema`, in name order, after `header` (as comments).

    Objects with properties become interfaces (a property not `required` is optional, `?:`), `enum`s and
    `const`s literal unions, `anyOf` / `oneOf` unions, `prefixItems` tuples (open unless `items` is false),
    other arrays `T[]`, other objects `Record<string, T>` of their `additionalProperties`. A construct it
    does not know raises ValueError rather than being declared loosely.
    """
    lines = [f"// {line}".rstrip() for line in header.splitlines()]
    for name, node in sorted(schema["$defs"].items()):
        lines += ["", *_ts_doc(node, "")]
        if node.get("type") == "object" and "properties" in node:
            lines.append(f"export interface {name} {_ts_object(node, '')}")
        else:
            lines.append(f"export type {name} = {_ts_type(node, '')};")
    return "\n".join(lines) + "\n"


def _ts_doc(node: dict[str, Any], indent: str) -> list[str]:
    text = node.get("description")
    if not text:
        return []
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in text.splitlines()), f"{indent} */"]


def _ts_object(node: dict[str, Any], indent: str) -> str:
    inner = indent + "  "
    required = set(node.get("required", ()))
    fields = []
    for name, sub in node["properties"].items():
        key = name if name.isidentifier() else orjson.dumps(name).decode()
        fields += [*_ts_doc(sub, inner), f"{inner}{key}{'' if name in required else '?'}: {_ts_type(sub, inner)};"]
    return "{\n" + "".join(f"{field}\n" for field in fields) + indent + "}"


def _ts_union(members: Iterable[str]) -> str:
    return " | ".join(dict.fromkeys(members))  # once each: integer and number are both `number`


def _ts_array(items: dict[str, Any], indent: str) -> str:
    item = _ts_type(items, indent)
    return f"({item})[]" if " | " in item else f"{item}[]"


def _ts_tuple_item(item: dict[str, Any], optional: bool, indent: str) -> str:
    text = _ts_type(item, indent)
    if not optional:
        return text
    return f"({text})?" if " | " in text else f"{text}?"


def _ts_type(node: dict[str, Any] | bool, indent: str) -> str:
    if node is True or node == {}:
        return "unknown"
    if not isinstance(node, dict):
        raise ValueError(f"no TypeScript type for the schema {node!r}")
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    if "const" in node:
        return orjson.dumps(node["const"]).decode()
    if "enum" in node:
        return _ts_union(orjson.dumps(value).decode() for value in node["enum"])
    for union in ("anyOf", "oneOf"):
        if union in node:
            return _ts_union(_ts_type(member, indent) for member in node[union])
    kind = node.get("type")
    if isinstance(kind, list):
        return _ts_union(_ts_type({**node, "type": one}, indent) for one in kind)
    if kind == "array" and "prefixItems" in node:
        required = node.get("minItems", 0)
        items = [_ts_tuple_item(item, i >= required, indent) for i, item in enumerate(node["prefixItems"])]
        if node.get("items") is not False:
            items.append(f"...{_ts_array(node.get('items', {}), indent)}")
        return f"[{', '.join(items)}]"
    if kind == "array":
        return _ts_array(node.get("items", {}), indent)
    if kind == "object" and "properties" in node:
        return _ts_object(node, indent)
    if kind == "object":
        return f"Record<string, {_ts_type(node.get('additionalProperties', {}), indent)}>"
    if kind in _TS_PRIMITIVES:
        return _TS_PRIMITIVES[kind]
    raise ValueError(f"no TypeScript type for the schema {node!r}")
