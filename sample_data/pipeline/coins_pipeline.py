"""A small tf.data pipeline over the bundled coin tiles (sample_data/coins_clean), with two planted loader bugs.

The files are clean (`segdoctor check-data sample_data/coins_clean` finds nothing); `make_train_ds` breaks them
on the way to the model the way real loaders often do:

1. the masks are resized with `tf.image.resize`'s default (bilinear) method: fractional values on every
   coin boundary (SD106);
2. image and mask are flipped by two separate random draws: about half the samples pair an image with a
   mirrored mask (SD301).

`make_fixed_ds` is the same pipeline done right, and `make_val_ds` a validation pipeline:

    segdoctor check-pipeline sample_data/pipeline/coins_pipeline.py:make_train_ds --data sample_data/coins_clean
    segdoctor check-pipeline sample_data/pipeline/coins_pipeline.py:make_fixed_ds --val sample_data/pipeline/coins_pipeline.py:make_val_ds
"""

from pathlib import Path

import tensorflow as tf

DATA = Path(__file__).resolve().parent.parent / "coins_clean"
SIZE = (96, 96)


def _pairs():
    images = sorted(str(p) for p in (DATA / "images").glob("*.png"))
    masks = [str(DATA / "masks" / Path(p).name) for p in images]  # paired by name
    return images, masks


def _load(image_path, mask_path):
    image = tf.io.decode_png(tf.io.read_file(image_path), channels=1)
    mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)  # class ids {0, 1}
    return tf.cast(image, tf.float32) / 255.0, mask


def make_train_ds():
    """The training pipeline, with the two bugs."""
    tf.random.set_seed(0)

    def augment(image, mask):
        image = tf.image.resize(image, SIZE)
        mask = tf.image.resize(mask, SIZE)  # BUG 1: bilinear (the default) invents values between 0 and 1
        image = tf.image.random_flip_left_right(image)  # BUG 2: one random draw for the image ...
        mask = tf.image.random_flip_left_right(mask)  # ... and another one for the mask
        return image, mask

    images, masks = _pairs()
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).shuffle(len(images), seed=0).repeat()
    return ds.map(_load).map(augment).batch(8)


def make_fixed_ds():
    """The same pipeline done right: nearest-neighbour for the mask, one random draw for both."""
    tf.random.set_seed(0)

    def augment(image, mask):
        image = tf.image.resize(image, SIZE)
        mask = tf.image.resize(mask, SIZE, method="nearest")
        both = tf.image.random_flip_left_right(tf.concat([image, tf.cast(mask, tf.float32)], axis=-1))
        return both[..., :1], tf.cast(both[..., 1:], tf.uint8)

    images, masks = _pairs()
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).shuffle(len(images), seed=0).repeat()
    return ds.map(_load).map(augment).batch(8)


def make_val_ds():
    """Validation: the same preprocessing, no augmentation."""
    images, masks = _pairs()

    def resize(image, mask):
        return tf.image.resize(image, SIZE), tf.image.resize(mask, SIZE, method="nearest")

    return tf.data.Dataset.from_tensor_slices((images, masks)).map(_load).map(resize).batch(4)
