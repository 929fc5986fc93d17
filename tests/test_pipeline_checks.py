"""Every loader defect of issue 10, in a real pipeline of each kind: it fires on the broken variant and stays quiet on
the clean one (tf.data maps, PyDataset, zipped ImageDataGenerator flows, plain generators, (X, Y) arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_helpers import batches, blob_arrays, codes, finding, write_dataset
from segdoctor.commands.pipeline import check_pipeline
from segdoctor.findings import Severity

#: codes a clean pipeline of blob data must not raise
DEFECTS = {"SD101", "SD102", "SD103", "SD104", "SD105", "SD106", "SD107", "SD108", "SD201", "SD202", "SD301", "SD302", "SD303", "SD304",
           "SD305", "SD306", "SD307", "SD004"}


@pytest.fixture(scope="module")
def blobs():
    return blob_arrays(32, seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory, blobs):
    x, y = blobs
    return write_dataset(tmp_path_factory.mktemp("blobs01"), x, y)


@pytest.fixture(scope="module")
def files255(tmp_path_factory, blobs):
    x, y = blobs
    return write_dataset(tmp_path_factory.mktemp("blobs255"), x, y, mask_scale=255)


def clean(report):
    found = codes(report) & DEFECTS
    assert not found, [f.title for f in report.findings]
    assert not [c for c in report.checks if c.status == "crashed"], [c.message for c in report.checks]


def tfmod():
    return pytest.importorskip("tensorflow")


def file_dataset(tf, root, map_fn, *, batch=8, channels_mask=1):
    images = sorted(str(p) for p in (root / "images").glob("*.png"))
    masks = [str(root / "masks" / p.split("/")[-1]) for p in images]

    def load(i, m):
        image = tf.cast(tf.io.decode_png(tf.io.read_file(i), channels=3), tf.float32) / 255.0
        mask = tf.io.decode_png(tf.io.read_file(m), channels=channels_mask)
        return map_fn(image, mask)

    return tf.data.Dataset.from_tensor_slices((images, masks)).repeat().map(load).batch(batch)


# ---------------------------------------------------------------------------------------------- tf.data


def test_tf_data_bilinear_mask_resize_is_sd106_nearest_is_clean(files):
    tf = tfmod()
    bilinear = file_dataset(tf, files, lambda i, m: (tf.image.resize(i, (48, 48)), tf.image.resize(m, (48, 48))))
    report = check_pipeline(bilinear, batches=4, data=files)
    f = finding(report, "SD106")
    assert "In the train pipeline" in f.title and "boundaries only" in f.title and "not in the files" in f.title
    assert "method=\"nearest\"" in f.snippet
    assert "SD101" not in codes(report)  # soft {0..1} values are not a {0, 255} encoding
    nearest = file_dataset(tf, files, lambda i, m: (tf.image.resize(i, (48, 48)),
                                                    tf.image.resize(m, (48, 48), method="nearest")))
    clean(check_pipeline(nearest, batches=4, data=files))


def test_tf_data_independent_flips_are_sd301_joint_flips_are_clean(files):
    tf = tfmod()
    tf.random.set_seed(1)

    def separate(i, m):
        return tf.image.random_flip_left_right(i), tf.image.random_flip_left_right(m)

    report = check_pipeline(file_dataset(tf, files, separate), batches=6)
    f = finding(report, "SD301")
    assert f.severity is Severity.ERROR
    assert "flipped left-right" in f.title
    share = f.evidence["samples[horizontal flip]"] / f.evidence["samples_studied"]
    assert 0.25 <= share <= 0.75
    assert "stateless_random_flip_left_right" in f.snippet or "tf.concat" in f.snippet

    def joint(i, m):
        seed = tf.random.uniform([2], maxval=2**30, dtype=tf.int32)
        return (tf.image.stateless_random_flip_left_right(i, seed),
                tf.image.stateless_random_flip_left_right(m, seed))

    clean(check_pipeline(file_dataset(tf, files, joint), batches=6))


def test_tf_data_one_hot_of_0_255_masks_is_sd303_binarised_one_hot_is_clean(files255):
    tf = tfmod()
    broken = file_dataset(tf, files255, lambda i, m: (i, tf.one_hot(tf.cast(m[..., 0], tf.int32), 2)))
    report = check_pipeline(broken, batches=4, data=files255)
    f = finding(report, "SD303")
    assert "rows of zeros" in f.title and "depth 2" in f.title and "{0, 255}" in f.title
    assert "tf.one_hot" in f.snippet and "> 127" in f.snippet
    # without the files, the one-hot of 255 is the root cause: the empty-looking masks and starved batches follow from it
    diagnosis = check_pipeline(broken, batches=4).diagnosis
    assert diagnosis.causes[0].finding.code == "SD303"
    assert {"SD108", "SD305"} <= {s.finding.code for s in diagnosis.causes[0].steps}
    assert "SD108" in diagnosis.causes[0].confirm.split("should be gone")[0]  # the fix removes the empty look too
    good = file_dataset(tf, files255, lambda i, m: (i, tf.one_hot(tf.cast(m[..., 0] > 127, tf.int32), 2)))
    report = check_pipeline(good, batches=4)
    clean(report)
    assert report.facts["train_target_encoding"] == "one-hot (depth 2)"


def test_tf_data_extra_one_hot_axis_is_sd303(files):
    tf = tfmod()
    ds = file_dataset(tf, files, lambda i, m: (i, tf.one_hot(tf.cast(m, tf.int32), 2)))  # (H, W, 1, 2)
    f = finding(check_pipeline(ds, batches=2), "SD303")
    assert "extra axis" in f.title and "squeeze" in f.snippet


def test_tf_data_masks_divided_by_255_are_sd302(files):
    tf = tfmod()
    ds = file_dataset(tf, files, lambda i, m: (i, tf.cast(m, tf.float32) / 255.0))
    report = check_pipeline(ds, batches=4, data=files)
    f = finding(report, "SD302")
    assert "divided by 255" in f.title and "{0, 0.003922}" in f.title
    assert f.evidence["file_values"] == "{0, 1}"
    assert "rescale" in f.snippet.lower() or "/ 255.0  # images only" in f.snippet
    # the ids recovered (x 255) are {0, 1}: no SD101, no SD106 on top
    assert not codes(report) & {"SD101", "SD106", "SD108"}
    rows = {r[0]: r for s in report.sections for t in s.tables for r in t.rows if len(r) == 4}
    assert rows["mask values"][1] == "{0, 1}" and "divided by 255" in rows["mask values"][3]


def test_tf_data_masks_left_at_0_255_are_sd101_binarised_is_clean(files255):
    tf = tfmod()
    report = check_pipeline(file_dataset(tf, files255, lambda i, m: (i, m)), batches=4, data=files255)
    f = finding(report, "SD101")
    assert f.title.startswith("In the train pipeline") and "(the files have it too)" in f.title
    assert "tf.cast(mask > 127" in f.snippet
    clean(check_pipeline(file_dataset(tf, files255, lambda i, m: (i, tf.cast(m > 127, tf.uint8))), batches=4))


def test_tf_data_masks_decoded_with_3_channels_are_sd104(files):
    tf = tfmod()
    report = check_pipeline(file_dataset(tf, files, lambda i, m: (i, m), channels_mask=3), batches=2)
    assert "channels=1" in finding(report, "SD104").snippet


# ---------------------------------------------------------------------------------------------- PyDataset


def test_pydataset_with_separately_shuffled_masks_is_sd301(blobs):
    keras = pytest.importorskip("keras")
    x, y = blobs

    class Loader(keras.utils.PyDataset):
        def __init__(self, shuffle_masks):
            super().__init__()
            rng = np.random.default_rng(0)
            self.images = rng.permutation(len(x))
            self.masks = rng.permutation(len(x)) if shuffle_masks else self.images

        def __len__(self):
            return len(x) // 8

        def __getitem__(self, i):
            sl = slice(8 * i, 8 * i + 8)
            return x[self.images[sl]].astype(np.float32) / 255, y[self.masks[sl]]

    f = finding(check_pipeline(Loader(True)), "SD301")
    assert f.evidence["samples[other]"] >= 0.8 * f.evidence["samples_studied"]
    assert "pair by name" in f.snippet
    clean(check_pipeline(Loader(False)))


# ---------------------------------------------------------------------------------------------- ImageDataGenerator


def _idg():
    tf = tfmod()
    return tf.keras.preprocessing.image.ImageDataGenerator


def test_zipped_flows_with_different_seeds_are_sd301_same_seed_is_clean(blobs):
    idg = _idg()
    x, y = blobs
    aug = dict(horizontal_flip=True, vertical_flip=True)

    def flows(seed_images, seed_masks):
        images = idg(rescale=1 / 255, **aug).flow(x, batch_size=8, seed=seed_images)
        masks = idg(**aug, interpolation_order=0).flow(y[..., None].astype(np.float32), batch_size=8, seed=seed_masks)
        return zip(images, masks)

    f = finding(check_pipeline(flows(1, 2)), "SD301")
    assert "ImageDataGenerator" in f.snippet and "seed=1" in f.snippet
    clean(check_pipeline(flows(7, 7)))


def test_mask_generator_with_rescale_is_sd302_and_interpolating_warps_are_sd106(blobs):
    idg = _idg()
    x, y = blobs
    images = idg(rescale=1 / 255).flow(x, batch_size=8, seed=3)
    masks = idg(rescale=1 / 255).flow(y[..., None].astype(np.float32), batch_size=8, seed=3)
    f = finding(check_pipeline(zip(images, masks)), "SD302")
    assert "rescale=1 / 255" in f.snippet and "interpolation_order=0" in f.snippet

    aug = dict(rotation_range=30)
    warped = zip(idg(rescale=1 / 255, **aug).flow(x, batch_size=8, seed=4),
                 idg(**aug).flow(y[..., None].astype(np.float32), batch_size=8, seed=4))
    assert "interpolation_order=0" in finding(check_pipeline(warped), "SD106").snippet
    nearest = zip(idg(rescale=1 / 255, **aug).flow(x, batch_size=8, seed=4),
                  idg(**aug, interpolation_order=0).flow(y[..., None].astype(np.float32), batch_size=8, seed=4))
    report = check_pipeline(nearest)
    assert not codes(report) & {"SD106", "SD301", "SD302"}, [f.title for f in report.findings]


def test_flow_with_masks_as_labels_is_sd301(blobs):
    idg = _idg()
    x, y = blobs
    # flow(X, y) augments X only: y (the masks) come out as they went in
    flow = idg(rescale=1 / 255, horizontal_flip=True, vertical_flip=True).flow(x, y[..., None], batch_size=8, seed=5)
    f = finding(check_pipeline(flow), "SD301")
    assert f.evidence["samples_affected"] >= 0.4 * f.evidence["samples_studied"]


# ---------------------------------------------------------------------------------------------- plain generators


def test_images_scaled_twice_are_sd304_once_is_clean(blobs):
    x, y = blobs
    twice = x.astype(np.float32) / 255 / 255
    f = finding(check_pipeline(batches(twice, y)), "SD304")
    assert "divided by 255 twice" in f.title
    assert "SD202" not in codes(check_pipeline(batches(twice, y)))  # mis-scaled, not blank
    clean(check_pipeline(batches(x.astype(np.float32) / 255, y)))


def test_caffe_means_on_unit_data_and_constant_images_are_sd304(blobs):
    x, y = blobs
    caffe = x.astype(np.float32) / 255 - np.array([103.939, 116.779, 123.68], np.float32)
    assert "mean for another scale" in finding(check_pipeline(batches(caffe, y)), "SD304").title
    zeros = np.zeros_like(x, dtype=np.float32)
    assert "constant" in finding(check_pipeline(batches(zeros, y)), "SD304").title


def test_standardised_and_symmetric_inputs_are_plausible(blobs):
    x, y = blobs
    xf = x.astype(np.float32) / 255
    per_image = (xf - xf.mean(axis=(1, 2, 3), keepdims=True)) / xf.std(axis=(1, 2, 3), keepdims=True)
    imagenet = (xf - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    for images in (per_image, imagenet, xf * 2 - 1, x.astype(np.float32), x):
        clean(check_pipeline(batches(images, y)))


def test_val_pipeline_that_forgets_the_division_is_sd306(blobs):
    x, y = blobs
    train = batches(x.astype(np.float32) / 255, y)
    f = finding(check_pipeline(train, val=batches(x.astype(np.float32), y)), "SD306")
    assert "image scale" in f.title and "val pipeline does not divide by 255" in f.title
    assert "ONE function" in f.snippet
    report = check_pipeline(batches(x.astype(np.float32) / 255, y), val=batches(x.astype(np.float32) / 255, y, seed=9))
    clean(report)
    encoding = check_pipeline(batches(x, y), val=batches(x, np.eye(2, dtype=np.float32)[y]))
    assert "target encoding" in finding(encoding, "SD306").title


def test_random_crops_of_small_objects_starve_the_batches_sd305(tmp_path):
    x, y = blob_arrays(24, size=96, radius=(4, 6), n_blobs=1, seed=5)
    root = write_dataset(tmp_path / "small", x, y)

    def crop(centred):
        def aug(rng, im, m):
            if centred:
                ys, xs = np.nonzero(m)
                cy, cx = int(np.clip(ys.mean() - 16, 0, 64)), int(np.clip(xs.mean() - 16, 0, 64))
            else:
                cy, cx = rng.integers(0, 65, 2)
            return im[cy:cy + 32, cx:cx + 32].astype(np.float32) / 255, m[cy:cy + 32, cx:cx + 32]
        return aug

    f = finding(check_pipeline(batches(x, y, aug=crop(False)), data=root), "SD305")
    assert "against 100% of the files" in f.title
    report = check_pipeline(batches(x, y, aug=crop(True)), data=root)
    assert "SD305" not in codes(report)


def test_masks_shifted_against_their_images_are_sd301(blobs):
    x, y = blobs

    def shift(rng, im, m):
        return im.astype(np.float32) / 255, np.roll(m, tuple(rng.integers(6, 12, 2) * rng.choice([-1, 1], 2)), axis=(0, 1))

    f = finding(check_pipeline(batches(x, y, aug=shift)), "SD301")
    assert "offset" in f.title


# ---------------------------------------------------------------------------------------------- (X, Y) arrays and encodings


def test_label_smoothing_is_documented_not_a_defect(blobs):
    x, y = blobs
    xf = x.astype(np.float32) / 255
    smooth = y.astype(np.float32) * 0.9 + 0.05
    report = check_pipeline((xf, smooth[..., None]))
    clean(report)
    assert report.facts["train_label_smoothing"] == "0.1"
    onehot = np.eye(3, dtype=np.float32)[np.minimum(y, 2)] * 0.9 + 0.1 / 3
    report = check_pipeline((xf, onehot))
    clean(report)
    assert "label smoothing" in " ".join(str(r) for s in report.sections for t in s.tables for r in t.rows)


def test_multiclass_sparse_and_one_hot_done_right_are_clean_offset_ids_are_sd102():
    x, y = blob_arrays(32, classes=3, seed=4)
    xf = x.astype(np.float32) / 255
    clean(check_pipeline((xf, y)))
    clean(check_pipeline((xf, np.eye(3, dtype=np.float32)[y]), num_classes=3))
    assert "depth 3 but --num-classes is 4" in finding(check_pipeline((xf, np.eye(3, dtype=np.float32)[y]), num_classes=4),
                                                      "SD303").title
    assert "start at 1" in finding(check_pipeline((xf, y + 1)), "SD102").title


def test_sample_weights_are_read_and_reported(blobs):
    x, y = blobs
    w = np.ones(len(x), np.float32)
    report = check_pipeline(batches(x.astype(np.float32) / 255, y, w=w), batches=2)
    clean(report)
    assert report.facts["train_sample_weight_shape"] == "(B, )"


def test_one_sample_repeated_or_jittered_is_not_a_mismatch_one_mask_for_every_image_is(blobs):
    # "overfit one batch" runs repeat one pair: its copies are no mismatched pairs to compare with
    x, y = blobs
    xf = x.astype(np.float32) / 255
    one_x, one_y = np.repeat(xf[:1], 16, 0), np.repeat(y[:1], 16, 0)
    assert "SD301" not in codes(check_pipeline(batches(one_x, one_y)))
    jitter = np.random.default_rng(0).uniform(0.7, 1.3, (16, 1, 1, 1)).astype(np.float32)
    assert "SD301" not in codes(check_pipeline(batches(np.clip(one_x * jitter, 0, 1), one_y)))
    # different images that all get the same mask (a loader that always reads mask 0) still fire
    f = finding(check_pipeline(batches(xf, np.repeat(y[:1], len(x), 0))), "SD301")
    assert "no better than masks laid over other images" in f.title


def test_jpeg_masks_divided_by_255_are_sd105_not_interpolation(blobs, tmp_path):
    # JPEG noise sits next to the class values (0.004, 0.996 ...); a bilinear resize spreads values across the gap
    from PIL import Image

    x, y = blobs
    xf = x.astype(np.float32) / 255
    jpeg = []
    for m in y:
        path = tmp_path / "m.jpg"
        Image.fromarray((m * 255).astype(np.uint8)).save(path, quality=90)
        jpeg.append(np.asarray(Image.open(path)).astype(np.float32) / 255)
    jpeg = np.stack(jpeg)
    assert np.any((jpeg > 0) & (jpeg < 1))
    report = check_pipeline(batches(xf, jpeg))
    f = finding(report, "SD105")
    assert "lossy compression" in f.title and "SD106" not in codes(report)
    assert "> 127" in f.snippet
    clean(check_pipeline(batches(xf, (jpeg > 0.5).astype(np.float32))))


def test_multiclass_ids_divided_and_cast_to_int_are_sd302_with_the_files_binarising_is_not(tmp_path):
    x, y = blob_arrays(24, seed=5, classes=4)
    y = y.copy()
    y[:, :2, :] = 255  # a void band, as Cityscapes and VOC keep
    root = write_dataset(tmp_path / "multi", x, y)
    xf = x.astype(np.float32) / 255
    cast = (y.astype(np.float32) / 255).astype(np.int32)  # floor(id / 255): 0, and 1 on the void band
    report = check_pipeline(batches(xf, cast), data=root)
    f = finding(report, "SD302")
    assert "divided by 255 and cast to integers" in f.title and "{0, 1}" in f.title
    assert report.diagnosis.causes[0].finding.code == "SD302"
    # merging the classes on purpose (foreground = any class) marks far more than the void band: not this defect
    merged = ((y > 0) & (y < 255)).astype(np.int32)
    assert "SD302" not in codes(check_pipeline(batches(xf, merged), data=root))
    assert "SD302" not in codes(check_pipeline(batches(xf, y.astype(np.int32)), data=root))
    # without a void label every id becomes 0: the empty masks follow from the division
    plain = write_dataset(tmp_path / "plain", x, np.where(y == 255, 0, y).astype(np.uint8))
    report = check_pipeline(batches(xf, np.zeros_like(y, dtype=np.int32)), data=plain)
    assert report.diagnosis.causes[0].finding.code == "SD302"
    assert "SD108" in {s.finding.code for s in report.diagnosis.causes[0].steps}
