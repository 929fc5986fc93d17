"""The per-pair extractors of balance, image values, hashes and alignment on awkward inputs: never an error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segdoctor.stats.pair import analyse_pair


def _save(path, a):
    if path.suffix == ".npy":
        np.save(path, a)
    else:
        Image.fromarray(a).save(path)
    return path


CASES = {
    "tiny 1x1": (np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint8), ".png"),
    "one row": (np.arange(50, dtype=np.uint8)[None, :], (np.arange(50) > 20).astype(np.uint8)[None, :], ".png"),
    "all NaN float": (np.full((20, 30), np.nan, np.float32), np.ones((20, 30), np.uint8), ".npy"),
    "Inf and NaN": (np.where(np.eye(40, dtype=bool), np.inf, 0.5).astype(np.float32), np.eye(40, dtype=np.uint8), ".npy"),
    "two channels": (np.random.default_rng(0).integers(0, 255, (40, 40, 2)).astype(np.uint8),
                     np.eye(40, dtype=np.uint8), ".npy"),
    "five channels": (np.random.default_rng(1).random((40, 40, 5)).astype(np.float32),
                      np.random.default_rng(2).integers(0, 3, (40, 40, 5)).astype(np.uint8), ".npy"),
    "int32 ids": (np.random.default_rng(3).integers(0, 255, (64, 64, 3)).astype(np.uint8),
                  np.random.default_rng(4).integers(0, 70000, (64, 64)).astype(np.int32), ".npy"),
    "negative floats": (np.random.default_rng(5).normal(0, 100, (33, 47)).astype(np.float64),
                        (np.random.default_rng(6).random((33, 47)) > 0.5).astype(np.uint8), ".npy"),
    "shape mismatch": (np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64), np.uint8), ".png"),
    "many classes": (np.random.default_rng(7).integers(0, 255, (256, 256), dtype=np.uint8),
                     np.random.default_rng(8).integers(0, 200, (64, 64)).repeat(4, 0).repeat(4, 1).astype(np.uint8),
                     ".png"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_extractors_never_fail(tmp_path, name):
    image, mask, ext = CASES[name]
    rec = analyse_pair(str(_save(tmp_path / f"i{ext}", image)), str(_save(tmp_path / f"m{ext}", mask)))
    assert "extractor_errors" not in rec, rec.get("extractor_errors")
    if "image_info" in rec:
        assert {"image_stats", "image_hash", "image_digest"} <= set(rec)
        assert np.isfinite(rec["image_stats"]["channel_mean"]).all()
    if "align" in rec:
        assert rec["align"]["edges"].shape == rec["align"]["boundary"].shape == (64, 64)


def test_all_nan_image_is_constant_and_flagged(tmp_path):
    rec = analyse_pair(str(_save(tmp_path / "i.npy", np.full((8, 8), np.nan, np.float32))),
                       str(_save(tmp_path / "m.png", np.ones((8, 8), np.uint8))))
    assert rec["image_stats"]["nonfinite"] == 64 and rec["image_stats"]["constant"]
