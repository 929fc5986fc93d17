"""pyproject.toml lists every package explicitly (report_templates/ is mapped into the package): a new
subpackage that is not listed would be missing from an installed segdoctor."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO = Path(__file__).resolve().parent.parent


def _config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed():
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "segdoctor").rglob("__init__.py")}
    listed = set(_config()["packages"])
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == {"segdoctor.report_templates"}


def test_package_data_covers_every_template_and_schema():
    config = _config()
    assert config["package-dir"]["segdoctor.report_templates"] == "report_templates"
    patterns = config["package-data"]
    templates = {p.suffix for p in (REPO / "report_templates").iterdir() if p.is_file()}
    assert templates <= {"." + g.split(".")[-1] for g in patterns["segdoctor.report_templates"]}
    data_files = {p.suffix for p in (REPO / "segdoctor").rglob("*") if p.is_file()
                  and p.suffix not in (".py", ".c", ".pyc", ".so", ".pyd") and "__pycache__" not in p.parts}
    assert data_files <= {".json"} and patterns["segdoctor.report"] == ["*.json"]


def test_the_compiled_helpers_are_optional():
    (ext,) = _config()["ext-modules"]
    assert ext["name"] == "segdoctor._speedups" and ext["optional"] is True
    assert all((REPO / s).is_file() for s in ext["sources"])
