"""Where a view is looked at from: the camera and section planes of a viewpoint, shared by topics (BCF
viewpoints), presenter views and procedure steps. World coordinates of the canonical scene (metres, Y-up);
every number is finite (`scene.finite.Finite`: a NaN fails decoding).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from scene.finite import Finite

# Width / height of a recorded view: no screen is 20 times wider than high (or the reverse).
MAX_ASPECT_RATIO: Final = 20.0


class Vec3(msgspec.Struct, array_like=True):
    x: Finite
    y: Finite
    z: Finite


class Camera(msgspec.Struct, omit_defaults=True):
    """A perspective camera (BCF PerspectiveCamera) or, with `ortho_height`, an orthogonal one."""

    position: Vec3
    direction: Vec3
    up: Vec3
    fov_deg: Finite = 60.0
    ortho_height: Finite | None = None
    # Width / height of the view, when recorded (BCF `AspectRatio`); None: unknown. The bounds keep it finite.
    aspect_ratio: Annotated[float, msgspec.Meta(ge=1 / MAX_ASPECT_RATIO, le=MAX_ASPECT_RATIO)] | None = None


class ClippingPlane(msgspec.Struct):
    """Keeps the half-space the normal points away from (BCF convention: the normal points to the removed side)."""

    location: Vec3
    direction: Vec3
