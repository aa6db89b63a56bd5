"""Finite numbers at every boundary: NaN and ±infinity never enter the twin.

MessagePack carries NaN and infinity, YAML spells them `.nan` and `.inf`, and JSON writers turn them into
`null`, so one that got in would be stored, echoed to every client and break whoever reads it next.
Two checks keep them out where data enters:

- `Finite` is the float type of every msgspec Struct field that comes from outside (coordinates,
  camera parameters, command values): decoding refuses NaN and ±inf (and JSON's `1e999`) with the
  field's path, like any other wrong value;
- `non_finite(data)` finds the first such number in parsed configuration data (bindings and procedure
  files), for an error that names the entry.
"""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any

import msgspec

# The bounds are the largest finite floats: msgspec compares against them, and NaN fails every comparison.
Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


def non_finite(data: Any) -> tuple[list[str | int], float] | None:
    """The path (keys and indices) and value of the first NaN or ±inf in parsed JSON/YAML data, else None.
    Iterative, so that any nesting the parser accepted is walked."""
    stack: list[tuple[list[str | int], Any]] = [([], data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return path, node
        if isinstance(node, dict):
            stack.extend(([*path, str(key)], value) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(([*path, index], value) for index, value in reversed(list(enumerate(node))))
    return None
