"""TypeScript declarations from a JSON Schema (scene/json_schema.py): each construct msgspec writes."""

from __future__ import annotations

import pytest

from scene.json_schema import typescript

NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
SCHEMA = {
    "$defs": {
        "Ping": {
            "title": "Ping",
            "description": "A ping.\n\nSecond paragraph.",
            "type": "object",
            "properties": {
                "type": {"enum": ["ping"]},
                "t": {"type": "number"},
                "note": NULLABLE_STRING,
                "level": {"enum": ["low", "high"], "default": "low"},
                "count": {"type": "integer", "default": 0},
                "at": {"type": "array", "prefixItems": [{"type": "number"}] * 3, "items": False, "minItems": 3},
                "tags": {"type": "array", "items": {"type": "string"}, "default": []},
                "mixed": {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "number"}]}},
                "by-key": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Pong"}},
                "kind": {"const": "fixed"},
                "extra": {},
            },
            "required": ["type", "t", "at"],
        },
        "Pong": {"type": "object", "properties": {"type": {"enum": ["pong"]}, "ok": {"type": "boolean"}}},
        "Message": {"anyOf": [{"$ref": "#/$defs/Ping"}, {"$ref": "#/$defs/Pong"}]},
        "Vec": {"type": "array", "prefixItems": [{"type": "number"}, NULLABLE_STRING], "minItems": 1},
        "Either": {"type": ["string", "null"]},
    }
}

EXPECTED = """\
// Generated.
//
// Do not edit.

export type Either = string | null;

export type Message = Ping | Pong;

/**
 * A ping.
 *
 * Second paragraph.
 */
export interface Ping {
  type: "ping";
  t: number;
  note?: string | null;
  level?: "low" | "high";
  count?: number;
  at: [number, number, number];
  tags?: string[];
  mixed?: number[];
  "by-key"?: Record<string, Pong>;
  kind?: "fixed";
  extra?: unknown;
}

export interface Pong {
  type?: "pong";
  ok?: boolean;
}

export type Vec = [number, (string | null)?, ...unknown[]];
"""


def test_every_construct_becomes_its_typescript_type() -> None:
    assert typescript(SCHEMA, "Generated.\n\nDo not edit.") == EXPECTED


@pytest.mark.parametrize("node", [{"type": "object", "additionalProperties": False}, {"type": "bigint"}, {"not": {}}])
def test_a_construct_it_does_not_know_is_refused(node: dict) -> None:
    with pytest.raises(ValueError, match="no TypeScript type"):
        typescript({"$defs": {"X": node}}, "")
