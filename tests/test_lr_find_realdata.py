"""lr-find on the real ISBI 2012 membrane data (../shared/realdata; skipped when absent).

The true pairs give a measured range; the same images with their masks shuffled between them (symlinks in
tmp_path, nothing copied) give "the loss never falls", whatever the learning rate.
"""

from __future__ import annotations

import numpy as np
import pytest

from segdoctor.findings import Severity
from tests.conftest import realdata_path
from tests.lr_helpers import keras, small_unet

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _sweep(data):
    from segdoctor import lr_find

    k = keras()
    model = small_unet(size=64)  # 512x512 membranes resized to 64x64 for the sweep
    model.compile(optimizer=k.optimizers.Adam(1e-3), loss="binary_crossentropy")
    [f] = [f for f in lr_find(model, data=data, steps=60).findings if f.code == "SD451"]
    return f


def test_membrane_pairs_give_a_range_and_shuffled_pairs_never_fall(tmp_path):
    train = realdata_path("membrane_isbi2012", "train")
    f = _sweep(train)
    assert f.evidence["state"] == "falls" and f.severity == Severity.INFO  # Adam 1e-3 is inside the measured range
    assert 1e-4 <= f.evidence["suggested_lr"] <= 0.1
    assert f.evidence["min_loss"] < f.evidence["constant_prediction_loss"]  # it learned more than the 78% white share

    names = sorted(p.name for p in (train / "image").glob("*.png"))
    shuffled = tmp_path / "shuffled"
    (shuffled / "image").mkdir(parents=True)
    (shuffled / "label").mkdir()
    for name, other in zip(names, np.roll(names, 7)):
        (shuffled / "image" / name).symlink_to(train / "image" / name)
        (shuffled / "label" / name).symlink_to(train / "label" / other)
    g = _sweep(shuffled)
    assert g.evidence["state"] == "never-falls" and g.severity == Severity.WARNING and "never falls" in g.title
    assert "suggested_lr" not in g.evidence
