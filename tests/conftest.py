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


# --- every report a test writes validates against the published JSON Schema --------------------------

_VALIDATED: set[Path] = set()


def _report_errors(folder: Path) -> list[str]:
    from report_schema import is_report, report_errors

    errors = []
    for path in sorted(folder.rglob("*.json")):
        if path in _VALIDATED or not path.is_file() or path.is_symlink():
            continue
        _VALIDATED.add(path)
        doc = is_report(path)
        if doc is not None:
            errors += [f"{path}: {e}" for e in report_errors(doc)]
    return errors


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """After each test that has a tmp_path: every segdoctor report JSON written there follows the schema."""
    result = yield
    folder = getattr(item, "funcargs", {}).get("tmp_path")
    if folder is not None:
        errors = _report_errors(Path(folder))
        assert not errors, "reports that do not follow segdoctor/report/report.schema.json:\n" + "\n".join(errors[:10])
    return result


@pytest.fixture(autouse=True, scope="session")
def _session_reports_follow_the_schema(tmp_path_factory):
    """At the end: the reports written under module or session temporary folders too."""
    yield
    errors = _report_errors(tmp_path_factory.getbasetemp())
    assert not errors, "reports that do not follow segdoctor/report/report.schema.json:\n" + "\n".join(errors[:10])


# --- random weights and random augmentations start from one seed in every test ------------------------


@pytest.fixture(autouse=True)
def _seeded_keras():
    """Where Keras is loaded (by a test's fixtures), every test starts from the same random state, so that a random
    initialisation or a random flip is the same in every run: a test passes or fails for the code, not the draw. Keras
    is never imported here (most tests must run without TensorFlow)."""
    import sys

    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "utils"):
        keras.utils.set_random_seed(1234)
    yield
