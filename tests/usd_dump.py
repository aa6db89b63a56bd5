"""A composed USD stage as plain data, to compare stages authored differently (one layer, or parts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _value(value: object) -> object:
    from pxr import Sdf

    # An asset path resolves against the folder the stage is in: compare what was authored.
    return value.path if isinstance(value, Sdf.AssetPath) else repr(value)


def composed(path: Path) -> list[Any]:
    """The stage's metadata, then every prim of the stage at `path` (instance proxies included) in traversal
    order: its path, type, specifier, instancing, and every authored attribute in order (type, value, custom
    data, display name and group, connections) and relationship (targets)."""
    from pxr import Usd

    stage = Usd.Stage.Open(str(path))
    out: list[Any] = [(stage.GetDefaultPrim().GetPath(), stage.GetRootLayer().customLayerData)]
    for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
        attributes = [
            (
                a.GetName(),
                str(a.GetTypeName()),
                _value(a.Get()),
                a.GetCustomData(),
                a.GetDisplayName(),
                a.GetDisplayGroup(),
                [str(c) for c in a.GetConnections()],
            )
            for a in prim.GetAuthoredAttributes()
        ]
        relationships = {r.GetName(): [str(t) for t in r.GetTargets()] for r in prim.GetAuthoredRelationships()}
        out.append(
            (
                str(prim.GetPath()),
                prim.GetTypeName(),
                prim.GetSpecifier(),
                prim.IsInstance(),
                prim.IsInstanceProxy(),
                attributes,
                relationships,
            )
        )
    return out
