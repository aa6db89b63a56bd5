"""Combine the scenes of several inputs into one scene under one root, keeping ids unique."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from scene.model import Element, Scene

ROOT_ID = "twinview:scene"


def _prefix(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem) or "input"


def merge(scenes: list[Scene], name: str = "Scene") -> Scene:
    """One input is returned as is. Several are placed under a `TwinScene` root element.

    Ids keep their original value unless an earlier input already uses it; then the id is
    prefixed with the input's file stem (`pump:Body`). Mesh ids are always namespaced per input.
    """
    if len(scenes) == 1:
        return scenes[0]
    out = Scene()
    out.add(Element(id=ROOT_ID, name=name, cls="TwinScene"))
    for index, src in enumerate(scenes):
        prefix = _prefix(src.inputs[0].path) if src.inputs else f"input{index}"
        material_offset = len(out.materials)
        input_offset = len(out.inputs)
        out.materials.extend(src.materials)
        out.inputs.extend(src.inputs)
        out.warnings.extend(src.warnings)
        for step, seconds in src.timings.items():
            out.timings[step] = out.timings.get(step, 0.0) + seconds
        for mesh_id, mesh in src.meshes.items():
            new_mesh_id = f"{index}/{mesh_id}"
            prims = [replace(p, material=p.material + material_offset) for p in mesh.primitives]
            lods = [[replace(p, material=p.material + material_offset) for p in level] for level in mesh.lods]
            out.meshes[new_mesh_id] = replace(mesh, id=new_mesh_id, primitives=prims, lods=lods)
        renamed: dict[str, str] = {}
        for el in src.elements.values():
            new_id = el.id if el.id not in out.elements else f"{prefix}:{el.id}"
            while new_id in out.elements:
                new_id = f"{prefix}{index}:{el.id}"
            renamed[el.id] = new_id
            parent = renamed[el.parent] if el.parent is not None else ROOT_ID
            out.add(
                replace(
                    el,
                    id=new_id,
                    parent=parent,
                    mesh=f"{index}/{el.mesh}" if el.mesh is not None else None,
                    source=el.source + input_offset,
                )
            )
        if any(old != new for old, new in renamed.items()):
            changed = sum(1 for old, new in renamed.items() if old != new)
            out.warnings.append(f"{src.inputs[0].path if src.inputs else prefix}: {changed} ids renamed to stay unique")
    return out
