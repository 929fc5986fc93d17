"""The SD6xx checks on the real training logs in ../shared/realdata/histories (JSON and CSV alike)."""

from __future__ import annotations

import pytest

from segdoctor.commands.history import check_history
from segdoctor.findings import Severity

from conftest import realdata_path

FORMATS = ("history.json", "csv")


def findings(stem: str, fmt: str):
    return check_history(realdata_path("histories", f"{stem}.{fmt}")).findings


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", FORMATS)
def test_dice_zero_is_a_metric_collapse(fmt):
    found = {f.code: f for f in findings("dice_zero", fmt)}
    assert found["SD605"].severity == Severity.ERROR
    assert "0.00 for all 5 epochs" in found["SD605"].title
    assert not {"SD601", "SD602", "SD609"} & set(found)


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", FORMATS)
def test_negative_loss_with_iou_above_one_is_out_of_range_not_nan_or_divergence(fmt):
    found = {f.code: f for f in findings("negative_loss_iou_above_1", fmt)}
    assert "SD609" in found
    assert "7.13" in found["SD609"].title and "-212" in found["SD609"].title
    assert not {"SD601", "SD602", "SD603"} & set(found)


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_loss(fmt):
    found = {f.code: f for f in findings("nan_loss", fmt)}
    assert found["SD601"].severity == Severity.ERROR
    assert "from the first epoch" in found["SD601"].title
    assert "val_loss" in found["SD601"].title


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", FORMATS)
def test_val_loss_oscillation(fmt):
    found = {f.code: f for f in findings("val_loss_oscillation", fmt)}
    assert "SD603" in found
    assert found["SD603"].evidence["direction_changes"] == 62 and found["SD603"].evidence["comparisons"] == 93
    assert not {"SD601", "SD602", "SD607"} & set(found)


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", FORMATS)
def test_healthy_control_has_no_warning_or_error(fmt):
    assert [f.code for f in findings("healthy_control", fmt) if f.severity >= Severity.WARNING] == []


@pytest.mark.realdata
@pytest.mark.parametrize("stem", ["dice_zero", "healthy_control", "nan_loss", "negative_loss_iou_above_1", "val_loss_oscillation"])
def test_json_and_csv_give_the_same_findings(stem):
    as_json = [(f.code, f.title) for f in findings(stem, "history.json")]
    as_csv = [(f.code, f.title) for f in findings(stem, "csv")]
    assert as_json == as_csv


@pytest.mark.realdata
@pytest.mark.parametrize("stem", ["dice_zero", "healthy_control", "nan_loss", "negative_loss_iou_above_1", "val_loss_oscillation"])
def test_every_figure_of_the_real_histories_draws(stem):
    from segdoctor.report.figures import render_png

    report = check_history(realdata_path("histories", f"{stem}.csv"))
    figures = [fig for f in report.findings for fig in f.figures] + [fig for s in report.sections for fig in s.figures]
    assert figures
    for fig in figures:
        png = render_png(fig)
        assert png is not None and png.startswith(b"\x89PNG"), fig.title


def test_one_epoch_log_figures_draw():
    from segdoctor.commands.history import diagnose_history
    from segdoctor.io.history import history_from_mapping
    from segdoctor.report.figures import render_png

    result = diagnose_history(history_from_mapping({"loss": [0.01], "accuracy": [0.998], "dice_coef": [4e-11], "lr": [1e-3]}))
    figures = [fig for f in result.findings for fig in f.figures] + list(result.sections[0].figures)
    assert {f.code for f in result.findings} >= {"SD605", "SD606"}
    assert all(render_png(fig) is not None for fig in figures)
