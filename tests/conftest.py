"""Shared fixtures: where the third-party corpus lives, and a skip with the reason when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"corpus not found at {SHARED_DATA}: clone TwinView beside ../shared to run corpus tests")
    return SHARED_DATA
