"""Shared fixtures. Real-data tests read ../shared/realdata (or $SEGDOCTOR_REALDATA) and skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REALDATA = Path(os.environ.get("SEGDOCTOR_REALDATA", REPO.parent / "shared" / "realdata"))


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} is absent (set SEGDOCTOR_REALDATA to its path)")
    return REALDATA


def realdata_path(*parts: str) -> Path:
    """A path inside the real data, skipping the test when it is missing."""
    p = REALDATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data {p} is absent (set SEGDOCTOR_REALDATA to the realdata folder)")
    return p
