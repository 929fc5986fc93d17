"""check-pipeline on real data: the ISBI 2012 membranes (../shared/realdata) through a tf.data pipeline, done right
and with one planted loader bug at a time."""

from __future__ import annotations

import pytest

from conftest import realdata_path
from pipeline_helpers import codes, finding
from segdoctor.commands.pipeline import check_pipeline

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SIZE = (128, 128)


def membranes(tf, root, bug=None):
    def number(p):
        return int(p.stem)

    images = sorted((root / "image").glob("*.png"), key=number)
    masks = [root / "label" / p.name for p in images]
    if bug == "missorted":
        masks = sorted(masks, key=lambda p: p.name)  # '10.png' before '2.png': every later image gets another mask
    tf.random.set_seed(3)

    def load(i, m):
        image = tf.image.resize(tf.cast(tf.io.decode_png(tf.io.read_file(i), channels=1), tf.float32) / 255.0, SIZE)
        mask = tf.cast(tf.io.decode_png(tf.io.read_file(m), channels=1) > 127, tf.float32)  # {0, 255} -> {0, 1}
        if bug == "bilinear":
            mask = tf.image.resize(mask, SIZE)
        else:
            mask = tf.image.resize(mask, SIZE, method="nearest")
        if bug == "flips":
            return tf.image.random_flip_left_right(image), tf.image.random_flip_left_right(mask)
        both = tf.image.random_flip_left_right(tf.concat([image, mask], axis=-1))
        return both[..., :1], both[..., 1:]

    files = tf.data.Dataset.from_tensor_slices(([str(p) for p in images], [str(p) for p in masks]))
    return files.shuffle(30, seed=0).repeat().map(load).batch(8)


@pytest.fixture(scope="module")
def setup():
    tf = pytest.importorskip("tensorflow")
    return tf, realdata_path("membrane_isbi2012", "train")


def test_membranes_done_right_are_clean_and_match_the_files(setup):
    tf, root = setup
    report = check_pipeline(membranes(tf, root), data=root)
    assert not codes(report) & {"SD101", "SD106", "SD301", "SD302", "SD303", "SD304", "SD305"}, \
        [f.title for f in report.findings]
    study = report.context.train.pair_study
    assert study.signal >= 6 and not study.affected()
    assert report.context.files_signal >= 6
    rows = {r[0]: r for s in report.sections for t in s.tables for r in t.rows if len(r) == 4}
    assert rows["mask values"][1] == "{0, 255}" and "binarised" in rows["mask values"][3]
    assert rows["image size"][3] == "resized or cropped"


def test_membranes_with_separate_random_flips(setup):
    tf, root = setup
    f = finding(check_pipeline(membranes(tf, root, "flips")), "SD301")
    share = f.evidence["samples[horizontal flip]"] / f.evidence["samples_studied"]
    assert 0.25 <= share <= 0.75, f.evidence


def test_membranes_with_bilinear_mask_resize(setup):
    tf, root = setup
    report = check_pipeline(membranes(tf, root, "bilinear"), data=root)
    f = finding(report, "SD106")
    assert "not in the files" in f.title
    assert "SD301" not in codes(report)


def test_membranes_with_mis_sorted_masks(setup):
    tf, root = setup
    report = check_pipeline(membranes(tf, root, "missorted"), data=root)
    f = finding(report, "SD301")
    assert f.evidence["samples_affected"] >= 0.6 * f.evidence["samples_studied"]


def test_kvasir_jpeg_masks_decoded_as_they_are():
    tf = pytest.importorskip("tensorflow")
    root = realdata_path("kvasir_seg_jpeg", "Kvasir-SEG")
    images = sorted(str(p) for p in (root / "images").glob("*.jpg"))
    masks = [str(root / "masks" / p.split("/")[-1]) for p in images]

    def load(i, m, binarise):
        x = tf.image.resize(tf.cast(tf.io.decode_jpeg(tf.io.read_file(i), channels=3), tf.float32) / 255.0, SIZE)
        y = tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(m), channels=1), SIZE, method="nearest")
        return x, (tf.cast(y > 127, tf.uint8) if binarise else y)

    files = tf.data.Dataset.from_tensor_slices((images, masks)).repeat()
    raw = check_pipeline(files.map(lambda i, m: load(i, m, False)).batch(8))
    assert {"SD101", "SD105"} <= codes(raw)
    fixed = check_pipeline(files.map(lambda i, m: load(i, m, True)).batch(8))
    assert not codes(fixed) & {"SD101", "SD105", "SD106", "SD301"}, [f.title for f in fixed.findings]
