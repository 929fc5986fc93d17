"""The corrected loader lines for each pipeline defect, in the user's framework (tf.data, ImageDataGenerator,
albumentations / NumPy). Every number that goes into a snippet is formatted from a Python int or float;
nothing read from the data (dict keys, names) is pasted into code.
"""

from __future__ import annotations


def framework(kind: str) -> str:
    """'tf.data', 'ImageDataGenerator' or 'python' for the object kind reported by ``io.pipeline.describe_object``."""
    if kind.startswith("tf.data"):
        return "tf.data"
    if "ImageDataGenerator" in kind:
        return "ImageDataGenerator"
    if kind.startswith("zip"):
        return "ImageDataGenerator"  # zip(image_flow, mask_flow) is how two generators are usually paired
    return "python"


_SNIPPETS: dict[str, dict[str, str]] = {
    "interpolated": {
        "tf.data": ("# resize (and warp) masks with nearest-neighbour, never the default bilinear\n"
                    "mask = tf.image.resize(mask, (height, width), method=\"nearest\")\n"
                    "# Keras layers: keras.layers.Resizing(height, width, interpolation=\"nearest\") for the mask"),
        "ImageDataGenerator": ("# the mask generator must not interpolate: order 0 (nearest), and no rescale\n"
                               "mask_datagen = ImageDataGenerator(**aug_args, interpolation_order=0)"),
        "python": ("# albumentations: pass the mask as mask= (it is warped with nearest-neighbour), never as image=\n"
                   "out = aug(image=image, mask=mask)\n"
                   "image, mask = out[\"image\"], out[\"mask\"]\n"
                   "# OpenCV / Pillow: cv2.INTER_NEAREST / Image.NEAREST for masks"),
    },
    "binarise": {
        "tf.data": "mask = tf.cast(mask > 127, tf.float32)  # {0, 255} -> {0, 1}, in the map() that loads the mask",
        "ImageDataGenerator": ("masks = (masks > 127).astype(\"float32\")  # before .flow(); the mask generator keeps no rescale\n"
                               "mask_datagen = ImageDataGenerator(**aug_args, interpolation_order=0)"),
        "python": "mask = (np.asarray(mask) > 127).astype(\"uint8\")  # {0, 255} -> {0, 1}",
    },
    "channels": {
        "tf.data": "mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)  # one channel, not 3",
        "ImageDataGenerator": "mask_flow = mask_datagen.flow_from_directory(mask_dir, color_mode=\"grayscale\", class_mode=None, seed=1)",
        "python": "mask = np.asarray(Image.open(mask_path).convert(\"L\"))  # or mask[..., 0] when the channels are equal",
    },
    "joint": {
        "tf.data": ("def augment(image, mask):\n"
                    "    # one random draw for both: stack them, transform the stack, split it again\n"
                    "    both = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)\n"
                    "    both = tf.image.random_flip_left_right(both)\n"
                    "    both = tf.image.random_flip_up_down(both)\n"
                    "    image, mask = both[..., :-1], both[..., -1:]\n"
                    "    return image, mask\n"
                    "# or one stateless seed for both calls:\n"
                    "# seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)\n"
                    "# image = tf.image.stateless_random_flip_left_right(image, seed)\n"
                    "# mask = tf.image.stateless_random_flip_left_right(mask, seed)"),
        "ImageDataGenerator": ("# identical arguments and the same seed for both flows; never flow(X, Y) with masks as Y\n"
                               "aug_args = dict(horizontal_flip=True, vertical_flip=True, rotation_range=10)\n"
                               "image_flow = ImageDataGenerator(**aug_args, rescale=1 / 255).flow(X, batch_size=8, seed=1)\n"
                               "mask_flow = ImageDataGenerator(**aug_args, interpolation_order=0).flow(Y, batch_size=8, seed=1)\n"
                               "train = zip(image_flow, mask_flow)"),
        "python": ("# albumentations: one call transforms both with the same random parameters\n"
                   "out = aug(image=image, mask=mask)\n"
                   "image, mask = out[\"image\"], out[\"mask\"]"),
    },
    "pairing": {
        "tf.data": ("images = sorted(Path(image_dir).glob(\"*.png\"))\n"
                    "masks = [Path(mask_dir) / p.name for p in images]  # pair by name, not by two separate listings\n"
                    "ds = tf.data.Dataset.from_tensor_slices(([str(p) for p in images], [str(p) for p in masks]))\n"
                    "ds = ds.shuffle(len(images))  # shuffle pairs, after zipping, never each list on its own"),
        "ImageDataGenerator": ("# one seed, one shuffle and one batch size for both flows, over arrays in the same order\n"
                               "image_flow = ImageDataGenerator(rescale=1 / 255, **aug_args).flow(X, batch_size=8, shuffle=True, seed=1)\n"
                               "mask_flow = ImageDataGenerator(**aug_args, interpolation_order=0).flow(Y, batch_size=8, shuffle=True, seed=1)\n"
                               "# from folders: flow_from_directory(..., class_mode=None, shuffle=True, seed=1) for both,\n"
                               "# with the same file names in both folders"),
        "python": ("images = sorted(Path(image_dir).glob(\"*.png\"))\n"
                   "pairs = [(p, Path(mask_dir) / p.name) for p in images]  # pair by name\n"
                   "random.shuffle(pairs)  # shuffle the pairs, never the two lists separately"),
    },
    "rescale": {
        "tf.data": ("image = tf.cast(image, tf.float32) / 255.0  # images only\n"
                    "mask = tf.cast(mask, tf.int32)  # class ids are never rescaled"),
        "ImageDataGenerator": ("image_datagen = ImageDataGenerator(rescale=1 / 255, **aug_args)  # rescale the images ...\n"
                               "mask_datagen = ImageDataGenerator(**aug_args, interpolation_order=0)  # ... never the masks"),
        "python": ("image = image.astype(\"float32\") / 255.0  # images only\n"
                   "mask = mask.astype(\"int32\")  # class ids are never rescaled"),
    },
    "shared": {
        "tf.data": ("def preprocess(image, mask):  # ONE function for train and val\n"
                    "    image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, SIZE)\n"
                    "    mask = tf.image.resize(mask, SIZE, method=\"nearest\")\n"
                    "    return image, mask\n"
                    "train_ds = train_files.map(load).map(preprocess).map(augment)\n"
                    "val_ds = val_files.map(load).map(preprocess)  # same preprocessing, no augmentation"),
        "ImageDataGenerator": ("image_args = dict(rescale=1 / 255)  # shared by the train and val image generators\n"
                               "train_images = ImageDataGenerator(**image_args, **aug_args)\n"
                               "val_images = ImageDataGenerator(**image_args)  # same preprocessing, no augmentation"),
        "python": ("def preprocess(image, mask):  # ONE function for train and val\n"
                   "    return image.astype(\"float32\") / 255.0, mask.astype(\"int32\")"),
    },
}


def pipeline_snippet(topic: str, kind: str) -> str:
    """The corrected lines for ``topic`` in the framework of ``kind``, then the NumPy/albumentations form."""
    table = _SNIPPETS[topic]
    first = framework(kind)
    parts = [table[first]]
    if first != "python":
        parts.append("# in NumPy / albumentations code:\n" + table["python"])
    return "\n\n".join(parts)


def one_hot_snippet(depth: int, binary_threshold: bool) -> str:
    k = int(depth)
    lines = []
    if binary_threshold:
        lines.append("mask = tf.cast(mask > 127, tf.int32)  # {0, 255} -> {0, 1} BEFORE one_hot (255 is out of depth)")
    else:
        lines.append(f"mask = tf.cast(mask, tf.int32)  # class ids 0..{k - 1}; remap any other id first")
    lines.append("mask = tf.squeeze(mask, axis=-1)  # (H, W, 1) -> (H, W): no extra axis after one_hot")
    lines.append(f"mask = tf.one_hot(mask, depth={k})  # (H, W, {k}); or keep the ids and use SparseCategoricalCrossentropy")
    return "\n".join(lines)
