"""Value mappings between TwinView and BCF: axes, dates, names, colours, guids, component ids.

Each function here has an exact inverse on the values TwinView writes; where BCF cannot hold a value
exactly (an id that is not a UUID, a blank string, a sub-microsecond time), the writer records the
original in the TwinView extension (see `extension.py`).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, date, datetime
from typing import Final

from viewer_server.topics import Priority, TopicStatus, Vec3

# Namespace of the UUIDs we derive for ids BCF cannot take as they are (BCF guids are lowercase UUIDs).
TWINVIEW_NS: Final = uuid.UUID("5b0d6c3e-6f1e-4b8e-9a51-7c1f0d2a9e44")
ORIGINATING_SYSTEM: Final = "TwinView"
# BCF requires an aspect ratio; where a camera has none recorded, 16:9 (the common screen) is written, and
# read back as "none recorded".
DEFAULT_ASPECT: Final = 16 / 9

_GUID = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_IFC_GUID = re.compile(r"[0-9A-Za-z_$]{22}")
_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_XS_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_BCF_COLOR = re.compile(r"[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?")
# Characters XML 1.0 cannot carry at all (C0 controls except tab, LF, CR; U+FFFE/U+FFFF; surrogates).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

# Our names -> the names we write. Both directions are one-to-one, so they need no extension.
STATUS_TO_BCF: Final[dict[str, str]] = {
    "open": "Open",
    "in_progress": "InProgress",
    "resolved": "Resolved",
    "closed": "Closed",
}
PRIORITY_TO_BCF: Final[dict[str, str]] = {"low": "Low", "normal": "Normal", "high": "High", "critical": "Critical"}
# What other tools write (the official test cases use OPEN / Open / IN_PROGRESS / SOLVED), keyed
# by the name lower-cased with everything but letters removed.
_STATUS_FROM_BCF: Final[dict[str, TopicStatus]] = {
    "open": "open", "new": "open", "active": "open", "reopened": "open", "assigned": "open",
    "inprogress": "in_progress", "started": "in_progress", "working": "in_progress", "inreview": "in_progress",
    "resolved": "resolved", "solved": "resolved", "fixed": "resolved", "done": "resolved",
    "closed": "closed", "cancelled": "closed", "canceled": "closed", "rejected": "closed",
}  # fmt: skip
_PRIORITY_FROM_BCF: Final[dict[str, Priority]] = {
    "low": "low", "minor": "low", "trivial": "low", "lowest": "low",
    "normal": "normal", "medium": "normal", "moderate": "normal", "default": "normal",
    "high": "high", "major": "high", "important": "high",
    "critical": "critical", "blocker": "critical", "urgent": "critical", "highest": "critical", "severe": "critical",
}  # fmt: skip


def _key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def status_from_bcf(name: str) -> TopicStatus | None:
    return _STATUS_FROM_BCF.get(_key(name))


def priority_from_bcf(name: str) -> Priority | None:
    return _PRIORITY_FROM_BCF.get(_key(name))


# --- axes: BCF/IFC are Z-up, we are Y-up (scene.model.Z_UP_TO_Y_UP: (x, y, z)_zup -> (x, z, -y)_yup) ------------


def zup_to_yup(x: float, y: float, z: float) -> Vec3:
    return Vec3(x, z, -y)


def yup_to_zup(v: Vec3) -> tuple[float, float, float]:
    return (v.x, -v.z, v.y)


def fmt_double(v: float) -> str:
    """xs:double lexical form; repr() round-trips exactly, and xs:double spells infinities and NaN its own way."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "INF" if v > 0 else "-INF"
    return repr(v)


# --- dates -------------------------------------------------------------------------------------------------


def fmt_datetime(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime(text: str) -> float:
    """Unix seconds from an xs:dateTime; a date-time without a zone is taken as UTC."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def is_xs_datetime(text: str) -> bool:
    """Whether `text` is an xs:dateTime that we can also read (a value kept as another tool wrote it)."""
    if not _XS_DATETIME.fullmatch(text):
        return False
    try:
        parse_datetime(text)
    except ValueError:
        return False
    return True


def fmt_due_date(iso: str) -> str | None:
    """Our due date is an ISO date; BCF wants a date-time (midnight UTC). None if it is not a date."""
    try:
        return f"{date.fromisoformat(iso).isoformat()}T00:00:00Z"
    except ValueError:
        return None


def due_date_from(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


# --- text, ids, colours ------------------------------------------------------------------------------------


def xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def nonblank(text: str | None) -> str | None:
    """BCF's NonEmptyOrBlankString: the XML-safe text, or None where BCF would reject it (blank after collapse).
    Blank is judged by Unicode whitespace, not just XML's four characters: validators differ (xmlschema
    collapses a no-break space too)."""
    if text is None:
        return None
    safe = xml_text(text)
    return safe if safe.strip() else None


def is_bcf_guid(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


def bcf_guid(value: str) -> str:
    """The id itself where it is a BCF guid; our 32-hex ids (secrets.token_hex(16)) in UUID spelling, so other
    tools show a recognisable id; anything else a UUID derived from it (deterministic, so references agree)."""
    if is_bcf_guid(value):
        return value
    if _HEX32.fullmatch(value):
        return str(uuid.UUID(value))
    return str(uuid.uuid5(TWINVIEW_NS, value))


def derived_guid(*parts: str) -> str:
    return str(uuid.uuid5(TWINVIEW_NS, "\x1f".join(parts)))


def is_ifc_guid(value: str) -> bool:
    return _IFC_GUID.fullmatch(value) is not None


def color_to_bcf(color: str) -> str | None:
    return color[1:].upper() if _HEX_COLOR.fullmatch(color) else None


def color_from_bcf(color: str) -> str | None:
    """BCF colours are RRGGBB or AARRGGBB (alpha first); we keep the RGB part."""
    color = color.strip()
    if not _BCF_COLOR.fullmatch(color):
        return None
    return "#" + color[-6:].lower()
