"""lr-find (SD451): the range-test maths on synthetic curves, then real sweeps of tiny U-Nets built in tmp_path.

The Keras tests share a few sweeps (module fixtures): one U-Net architecture saved at a sane, a too-low and a
too-high Adam learning rate (the sweep only depends on the weights, the data and the optimizer type), a sweep on
random masks, and short sweeps through the command line and check-model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from segdoctor.findings import Severity
from segdoctor.stats.lr_range import StopRule, analyse_range, round_lr, sweep_learning_rates
from tests.lr_helpers import file_state, keras, noisy_discs, small_unet

STEPS = 60  # per sweep in these tests (the default is 100): 7.5 steps per decade from 1e-7 to 10


# ----------------------------------------------------------------------------- the maths, no Keras


def _synthetic(fall_centre: float = -2.5, blow_from: float = 0.3, seed: int = 0):
    """A loss that is flat, falls around 10**fall_centre, floors, then blows up from ``blow_from``."""
    lrs = sweep_learning_rates(1e-7, 10.0, 100)
    x = np.log10(lrs)
    loss = 0.7 - 0.6 / (1 + np.exp(-(x - fall_centre) * 2.5))
    loss = loss + np.where(lrs > blow_from, 5 * np.log10(np.maximum(lrs / blow_from, 1)) ** 2, 0)
    loss = loss + np.random.default_rng(seed).normal(0, 0.005, lrs.size)
    return lrs, loss


def _content(lrs, loss, *, learns: bool):
    """Probes every 5 steps: (LR, true-pair loss, shuffled-pair loss)."""
    return [(lrs[i], loss[i], 0.7 if learns else loss[i]) for i in range(4, lrs.size, 5)]


def test_sweep_is_geometric_from_min_to_max():
    lrs = sweep_learning_rates(1e-7, 10.0, 100)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = lrs[1:] / lrs[:-1]
    assert np.allclose(ratios, ratios[0])


def test_stop_rule_stops_at_four_times_the_best_and_on_nan():
    rule = StopRule()
    for v in [1.0] * 10 + [0.5] * 20:
        assert rule.update(v) is None
    reasons = [rule.update(v) for v in [3.0] * 40]
    stop_at = next(i for i, r in enumerate(reasons) if r)
    assert "4x" in reasons[stop_at] and rule.smoothed[10 + 20 + stop_at] > 4 * rule.best
    assert "NaN" in StopRule().update(float("nan"))
    # a loss that reaches 0 or below (-Dice) is judged by its distance from the best against its start
    neg = StopRule()
    assert all(neg.update(v) is None for v in [-0.1] * 5 + [-0.8] * 20)
    assert any(neg.update(v) for v in [2.5] * 30)


def test_a_falling_curve_gives_steepest_blowup_and_a_range_around_the_descent():
    lrs, loss = _synthetic()
    r = analyse_range(lrs, loss, content_curve=_content(lrs, loss, learns=True), constant_loss=0.65)
    assert r.state == "falls"
    assert 10**-3 <= r.steepest_lr <= 10**-2  # the sigmoid's centre, 10**-2.5
    assert 0.3 <= r.blowup_lr <= 1.5
    assert r.good_low < 1e-3 < r.good_high < r.blowup_lr
    assert r.good_low <= r.suggested_lr <= r.good_high and r.peak_lr <= r.good_high
    assert [r.position(v) for v in (1e-6, 1e-3, 0.1, 2.0)] == ["below", "inside", "above", "beyond-blowup"]


def test_loss_that_only_reaches_the_class_prior_never_falls():
    # the loss falls from 0.69 to the loss of predicting the foreground share, and true and shuffled masks score alike
    lrs = sweep_learning_rates(1e-7, 10.0, 100)
    x = np.log10(lrs)
    loss = 0.612 + 0.08 / (1 + np.exp((x + 2.5) * 3))
    r = analyse_range(lrs, loss, content_curve=_content(lrs, loss, learns=False), constant_loss=0.612)
    assert r.state == "never-falls" and r.fall > 0.1
    assert r.suggested_lr is None and r.good_low is None and r.position(1e-3) is None
    # without probes, the constant prediction decides alike
    assert analyse_range(lrs, loss, constant_loss=0.612).state == "never-falls"


def test_a_collapse_to_the_prior_counts_as_blowing_up():
    lrs, loss = _synthetic(blow_from=100.0)  # the loss never rises ...
    probes = [(lr, t, 0.7 if lr < 0.05 else t) for lr, t, _ in _content(lrs, loss, learns=True)]  # ... but the model dies
    r = analyse_range(lrs, loss, content_curve=probes)
    assert r.state == "falls" and r.collapse_lr is not None and 0.05 <= r.collapse_lr <= 0.2
    assert r.blowup_lr == r.collapse_lr and r.good_high <= r.collapse_lr / 3


def test_a_trained_model_is_judged_against_its_blowup():
    lrs = sweep_learning_rates(1e-7, 10.0, 100)
    loss = 0.1 + np.where(lrs > 1e-2, 3 * np.log10(lrs / 1e-2) ** 2, 0)
    r = analyse_range(lrs, loss, content_start=(0.1, 0.6), content_curve=[(lr, 0.1, 0.6) for lr in lrs[::5]])
    assert r.state == "trained" and 5e-3 < r.blowup_lr < 0.1  # the rise starts at 1e-2; smoothing spreads it 0.2 decade
    assert r.suggested_lr == pytest.approx(r.blowup_lr / 10) and r.position(1.0) == "beyond-blowup"


def test_the_plot_renders_from_its_numbers_with_a_log_axis():
    from types import SimpleNamespace

    from segdoctor.checks.lr_range import LRFindResult, lr_range_figure
    from segdoctor.report.figures import render_png

    lrs, loss = _synthetic()
    r = analyse_range(lrs, loss, content_curve=_content(lrs, loss, learns=True), constant_loss=0.65)
    sweep = SimpleNamespace(loss="binary_crossentropy", batch_size=8, optimizer="Adam")
    figure = lr_range_figure(LRFindResult(sweep=sweep, range=r, history_lrs=(1e-2, 1e-3)), current=1e-5)
    assert figure.kind == "lr_range" and figure.data["span"] == [r.good_low, r.good_high]
    labels = [m["label"] for m in figure.data["marks"]]
    assert any(s.startswith("suggested") for s in labels) and any(s.startswith("in use") for s in labels)
    assert any(s.startswith("log") for s in labels)
    assert render_png(figure)[:4] == b"\x89PNG"


def test_round_lr_gives_numbers_people_type():
    assert [round_lr(v) for v in (0.0547, 0.0031, 1.7e-4, 8e-3)] == [0.05, 0.002, 0.0002, 0.01]


# ----------------------------------------------------------------------------- real sweeps (Keras)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return noisy_discs(tmp_path_factory.mktemp("discs"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The same U-Net (same initial weights) saved with Adam at a sane, a too-low and a far too high learning rate."""
    root = tmp_path_factory.mktemp("models")
    k = keras()
    out = {}
    for name, lr in (("sane", 1e-3), ("low", 1e-6), ("high", 5.0)):
        model = small_unet()
        model.compile(optimizer=k.optimizers.Adam(learning_rate=lr), loss="binary_crossentropy")
        out[name] = root / f"{name}.keras"
        model.save(out[name])
    return out


@pytest.fixture(scope="module")
def reports(saved, data):
    from segdoctor import lr_find

    before = {name: file_state(path) for name, path in saved.items()}
    found = {name: lr_find(path, data=data, steps=STEPS) for name, path in saved.items()}
    return found, before


def _sd451(report):
    [f] = [f for f in report.findings if f.code == "SD451"]
    return f


@pytest.mark.slow
def test_sane_learning_rate_gets_info_only(reports, saved):
    found, before = reports
    f = _sd451(found["sane"])
    assert f.severity == Severity.INFO and f.evidence["saved_lr_position"] == "inside"
    assert f.evidence["good_range_low"] <= 1e-3 <= f.evidence["good_range_high"]
    assert file_state(saved["sane"]) == before["sane"]  # the user's file: same bytes, same mtime


@pytest.mark.slow
def test_flat_at_1e6_falling_at_1e3_points_between(reports, saved):
    found, before = reports
    f = _sd451(found["low"])
    assert f.severity == Severity.WARNING and f.evidence["saved_lr_position"] == "below"
    curve = f.figures[0].data
    lrs, smoothed = np.array(curve["lrs"]), np.array(curve["smoothed"])
    at = lambda lr: smoothed[np.argmin(np.abs(np.log10(lrs / lr)))]  # noqa: E731
    start = smoothed[0]
    assert abs(at(1e-6) - start) < 0.02 * start  # flat where the model trains now ...
    assert at(1e-3) < 0.97 * start  # ... falling at 1e-3
    suggestion = f.evidence["suggested_lr"]
    assert suggestion >= 10 * 1e-6  # at least an order of magnitude up from the saved LR ...
    assert at(suggestion) < at(1e-3)  # ... into the fall, below the blow-up
    assert "below the range" in f.title and "keras.optimizers.Adam(learning_rate=" in f.snippet
    assert file_state(saved["low"]) == before["low"]


@pytest.mark.slow
def test_far_too_high_learning_rate_gets_a_suggestion_orders_of_magnitude_lower(reports, saved):
    found, before = reports
    f = _sd451(found["high"])
    assert f.severity == Severity.WARNING and f.evidence["saved_lr_position"] in ("above", "beyond-blowup")
    assert f.evidence["suggested_lr"] <= 5.0 / 10
    # the suggestion is the same measurement for all three files: the sweep depends on weights, data and optimizer type
    assert f.evidence["suggested_lr"] == _sd451(found["low"]).evidence["suggested_lr"]
    assert file_state(saved["high"]) == before["high"]


@pytest.mark.slow
def test_the_fix_snippet_runs_as_keras_3_code(reports):
    k = keras()
    f = _sd451(reports[0]["low"])
    model = k.Sequential([k.Input((4,)), k.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    namespace = {"keras": k, "model": model}
    exec(f.snippet, namespace)  # noqa: S102 - the generated fix, run as a user would paste it
    optimizer, schedule = namespace["optimizer"], namespace["schedule"]
    assert isinstance(optimizer, k.optimizers.Adam) and model.optimizer is optimizer
    peak = float(schedule(namespace["warmup_steps"]))
    assert peak == pytest.approx(float(f.snippet.split("warmup_target=")[1].split(",")[0]), rel=1e-4)
    assert float(schedule(0)) == pytest.approx(peak / 25, rel=0.05)
    assert float(schedule(namespace["total_steps"])) == pytest.approx(0.01 * peak, rel=0.05)
    model.fit(np.zeros((2, 4), np.float32), np.zeros((2, 1), np.float32), epochs=1, verbose=0)  # the compiled model trains


@pytest.mark.slow
def test_random_masks_say_the_loss_never_falls_instead_of_inventing_a_learning_rate(tmp_path, saved):
    from segdoctor import lr_find

    f = _sd451(lr_find(saved["sane"], data=noisy_discs(tmp_path / "random", random_masks=True), steps=STEPS))
    assert f.severity == Severity.WARNING and f.evidence["state"] == "never-falls"
    assert "never falls" in f.title and "suggested_lr" not in f.evidence and f.snippet is None
    assert "SD251" in f.fix and "--steps" in f.fix


@pytest.mark.slow
def test_in_memory_model_weights_and_optimizer_are_untouched(data):
    from segdoctor import lr_find

    k = keras()
    model = small_unet(seed=3)
    model.compile(optimizer=k.optimizers.SGD(learning_rate=0.01, momentum=0.9), loss="binary_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    report = lr_find(model, data=data, steps=20)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(0.01)
    f = _sd451(report)
    assert f.evidence["optimizer"].startswith("SGD") and report.facts["steps_run"] <= 20
    section = next(s for s in report.sections if s.title == "Learning-rate range test")
    assert dict(section.facts)["your model's weights"] == "unchanged (checked)"
    if f.snippet:  # the optimizer type and its momentum carry over
        assert "keras.optimizers.SGD(learning_rate=" in f.snippet and "momentum=0.9" in f.snippet


def _cli(tmp_path, *argv):
    from segdoctor import cli

    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    rc = cli.main([*map(str, argv), "--json", str(out_json), "--report", str(out_html), "-q"])
    return rc, (json.loads(out_json.read_text()) if out_json.exists() else None), out_html


@pytest.mark.slow
def test_model_without_compile_information_asks_for_loss(tmp_path, data, capsys):
    model = small_unet()
    path = tmp_path / "bare.keras"
    model.save(path)
    rc, report, _ = _cli(tmp_path, "lr-find", path, "--data", data)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and report is None
    assert len(err.splitlines()) == 1 and "--loss" in err and str(path) in err and "binary_crossentropy" in err
    rc, report, _ = _cli(tmp_path, "lr-find", path, "--data", data, "--loss", "nonsense")
    assert rc == 2 and "--loss 'nonsense'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_with_loss_writes_the_plot_and_bounds_the_work(tmp_path, data, monkeypatch):
    from segdoctor import cli

    model = small_unet()
    path = tmp_path / "bare.keras"
    model.save(path)
    before = file_state(path)
    seen = []
    monkeypatch.setattr(cli.Progress, "__call__", lambda self, done, total, label="": seen.append((done, total, label)))
    rc, report, html = _cli(tmp_path, "lr-find", path, "--data", data, "--loss", "binary_crossentropy", "--steps", "12")
    assert rc == 0 and report["command"] == "lr-find"
    [f] = [f for f in report["findings"] if f["code"] == "SD451"]
    assert f["evidence"]["steps_run"] <= 12 and f["evidence"]["loss"] == "binary_crossentropy"
    assert "data:image/png;base64," in html.read_text() and "Learning-rate range test" in html.read_text()
    assert file_state(path) == before
    assert any(label == "lr-find" and total == 12 for _, total, label in seen)


@pytest.mark.slow
def test_check_model_lr_find_feeds_the_history_advice(tmp_path, saved, data):
    from segdoctor.commands.history import check_history
    from segdoctor.commands.model import check_model

    log = tmp_path / "log.csv"  # a loss that diverges at the logged learning rate (SD602)
    rows = ["epoch,loss,lr"] + [f"{i},{v},0.05" for i, v in enumerate([0.7, 0.5, 0.45, 0.5, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2])]
    log.write_text("\n".join(rows) + "\n")
    report = check_model(saved["sane"], data=data, history=log, lr_find=True, lr_steps=STEPS,
                         select=["SD451", "SD602", "SD604", "SD603", "SD601"])
    found = {f.code: f for f in report.findings}
    assert "SD451" in found and "SD602" in found
    assert "lr-find measured on this model and data" in found["SD602"].fix
    assert "history_lr_first" in found["SD451"].evidence and found["SD451"].evidence["history_lr_first"] == 0.05
    plain = {f.code: f for f in check_history(log).findings}
    assert "run `segdoctor lr-find" in plain["SD602"].fix and "lr-find measured" not in plain["SD602"].fix
    statuses = {c.code: c.status for c in check_model(saved["sane"]).checks}
    assert statuses["SD451"] == "skipped"


@pytest.mark.slow
def test_lr_find_needs_data_and_sane_options(saved, data):
    from segdoctor.commands.model import check_model
    from segdoctor.errors import UsageError

    with pytest.raises(UsageError, match="--data"):
        check_model(saved["sane"], lr_find=True)
    with pytest.raises(UsageError, match="--min-lr"):
        check_model(saved["sane"], data=data, lr_find=True, min_lr=1.0, max_lr=0.1)
    with pytest.raises(UsageError, match="--steps"):
        check_model(saved["sane"], data=data, lr_find=True, lr_steps=1)


@pytest.mark.slow
def test_trained_sample_model_is_judged_against_its_blowup():
    """The bundled healthy U-Net (Dice ~0.88, saved with Adam 3e-3) already fits the data: no descent to read, the
    range comes from where the loss blows up, and its own learning rate lies inside it."""
    from pathlib import Path

    from segdoctor import lr_find

    samples = Path(__file__).resolve().parent.parent / "sample_data" / "models"
    f = _sd451(lr_find(samples / "healthy_unet.keras", data=samples / "data"))
    assert f.evidence["state"] == "trained" and f.severity == Severity.INFO
    assert f.evidence["good_range_low"] <= 3e-3 <= f.evidence["good_range_high"] < f.evidence["blowup_lr"]
