"""Synthetic scenes for exporter tests: small enough to read, rich enough to hit every feature.

`synthetic_scene()` has a hierarchy (site > storey > elements), a box mesh shared by two walls,
two solid materials (one translucent), vertex colours, a textured quad, a point cloud and an
element whose id contains `$` (IFC GlobalIds do). `grid_scene(n)` scales to thousands of elements
for timing and size measurements.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from scene.model import Element, InputRecord, Material, Mesh, Primitive, Scene


def translation(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def rotation_y(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    m = np.eye(4)
    m[0, 0], m[0, 2], m[2, 0], m[2, 2] = c, s, -s, c
    return m


def box_primitive(size: tuple[float, float, float], material: int, *, colored: bool = False) -> Primitive:
    """An axis-aligned box centred on the origin with flat normals (24 vertices, 12 triangles)."""
    half = np.asarray(size, dtype=np.float32) / 2
    positions, normals = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = np.zeros(3, np.float32)
            n[axis] = sign
            u, v = (axis + 1) % 3, (axis + 2) % 3
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3, np.float32)
                p[axis], p[u], p[v] = sign, a, b
                positions.append(p * half)
                normals.append(n)
    quads = np.arange(24, dtype=np.uint32).reshape(6, 4)
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    # Faces on the negative side are wound the wrong way round for CCW-outward; flip them.
    flip = np.tile(np.array([True, False]), 6)  # faces alternate -, + per axis; both triangles of each
    tris[flip] = tris[flip][:, ::-1]
    pos = np.asarray(positions, np.float32)
    colors = None
    if colored:
        colors = np.concatenate([(pos / half / 2 + 0.5), np.ones((24, 1), np.float32)], axis=1)
    return Primitive(pos, tris, material, normals=np.asarray(normals, np.float32), colors=colors)


def quad_primitive(width: float, height: float, material: int) -> Primitive:
    """A textured quad in the XY plane facing +Z."""
    w, h = width / 2, height / 2
    pos = np.array([[-w, -h, 0], [w, -h, 0], [w, h, 0], [-w, h, 0]], np.float32)
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    normals = np.tile(np.array([0, 0, 1], np.float32), (4, 1))
    return Primitive(pos, np.array([[0, 1, 2], [0, 2, 3]], np.uint32), material, normals=normals, uvs=uvs)


def sphere_primitive(radius: float, segments: int, material: int) -> Primitive:
    """A UV sphere: dense enough to be worth simplifying when `segments` is large."""
    rings = segments // 2
    theta = np.linspace(0, np.pi, rings + 1)
    phi = np.linspace(0, 2 * np.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    normals = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], axis=-1).reshape(-1, 3)
    grid = np.arange((rings + 1) * (segments + 1), dtype=np.uint32).reshape(rings + 1, segments + 1)
    a, b = grid[:-1, :-1].ravel(), grid[:-1, 1:].ravel()
    c, d = grid[1:, :-1].ravel(), grid[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    pos = (normals * radius).astype(np.float32)
    # Drop the degenerate triangles at the poles, which validators flag.
    area = np.linalg.norm(np.cross(pos[tris[:, 1]] - pos[tris[:, 0]], pos[tris[:, 2]] - pos[tris[:, 0]]), axis=1)
    return Primitive(pos, tris[area > 1e-12], material, normals=normals.astype(np.float32))


def pipe_primitive(radius: float, length: float, segments: int, material: int) -> Primitive:
    """A pipe along Y as CAD exports one: smooth sides, flat caps whose vertices are split from the sides'
    (4 * segments - 4 triangles; 26 segments make the 100 triangles of a typical plant pipe)."""
    angle = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(angle), np.zeros(segments), np.sin(angle)], axis=1).astype(np.float32)
    ends = [np.array([0, y, 0], np.float32) for y in (-length / 2, length / 2)]
    side = np.concatenate([ring * radius + ends[0], ring * radius + ends[1]])
    caps = np.concatenate([ring * radius + ends[0], ring * radius + ends[1]])
    positions = np.concatenate([side, caps]).astype(np.float32)
    normals = np.concatenate([ring, ring, np.tile([0, -1, 0], (segments, 1)), np.tile([0, 1, 0], (segments, 1))])
    i = np.arange(segments, dtype=np.uint32)
    j = (i + 1) % segments
    walls = np.concatenate([np.stack([i, i + segments, j], 1), np.stack([j, i + segments, j + segments], 1)])
    fan = np.arange(1, segments - 1, dtype=np.uint32)
    bottom = np.stack([np.zeros_like(fan), fan, fan + 1], 1) + 2 * segments
    top = np.stack([np.zeros_like(fan), fan + 1, fan], 1) + 3 * segments
    return Primitive(positions, np.concatenate([walls, bottom, top]), material, normals=normals.astype(np.float32))


def small_parts_scene(count: int) -> Scene:
    """A plant of `count` small parts, as a generated IFC plant has them: pipes of their own length (100
    triangles each, unique meshes) and valves that share one mesh (a 24-segment ball, like a mapped type), in a
    row of racks. Ids `pipe-00000`, `valve-00001`, ... by position; every third part is a valve."""
    scene = Scene()
    scene.inputs.append(InputRecord("plant.ifc", "d" * 64, "ifc", "synthetic 1.0"))
    steel = scene.add_material(Material("Steel", (0.55, 0.6, 0.65, 1.0)))
    paint = scene.add_material(Material("Paint", (0.8, 0.35, 0.2, 1.0)))
    scene.meshes["valve"] = Mesh("valve", [sphere_primitive(0.3, 24, paint)])
    scene.add(Element("site", "Plant", "IfcSite"))
    side = int(np.ceil(np.sqrt(count)))
    for i in range(count):
        m = translation((i % side) * 1.5, 0.8, (i // side) * 1.5)
        if i % 3 == 2:
            scene.add(Element(f"valve-{i:05d}", f"Valve {i}", "IfcValve", "site", m, "valve"))
            continue
        scene.meshes[f"pipe{i}"] = Mesh(f"pipe{i}", [pipe_primitive(0.1, 1.0 + 0.01 * i, 26, steel)])
        scene.add(Element(f"pipe-{i:05d}", f"Pipe {i}", "IfcPipeSegment", "site", m, f"pipe{i}"))
    return scene


def checker_png(size: int = 8) -> bytes:
    """A tiny RGB checkerboard PNG, written by hand so tests need no imaging library."""
    pixels = (np.indices((size, size)).sum(axis=0) % 2 * 255).astype(np.uint8)
    rgb = np.stack([pixels, 128 * np.ones_like(pixels), 255 - pixels], axis=-1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def synthetic_scene() -> Scene:
    scene = Scene()
    scene.inputs.append(
        InputRecord("site.ifc", "0" * 64, "ifc", "synthetic 1.0", source_units="mm", source_up_axis="Z")
    )
    concrete = scene.add_material(Material("Concrete", (0.6, 0.6, 0.6, 1.0), roughness=0.9))
    glass = scene.add_material(Material("Glass", (0.5, 0.7, 0.9, 0.4), roughness=0.1, double_sided=True))
    painted = scene.add_material(Material("Painted", (1.0, 1.0, 1.0, 1.0)))
    poster = scene.add_material(Material("Poster", texture=checker_png(), texture_mime="image/png"))
    cloud = scene.add_material(Material("Scan", (1.0, 1.0, 1.0, 1.0)))

    scene.meshes["wall"] = Mesh("wall", [box_primitive((4.0, 3.0, 0.2), concrete)])
    scene.meshes["window"] = Mesh(
        "window", [box_primitive((1.0, 1.2, 0.05), glass), box_primitive((1.1, 0.05, 0.1), concrete)]
    )
    scene.meshes["crate"] = Mesh("crate", [box_primitive((0.5, 0.5, 0.5), painted, colored=True)])
    scene.meshes["poster"] = Mesh("poster", [quad_primitive(1.0, 0.7, poster)])
    scene.meshes["ball"] = Mesh("ball", [sphere_primitive(0.5, 64, painted)])
    rng = np.random.default_rng(7)
    points = rng.uniform(-1, 1, (500, 3)).astype(np.float32)
    colors = np.concatenate([rng.uniform(0, 1, (500, 3)), np.ones((500, 1))], axis=1).astype(np.float32)
    scene.meshes["scan"] = Mesh("scan", [Primitive(points, None, cloud, colors=colors)])

    pset = {"Pset_WallCommon": {"IsExternal": True, "FireRating": "F90", "Width": 0.2, "Layers": 3}}
    storey_m = translation(0, 3, 0)
    scene.add(Element("site", "Site", "IfcSite", matrix=translation(10, 0, -5)))
    scene.add(Element("storey$1", "Ground Floor", "IfcBuildingStorey", "site", translation(10, 0, -5)))
    scene.add(Element("storey$2", "First Floor", "IfcBuildingStorey", "site", translation(10, 0, -5) @ storey_m))
    for i, sid in enumerate(("storey$1", "storey$2")):
        base = scene.elements[sid].matrix
        scene.add(Element(f"wall{i}", "Wall", "IfcWall", sid, base @ translation(0, 1.5, 0), "wall", pset))
        scene.add(Element(f"wall{i}b", "Wall", "IfcWall", sid, base @ translation(2, 1.5, 2) @ rotation_y(90), "wall"))
    scene.add(
        Element(
            "win$0",
            "Window/1",
            "IfcWindow",
            "wall0",
            translation(10, 1.5, -5),
            "window",
            {"Pset_WindowCommon": {"U-Value": 1.1, "Tags": ["a", "b"], "Note": None}},
            units={"Pset_WindowCommon": {"U-Value": "W/(m2·K)"}},
        )
    )
    scene.add(Element("crate", "Crate", "IfcFurnishingElement", "storey$1", translation(11, 0.25, -4), "crate"))
    scene.add(Element("poster", "Poster", "IfcAnnotation", "storey$2", translation(10, 4.5, -4.8), "poster"))
    scene.add(Element("ball", "Ball", "Mesh", "storey$1", translation(12, 0.5, -3), "ball"))
    scene.add(Element("scan", "Scan 1", "PointCloud", None, translation(0, 0, 5), "scan"))
    scene.warnings.append("synthetic warning")
    return scene


def grid_scene(count: int, *, kinds: int = 20) -> Scene:
    """`count` elements on a grid under one root, sharing `kinds` distinct meshes (like a real BIM model)."""
    scene = Scene()
    scene.inputs.append(InputRecord("grid.ifc", "f" * 64, "ifc", "synthetic 1.0"))
    mats = [scene.add_material(Material(f"M{i}", (0.2 + 0.1 * i, 0.5, 0.8 - 0.1 * i, 1.0))) for i in range(4)]
    for k in range(kinds):
        size = (0.5 + 0.1 * k, 1.0 + 0.05 * k, 0.3)
        prims = [box_primitive(size, mats[k % 4])] if k % 5 else [sphere_primitive(0.4, 16 + 2 * k, mats[k % 4])]
        scene.meshes[f"kind{k}"] = Mesh(f"kind{k}", prims)
    scene.add(Element("root", "Building", "IfcBuilding"))
    side = int(np.ceil(np.sqrt(count - 1)))
    for i in range(count - 1):
        m = translation((i % side) * 2.0, 0.0, (i // side) * 2.0) @ rotation_y(15 * (i % 7))
        props = {"Pset_Common": {"Index": i, "Reference": f"R{i % 13}", "LoadBearing": bool(i % 2)}}
        scene.add(Element(f"e${i}", f"Element {i}", f"IfcKind{i % 9}", "root", m, f"kind{i % kinds}", props))
    return scene


def repeated_scene(copies: int, *, kinds: int = 3, unique: int = 4) -> Scene:
    """A plant of `copies` elements sharing `kinds` equipment meshes (a pump body, a valve ball, a flange:
    each element one placement of one of them, turned and some stretched, as mapped IFC types are), plus
    `unique` elements with meshes of their own. Ids: `eq-00000`... in order, `part-0`... for the unique ones."""
    scene = Scene()
    scene.inputs.append(InputRecord("plant.ifc", "e" * 64, "ifc", "synthetic 1.0"))
    mats = [scene.add_material(Material(f"Paint {k}", (0.3 + 0.2 * k, 0.55, 0.75 - 0.2 * k, 1.0))) for k in range(3)]
    shapes = [
        lambda m, f: box_primitive((0.6 * f, 0.8, 0.4), m),
        lambda m, f: sphere_primitive(0.35 * f, 24, m),
        lambda m, f: sphere_primitive(0.25 * f, 12, m),
    ]
    for k in range(kinds):  # each kind its own geometry (the writer would merge identical ones)
        prim = shapes[k % len(shapes)](mats[k % len(mats)], 1 + 0.01 * (k // len(shapes)))
        scene.meshes[f"type{k}"] = Mesh(f"type{k}", [prim])
    scene.add(Element("site", "Plant", "IfcSite"))
    side = int(np.ceil(np.sqrt(copies + unique)))
    for i in range(copies):
        m = translation((i % side) * 1.5, 0.5, (i // side) * 1.5) @ rotation_y(30 * (i % 5))
        if i % 4 == 3:
            m = m @ np.diag([1.0, 1.5, 1.0, 1.0])  # a taller variant of the type
        props = {"Pset_Tag": {"Tag": f"EQ-{i:05d}"}}
        scene.add(Element(f"eq-{i:05d}", f"Equipment {i}", "IfcPump", "site", m, f"type{i % kinds}", props))
    for u in range(unique):
        at = copies + u
        scene.meshes[f"part{u}"] = Mesh(f"part{u}", [box_primitive((0.9, 0.3 + 0.2 * u, 0.9), mats[u % len(mats)])])
        m = translation((at % side) * 1.5, 0.5, (at // side) * 1.5)
        scene.add(Element(f"part-{u}", f"Part {u}", "IfcPlate", "site", m, f"part{u}"))
    return scene
