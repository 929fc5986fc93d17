"""SD601–SD610 on synthetic curves: each rule fires on its symptom and stays quiet on a healthy curve."""

from __future__ import annotations

import numpy as np
import pytest

from segdoctor.commands.history import diagnose_history
from segdoctor.findings import Severity
from segdoctor.io.history import history_from_mapping
from segdoctor.registry import all_checks
from segdoctor.stats import curves


def diagnose(columns, **kwargs):
    history = history_from_mapping({k: list(v) for k, v in columns.items()}, params=kwargs.pop("params", None))
    return diagnose_history(history, **kwargs)


def codes(columns, **kwargs):
    return {f.code for f in diagnose(columns, **kwargs).findings}


def only(columns, code, **kwargs):
    found = [f for f in diagnose(columns, **kwargs).findings if f.code == code]
    assert len(found) == 1, found
    return found[0]


HEALTHY = {
    "loss": [0.9, 0.6, 0.45, 0.36, 0.31, 0.28, 0.26, 0.25, 0.245, 0.243],
    "dice_coef": [0.2, 0.45, 0.6, 0.68, 0.72, 0.75, 0.77, 0.78, 0.785, 0.787],
    "accuracy": [0.8, 0.9, 0.93, 0.95, 0.96, 0.965, 0.968, 0.97, 0.971, 0.9712],
    "val_loss": [0.95, 0.65, 0.5, 0.41, 0.36, 0.33, 0.31, 0.305, 0.302, 0.301],
    "val_dice_coef": [0.18, 0.4, 0.55, 0.63, 0.68, 0.71, 0.73, 0.74, 0.745, 0.747],
    "val_accuracy": [0.8, 0.89, 0.92, 0.94, 0.95, 0.955, 0.958, 0.96, 0.961, 0.9612],
    "lr": [1e-3] * 10,
}


def test_every_history_check_is_registered_and_documented():
    history_checks = [c for c in all_checks() if c.scope == "history"]
    assert [c.code for c in history_checks] == [f"SD6{i:02d}" for i in range(1, 11)]
    for c in history_checks:
        doc = c.documentation()
        assert "*Why it matters:*" in doc and "*How to fix:*" in doc and "Thresholds:" in doc, c.code


def test_healthy_run_is_quiet():
    result = diagnose(HEALTHY)
    assert result.findings == []
    assert {s.status for s in result.checks} == {"passed"}


# --- SD601 -----------------------------------------------------------------------------------------


def test_sd601_nan_after_finite_epochs_gives_lr_numbers():
    f = only({"loss": [0.7, 0.5, float("nan"), float("nan")], "lr": [0.01] * 4}, "SD601")
    assert f.severity == Severity.ERROR
    assert f.evidence["first_bad_epoch"] == 3 and f.evidence["bad_epochs"] == 2
    assert "from 0.01 to 0.001" in f.fix and "clipnorm" in f.snippet
    assert "blew up" in f.why


def test_sd601_nan_from_the_first_epoch_points_at_labels():
    f = only({"loss": [float("nan")] * 3}, "SD601")
    assert "from the first epoch" in f.title and "labels" in f.why


def test_sd601_explosion_and_inf():
    assert "SD601" in codes({"loss": [0.5, 0.4, 600.0]})
    assert "SD601" in codes({"loss": [0.5, float("inf"), 0.4]})
    assert "SD601" not in codes({"loss": [0.5, 0.4, 400.0]})


def test_sd601_empty_cells_are_not_nan():
    assert "SD601" not in codes({"loss": [0.5, 0.4, 0.3], "val_loss": [None, 0.5, None]})


# --- SD602 -----------------------------------------------------------------------------------------


def test_sd602_loss_rising_to_a_multiple_of_its_minimum():
    f = only({"loss": [1.0, 0.5, 0.3, 0.35, 0.5, 0.8, 1.2, 1.5]}, "SD602")
    assert f.evidence["ratio_to_minimum"] >= 2
    assert "Lower the learning rate" in f.fix and "warmup_target" in f.snippet


def test_sd602_five_rising_steps():
    f = only({"loss": [0.5, 0.4, 0.3, 0.31, 0.33, 0.36, 0.4, 0.45]}, "SD602")
    assert f.evidence["rising_steps"] == 5


def test_sd602_relates_divergence_to_a_learning_rate_rise():
    loss = [0.6, 0.5, 0.45, 0.4, 0.6, 0.9, 1.3, 1.8]
    lr = [1e-4, 1e-4, 1e-4, 1e-4, 1e-2, 1e-2, 1e-2, 1e-2]
    f = only({"loss": loss, "lr": lr}, "SD602")
    assert "rose from 0.0001 to 0.01" in f.why
    assert "from 0.01 to 0.001" in f.fix


def test_sd602_judges_a_negative_dice_loss_as_one_minus_dice():
    dice = np.array([0.5, 0.7, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1])
    found = codes({"loss": -dice, "dice_coef": dice})
    assert "SD602" in found
    assert "SD609" not in found and "SD601" not in found


def test_sd602_quiet_on_falling_and_on_improving_negative_dice_loss():
    assert "SD602" not in codes({"loss": [1.0, 0.8, 0.7, 0.65, 0.6, 0.58, 0.57]})
    dice = np.linspace(0.1, 0.9, 10)
    assert codes({"loss": -dice, "dice_coef": dice}) & {"SD601", "SD602", "SD609"} == set()


def test_sd602_tiny_rising_drift_is_not_divergence():
    assert "SD602" not in codes({"loss": [0.3, 0.3001, 0.3002, 0.3003, 0.3004, 0.3005, 0.3006]})


# --- SD603 -----------------------------------------------------------------------------------------


def test_sd603_zigzag_loss():
    loss = 0.5 + 0.3 * (-1.0) ** np.arange(20)
    f = only({"loss": loss}, "SD603")
    assert f.evidence["direction_changes"] == 18 and f.evidence["comparisons"] == 18
    assert "changed direction in 18 of 18 steps" in f.title
    assert "ReduceLROnPlateau" in f.snippet and "factor=0.2" in f.snippet


def test_sd603_quiet_on_small_noise_around_a_plateau_and_on_noisy_descent():
    assert "SD603" not in codes({"loss": 0.3 + 0.001 * (-1.0) ** np.arange(20)})
    k = np.arange(20)
    assert "SD603" not in codes({"loss": 1 / (k + 1) + 0.001 * (-1.0) ** k})


def test_sd603_oscillation_before_an_lr_drop():
    k = np.arange(10)
    before = 0.6 + 0.25 * (-1.0) ** k
    after = np.linspace(0.5, 0.3, 10)
    lr = [1e-2] * 10 + [1e-3] * 10
    f = only({"loss": np.concatenate([before, after]), "lr": lr}, "SD603")
    assert f.evidence["epochs"] == "epochs 1-10"
    assert "calmed down after the learning rate dropped from 0.01 to 0.001" in f.why


def test_sd603_val_only_oscillation_with_smooth_train_blames_the_validation_set():
    k = np.arange(15)
    f = only({"loss": np.linspace(1.0, 0.3, 15), "val_loss": 0.5 + 0.3 * (-1.0) ** k}, "SD603")
    assert "validation set" in f.why and "validation set" in f.fix


# --- SD604 -----------------------------------------------------------------------------------------


def test_sd604_flat_from_the_start():
    f = only({"loss": [0.693, 0.692, 0.6925, 0.691, 0.6915, 0.690]}, "SD604")
    assert "flat from the start" in f.title
    assert "LearningRateScheduler" in f.snippet


def test_sd604_names_the_constant_predictor_when_the_background_share_is_known():
    f = only({"loss": [0.693, 0.692, 0.6925, 0.691, 0.6915, 0.690]}, "SD604", background_share=0.5)
    assert "constant prediction" in f.title
    assert f.evidence["constant_predictor_bce"] == pytest.approx(0.6931, abs=1e-3)


def test_sd604_quiet_when_learning_or_too_short():
    assert "SD604" not in codes(HEALTHY)
    assert "SD604" not in codes({"loss": [0.5, 0.499, 0.498, 0.497]})
    # a loss that converged after a real descent is not a plateau
    assert "SD604" not in codes({"loss": [1.0, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]})


# --- SD605 / SD606 ---------------------------------------------------------------------------------


def test_sd605_dice_zero_throughout():
    f = only({"loss": [0.2, 0.199, 0.198, 0.2, 0.195], "dice_coefficient": [0.0] * 5}, "SD605")
    assert f.severity == Severity.ERROR
    assert "has been 0.00 for all 5 epochs" in f.title and "blank predictions" in f.title
    assert "check-data" in f.fix and "keras.losses.Dice" in f.snippet


def test_sd605_collapse_after_rising():
    f = only({"loss": np.linspace(1, 0.5, 7), "val_f1-score": [0.1, 0.3, 0.5, 0.6, 0.2, 0.005, 0.001]}, "SD605")
    assert "fell from 0.60" in f.title
    assert f.evidence["epochs_near_zero"] == 2


def test_one_row_dice_4e_11_at_998_accuracy_is_a_collapse_and_a_trap():
    result = diagnose({"loss": [0.01], "accuracy": [0.998], "dice_coef": [4e-11]})
    by_code = {f.code: f for f in result.findings}
    assert by_code["SD605"].severity == Severity.ERROR
    assert "SD606" in by_code and "0.998" in by_code["SD606"].title


def test_sd605_short_log_with_small_but_not_null_dice_is_only_a_warning():
    f = only({"loss": [0.6], "dice_coef": [0.005]}, "SD605")
    assert f.severity == Severity.WARNING


def test_sd605_quiet_on_learning_metric_and_ignores_out_of_range_values():
    assert "SD605" not in codes(HEALTHY)
    assert "SD605" not in codes({"loss": [1.0, 0.5], "iou": [1.5, 2.5]})


def test_sd605_uses_data_context_for_the_loss_prescription():
    f = only({"loss": [0.3] * 5, "dice_coef": [0.0] * 5}, "SD605", background_share=0.97)
    assert "alpha=0.97" in f.snippet and "97.0%" in f.snippet


def test_sd606_frozen_accuracy_with_near_zero_dice():
    f = only({"loss": [0.6, 0.55, 0.5, 0.48, 0.46], "accuracy": [0.7814] * 5, "dice_coef": [0.02, 0.01, 0.02, 0.01, 0.02]}, "SD606")
    assert "frozen at 0.7814" in f.title


def test_sd606_accuracy_at_the_background_share_without_a_dice_column():
    f = only({"loss": [0.6, 0.55, 0.5], "accuracy": [0.781, 0.7814, 0.7812]}, "SD606", background_share=0.78)
    assert "background share" in f.title
    assert "SD606" not in codes({"loss": [0.6, 0.55, 0.5], "accuracy": [0.781, 0.7814, 0.7812]})


def test_sd606_quiet_when_dice_is_good():
    assert "SD606" not in codes(HEALTHY)


# --- SD607 -----------------------------------------------------------------------------------------


def test_sd607_val_loss_rising_while_train_falls():
    train = np.linspace(1.0, 0.1, 15)
    val = np.concatenate([np.linspace(1.0, 0.4, 6), np.linspace(0.42, 0.7, 9)])
    f = only({"loss": train, "val_loss": val, "val_dice_coef": np.linspace(0.3, 0.6, 15)}, "SD607")
    assert f.evidence["best_epoch"] == 6
    assert "restore_best_weights=True" in f.snippet and 'monitor="val_dice_coef"' in f.snippet


def test_sd607_train_val_metric_gap():
    f = only({"loss": np.linspace(1, 0.2, 8), "dice_coef": np.linspace(0.5, 0.92, 8),
              "val_loss": np.linspace(1, 0.5, 8), "val_dice_coef": np.linspace(0.4, 0.6, 8)}, "SD607")
    assert f.evidence["gap"] >= 0.15


def test_sd607_quiet_on_healthy_and_on_a_val_loss_that_only_wobbles():
    assert "SD607" not in codes(HEALTHY)
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.44, 0.46, 0.43, 0.45]
    assert "SD607" not in codes({"loss": np.linspace(1, 0.3, 10), "val_loss": val})


# --- SD608 -----------------------------------------------------------------------------------------


def test_sd608_still_improving_at_the_end_with_planned_epochs():
    f = only({"loss": [1.0, 0.7, 0.5, 0.4], "val_loss": [1.1, 0.8, 0.6, 0.45]}, "SD608", params={"epochs": 100})
    assert f.severity == Severity.INFO
    assert "4 of 100 planned epochs" in f.title


def test_sd608_quiet_when_converged():
    assert "SD608" not in codes(HEALTHY)


# --- SD609 -----------------------------------------------------------------------------------------


def test_sd609_iou_above_one_and_loss_below_minus_one():
    f = only({"loss": [23.4, -10.5, -41.9, -75.3], "iou_score": [0.83, 1.16, 1.62, 2.22]}, "SD609")
    assert "IoU reaches 2.22" in f.title and "-75.3" in f.title
    assert "mask > 127" in f.snippet


def test_sd609_negative_cross_entropy_by_name():
    assert "SD609" in codes({"bce_loss": [0.3, -0.2, -0.4]})
    assert "SD609" not in codes({"dice_loss": [-0.3, -0.5, -0.7]})


def test_sd609_quiet_on_a_negative_dice_loss():
    dice = np.array([0.3, 0.6, 0.9])
    assert "SD609" not in codes({"loss": -dice, "dice_coef": dice})
    assert "SD609" not in codes({"loss": [-0.2, -0.5, -0.8]})  # -Dice shape, no Dice column logged


# --- SD610 -----------------------------------------------------------------------------------------


def test_sd610_metric_frozen_while_loss_moves():
    f = only({"loss": np.linspace(1.0, 0.5, 8), "binary_accuracy": [0.7814] * 8}, "SD610")
    assert f.evidence["frozen_epochs"] == 8
    assert "stayed at 0.7814 for 8 epochs" in f.title


def test_sd610_quiet_when_the_loss_is_also_still_or_the_metric_is_a_zero_dice():
    assert "SD610" not in codes({"loss": [0.5] * 8, "accuracy": [0.9] * 8})
    assert "SD610" not in codes({"loss": np.linspace(1.0, 0.5, 8), "dice_coef": [0.0] * 8})


# --- selection and figures -------------------------------------------------------------------------


def test_select_and_ignore():
    cols = {"loss": [float("nan")] * 3, "dice_coef": [0.0] * 3}
    assert {f.code for f in diagnose(cols, select=["SD605"]).findings} == {"SD605"}
    assert "SD601" not in {f.code for f in diagnose(cols, ignore=["loss-nan"]).findings}
    assert [s.code for s in diagnose(cols, select=["SD605"]).checks] == ["SD605"]


def test_findings_carry_a_drawable_curve_figure_with_lr_and_episode():
    from segdoctor.report.figures import render_png

    k = np.arange(20)
    f = only({"loss": 0.5 + 0.3 * (-1.0) ** k, "lr": [1e-2] * 20}, "SD603")
    fig = f.figures[0]
    assert fig.kind == "lines"
    assert fig.data["spans"][0]["label"] == "oscillation"
    assert any(s.get("axis") == "right" and s["label"] == "learning rate" for s in fig.data["series"])
    png = render_png(fig)
    assert png is not None and png.startswith(b"\x89PNG")


def test_history_section_lists_recognised_columns():
    section = diagnose({"loss": [0.5, 0.4], "val_mean_io_u_1": [0.2, 0.3], "lr": [1e-3, 1e-3]}).sections[0]
    rows = {r[0]: r for r in section.tables[0].rows}
    assert rows["val_mean_io_u_1"][1:3] == ("IoU", "val")
    assert rows["lr"][1] == "learning rate"
    assert rows["loss"][1].startswith("loss:")


def test_sd603_wild_start_of_a_long_run_is_found_by_windows():
    k = np.arange(25)
    wild = 0.8 + 0.4 * (-1.0) ** k
    calm = np.linspace(0.7, 0.2, 100)
    f = only({"loss": np.concatenate([wild, calm])}, "SD603")
    assert f.evidence["epochs"].startswith("epochs 1-")
    last = int(f.evidence["epochs"].split("-")[-1])
    assert 25 <= last <= 45


def test_sd603_quiet_on_converged_val_loss_with_small_noise():
    rng = np.random.default_rng(3)
    val = 0.2 * (1 + 0.07 * rng.standard_normal(60))
    assert "SD603" not in codes({"loss": np.linspace(0.5, 0.18, 60), "val_loss": val})


def test_sd604_stalled_after_the_schedule_took_the_lr_to_its_floor():
    loss = list(np.linspace(1.0, 0.3, 10)) + [0.2999, 0.2998, 0.2999, 0.2997, 0.2998, 0.2998]
    lr = [1e-3] * 10 + [1e-7] * 6
    f = only({"loss": loss, "lr": lr}, "SD604")
    assert f.severity == Severity.INFO
    assert "since the learning rate dropped from 0.001 to 1e-07 at epoch 11" in f.title
    # the same flat tail at a useful LR is ordinary convergence
    assert "SD604" not in codes({"loss": loss, "lr": [1e-3] * 10 + [1e-4] * 6})


def test_loss_matched_to_the_iou_column_when_it_is_minus_iou():
    iou = np.linspace(0.2, 0.7, 6)
    result = diagnose({"loss": -iou, "dice_coef": np.linspace(0.3, 0.8, 6), "iou": iou})
    row = {r[0]: r for r in result.sections[0].tables[0].rows}["loss"]
    assert "-iou" in row[1]


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.none())
_names = st.sampled_from(["loss", "val_loss", "dice_coef", "val_dice_coef", "accuracy", "val_accuracy", "iou",
                          "lr", "precision", "bce_loss"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.dictionaries(_names, st.lists(_cell, min_size=n, max_size=n), min_size=1, max_size=6)))
def test_no_check_crashes_on_any_log(columns):
    if all(v is None for col in columns.values() for v in col):
        return  # the reader refuses a log without a single value
    result = diagnose(columns)
    assert [s for s in result.checks if s.status == "crashed"] == []
    for f in result.findings:
        assert f.title and f.fix and f.why


def test_sd608_quiet_when_a_long_converged_log_ends_on_three_lucky_epochs():
    rng = np.random.default_rng(4)
    val = 0.2 + 0.005 * rng.standard_normal(60)
    val[-4:] = [0.2, 0.19, 0.18, 0.17]  # falling, and the best epoch is the last
    assert val[:-1].min() > val[-1]
    assert "SD608" not in codes({"loss": np.linspace(0.5, 0.15, 60), "val_loss": val})
    # the same ending on a short log is a real "still improving"
    assert "SD608" in codes({"loss": np.linspace(0.5, 0.15, 6), "val_loss": [0.3, 0.25, 0.2, 0.19, 0.18, 0.17]})


def test_sd602_long_noisy_converged_log_is_not_divergence():
    rng = np.random.default_rng(0)
    e = np.arange(3000)
    loss = 0.5 * np.exp(-e / 500) + 0.1 + 0.01 * rng.standard_normal(e.size)
    steps, _, _ = curves.longest_rising_run(loss)
    assert steps >= 5  # noise alone makes 5-step runs in a log this long
    assert "SD602" not in codes({"loss": loss})


def test_diagnose_history_accepts_a_path(tmp_path):
    import json

    p = tmp_path / "h.json"
    p.write_text(json.dumps({"loss": [0.2] * 5, "dice_coef": [0.0] * 5}))
    findings, checks, sections = diagnose_history(p, ignore=["SD604"])
    assert [f.code for f in findings] == ["SD605"]
    assert len(checks) == 9 and sections[0].title == "Training history"


def test_sd601_only_val_loss_nan_points_at_the_validation_data():
    f = only({"loss": [0.6, 0.5, 0.4], "val_loss": [float("nan")] * 3}, "SD601")
    assert "validation data" in f.why and "check-data" in f.fix


def test_sd605_collapse_to_a_few_percent_after_a_good_peak():
    f = only({"loss": np.linspace(1, 0.5, 8), "iou": [0.2, 0.5, 0.7, 0.72, 0.4, 0.1, 0.03, 0.02]}, "SD605")
    assert "fell from 0.72" in f.title and f.severity == Severity.ERROR
    # a dip to 0.3 is not a collapse
    assert "SD605" not in codes({"loss": np.linspace(1, 0.5, 8), "iou": [0.2, 0.5, 0.7, 0.72, 0.4, 0.3, 0.3, 0.31]})


# --- precision: frozen by exact repetition; a flat small Dice is a collapse; blank vs foreground everywhere ---


def test_sd610_exact_repetition_in_a_short_log_is_frozen():
    # three epochs, the same accuracy to the last digit while the loss falls 40%: frozen, however short the log
    f = only({"loss": [0.5, 0.4, 0.3], "accuracy": [0.9587, 0.9587, 0.9587]}, "SD610")
    assert f.evidence["frozen_epochs"] == 3 and f.evidence["kind"] == "accuracy"
    # a 2-epoch log at full precision: a live metric never repeats to 8 digits
    assert "SD610" in codes({"loss": [0.5, 0.3], "val_accuracy": [0.98812866, 0.98812866]})


def test_sd610_is_not_fooled_by_rounding_saturation_or_movement():
    # two equal values rounded to 4 digits can repeat by chance
    assert "SD610" not in codes({"loss": [0.5, 0.3], "accuracy": [0.9881, 0.9881]})
    # a change in the last digit is movement
    assert "SD610" not in codes({"loss": [0.5, 0.4, 0.3], "accuracy": [0.95871, 0.95872, 0.95871]})
    # perfect on this split while the loss keeps falling: growing confidence, not a frozen metric
    assert "SD610" not in codes({"loss": [0.3, 0.1, 0.05, 0.03], "val_iou": [1.0, 1.0, 1.0, 1.0]})
    # the loss does not move either: nothing to contrast
    assert "SD610" not in codes({"loss": [0.3, 0.3, 0.3], "accuracy": [0.9, 0.9, 0.9]})


@pytest.mark.parametrize("loss", [
    [0.41, 0.4, 0.395, 0.39, 0.388],             # plain (cross-entropy) loss
    [-0.023, -0.0231, -0.0229, -0.023, -0.0232],  # -Dice: negative by design
    [0.977, 0.9769, 0.9771, 0.977, 0.9768],       # 1 - Dice
])
def test_sd605_flat_at_a_small_nonzero_dice_is_a_collapse_whatever_the_loss_sign(loss):
    f = only({"loss": loss, "dice_coef": [0.023, 0.0231, 0.0229, 0.023, 0.0232]}, "SD605")
    assert f.severity == Severity.ERROR and f.evidence["kind"] == "flat"
    assert "stayed at 0.023 for all 5 epochs" in f.title
    assert f.evidence["fits"] == "unknown" and "--data" in f.why


def test_sd605_with_the_foreground_share_tells_foreground_everywhere_from_blank():
    f_share = 0.012  # 1.2% foreground: foreground everywhere scores Dice 2f/(1+f) = 0.0237, IoU f = 0.012
    everywhere = only({"loss": [0.41, 0.4, 0.395, 0.39], "dice_coef": [0.0232, 0.0235, 0.0231, 0.0234]}, "SD605",
                      background_share=1 - f_share)
    assert everywhere.evidence["fits"] == "everything-foreground"
    assert "the score of predicting foreground everywhere" in everywhere.title
    assert "SD508" in everywhere.related and "0/255" in everywhere.fix
    iou = only({"loss": [0.41, 0.4, 0.395, 0.39], "iou": [0.0118, 0.012, 0.0119, 0.0121]}, "SD605", background_share=1 - f_share)
    assert iou.evidence["fits"] == "everything-foreground"
    blank = only({"loss": [0.41, 0.4, 0.395, 0.39], "dice_coef": [0.0, 0.0, 0.0, 0.0]}, "SD605", background_share=1 - f_share)
    assert blank.evidence["fits"] == "blank" and "blank predictions" in blank.title and "0.0237" in blank.why
    neither = only({"loss": [0.41, 0.4, 0.395, 0.39], "dice_coef": [0.07, 0.071, 0.069, 0.07]}, "SD605", background_share=1 - f_share)
    assert neither.evidence["fits"] == "neither" and "not learning the objects" in neither.title


def test_sd605_quiet_on_a_small_dice_that_is_rising():
    assert "SD605" not in codes({"loss": [0.6, 0.5, 0.42, 0.36, 0.3], "dice_coef": [0.02, 0.035, 0.05, 0.07, 0.09]})


def test_sd601_and_sd604_state_what_the_diagnosis_reads():
    assert only({"loss": [float("nan")] * 3}, "SD601").evidence["from_first_epoch"] is True
    assert only({"loss": [0.5, 0.4, float("nan")]}, "SD601").evidence["from_first_epoch"] is False
    plateau = only({"loss": [0.0663, 0.0661, 0.066, 0.0662, 0.0661]}, "SD604", background_share=0.988)
    assert plateau.evidence["at_constant_predictor"] is True
