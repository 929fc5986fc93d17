"""Class balance checks: SD151 class-imbalance (with a loss prescription) and SD152 tiny-objects."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from segdoctor.findings import Figure, Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.balance import ClassBalance, class_balance, typical_tiny_limit
from segdoctor.stats.objects import SIZE_BINS, TINY_PIXELS, TINY_SHARE

#: a class (binary: the minority class) holding less than this share of the labelled pixels is rare
RARE_SHARE = 0.05
#: most frequent / least frequent class pixel count at or above which a multi-class set is imbalanced
MAX_MIN_RATIO = 50.0
#: below this minority share the prescription moves from Dice+BCE to focal + Tversky
SEVERE_SHARE = 0.01
#: Tversky weights for a rare foreground: false negatives cost more than false positives (Salehi et al. 2017)
TVERSKY_ALPHA, TVERSKY_BETA = 0.3, 0.7
#: SD152: a class is a tiny-object class when more than this share of its components are tiny ...
TINY_COMPONENT_SHARE = 0.5
#: ... and tiny components hold at least this share of its object pixels (fragments along borders do not)
TINY_PIXEL_SHARE = 0.2
#: ... counted over at least this many components
MIN_COMPONENTS = 3


def _fmt_pct(x: float) -> str:
    if x == 0:
        return "0%"
    if x < 0.001:
        return f"{x * 100:.3f}%"
    if x < 0.01:
        return f"{x * 100:.2f}%"
    return f"{x * 100:.1f}%"


def _weights_list(w: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:.3g}" for x in w) + "]"


def binary_prescription(b: ClassBalance) -> tuple[str, str, str]:
    """(loss name, fix sentence, Keras snippet) for a binary dataset (sigmoid head with 1 channel)."""
    fg = b.foreground_index()
    share = float(b.shares[fg])
    inv = b.inverse_frequency_weights()
    med = b.median_frequency_weights()
    w_bg, w_fg = float(inv[1 - fg]), float(inv[fg])
    fg_name = b.names[fg]
    header = (
        "import keras\nfrom keras import ops\n\n"
        f"# From {b.n_masks} masks: foreground (value {fg_name}) = {_fmt_pct(share)} of labelled pixels.\n"
        f"# Inverse-frequency weights [background, foreground] = [{w_bg:.3g}, {w_fg:.3g}];"
        f" median-frequency: {_weights_list(med[[1 - fg, fg]])}.\n"
        "# Model: last layer Conv2D(1, 1, activation=\"sigmoid\"); y_true (batch, H, W, 1) with values 0/1 (not 0/255).\n"
    )
    if share < SEVERE_SHARE:
        alpha = float(np.clip(1.0 - share, 0.25, 0.9))
        name = f"focal BCE (alpha={alpha:.2f}, gamma=2) + Tversky (alpha={TVERSKY_ALPHA}, beta={TVERSKY_BETA})"
        snippet = header + (
            f"focal = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha={alpha:.2f}, gamma=2.0)\n"
            f"tversky = keras.losses.Tversky(alpha={TVERSKY_ALPHA}, beta={TVERSKY_BETA})  # false negatives cost more\n\n"
            "def focal_tversky(y_true, y_pred):\n"
            "    y_true = ops.cast(y_true, y_pred.dtype)\n"
            "    return focal(y_true, y_pred) + tversky(y_true, y_pred)\n\n"
            "model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=focal_tversky,\n"
            "              metrics=[keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5)])\n"
        )
    else:
        name = f"Dice + BCE weighted by inverse frequency (foreground weight {w_fg:.3g})"
        snippet = header + (
            f"CLASS_WEIGHTS = ({w_bg:.4g}, {w_fg:.4g})  # background, foreground\n"
            "dice = keras.losses.Dice()\n\n"
            "def weighted_bce_dice(y_true, y_pred):\n"
            "    y_true = ops.cast(y_true, y_pred.dtype)\n"
            "    weights = CLASS_WEIGHTS[0] + (CLASS_WEIGHTS[1] - CLASS_WEIGHTS[0]) * y_true[..., 0]\n"
            "    bce = keras.losses.binary_crossentropy(y_true, y_pred)  # (batch, H, W)\n"
            "    return ops.mean(weights * bce) + dice(y_true, y_pred)\n\n"
            "model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=weighted_bce_dice,\n"
            "              metrics=[keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5)])\n"
        )
    fix = (f"Train with {name}; report Dice/IoU of the foreground, not pixel accuracy "
           f"(predicting all background already scores {_fmt_pct(1 - share)}).")
    return name, fix, snippet


def multiclass_prescription(b: ClassBalance) -> tuple[str, str, str]:
    """(loss name, fix sentence, Keras snippet) for a multi-class dataset (softmax head with K channels)."""
    med = b.median_frequency_weights()
    inv = b.inverse_frequency_weights()
    gaps: list = []
    remap = ""
    if b.colour or b.classes == list(range(b.k)):
        k, w_med, w_inv = b.k, med.copy(), inv.copy()
        absent = b.counts == 0
        w_med[absent], w_inv[absent] = 1.0, 1.0  # declared classes never seen: neutral weight
        gaps = [b.names[i] for i in np.flatnonzero(absent)]
    elif min(b.classes) >= 0 and max(b.classes) + 1 <= 2 * b.k:
        # ids with a few gaps (classes absent from these masks): keep the ids, give absent ones weight 1
        k = max(b.classes) + 1
        w_med, w_inv = np.ones(k), np.ones(k)
        w_med[b.classes], w_inv[b.classes] = med, inv
        gaps = [i for i in range(k) if i not in b.classes]
    else:
        k, w_med, w_inv = b.k, med, inv
        remap = ", ".join(f"{v}: {i}" for i, v in enumerate(b.classes))
    void = b.void
    void_line = ""
    if void is not None and not b.colour:
        void_line = f"VOID = {void}  # ignored label: no loss, no Dice\n"
    elif void is not None:
        void_line = "VOID = 255  # map the void colour (224, 224, 192) to 255 when converting: no loss, no Dice\n"
    lines = [
        "import keras",
        "from keras import ops",
        "",
        f"NUM_CLASSES = {k}",
        f"# From {b.n_masks} masks, pixel shares per class: " + ", ".join(
            f"{n}: {_fmt_pct(s)}" for n, s in zip(b.names, b.shares)),
        "# Median-frequency weights (Eigen & Fergus): stable even for classes seen in few images.",
        f"CLASS_WEIGHTS = ops.convert_to_tensor({_weights_list(w_med)}, dtype=\"float32\")",
        f"# Inverse-frequency alternative (sharper): {_weights_list(w_inv)}",
    ]
    if gaps:
        lines.append(f"# Class ids {', '.join(map(str, gaps))} never occur in these masks (weight 1).")
    if remap:
        lines.append(f"# Class ids are not 0..{k - 1}: remap them first with {{{remap}}} (see SD102).")
    if b.colour:
        lines.append("# Masks are RGB colours: convert them to ids 0..NUM_CLASSES-1 in this order first (see SD104).")
    lines.append("# Model: last layer Conv2D(NUM_CLASSES, 1, activation=\"softmax\"); y_true (batch, H, W[, 1]) integer ids.")
    if void_line:
        lines.append(void_line.rstrip("\n"))
    lines += [
        "",
        "def weighted_ce_dice(y_true, y_pred):",
        "    if len(y_true.shape) == 4:",
        "        y_true = y_true[..., 0]",
        "    y_true = ops.cast(y_true, \"int32\")",
    ]
    if void_line:
        lines += [
            "    valid = ops.cast(ops.not_equal(y_true, VOID), y_pred.dtype)",
            "    y_true = ops.where(ops.equal(y_true, VOID), 0, y_true)",
        ]
    else:
        lines += ["    valid = ops.ones_like(y_true, dtype=y_pred.dtype)"]
    lines += [
        "    onehot = ops.one_hot(y_true, NUM_CLASSES, dtype=y_pred.dtype)",
        "    ce = keras.losses.categorical_crossentropy(onehot, y_pred)  # (batch, H, W)",
        "    w = ops.take(CLASS_WEIGHTS, y_true) * valid",
        "    ce = ops.sum(w * ce) / ops.maximum(ops.sum(w), 1e-6)",
        "    m = valid[..., None]",
        "    inter = ops.sum(onehot * y_pred * m, axis=(0, 1, 2))",
        "    denom = ops.sum((onehot + y_pred) * m, axis=(0, 1, 2))",
        "    dice = (2.0 * inter + 1.0) / (denom + 1.0)  # per class, then averaged: rare classes count fully",
        "    return ce + 1.0 - ops.mean(dice)",
        "",
        "model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=weighted_ce_dice,",
        "              metrics=[keras.metrics.MeanIoU(num_classes=NUM_CLASSES, sparse_y_true=True, sparse_y_pred=False"
        + (", ignore_class=VOID" if void_line else "") + ")])",
    ]
    name = "class-weighted cross-entropy (median-frequency weights) + macro soft Dice"
    rare = [n for n, s in zip(b.names, b.shares) if s < RARE_SHARE]
    fix = (f"Train with {name}; monitor per-class IoU"
           + (f" (rare: {', '.join(rare[:8])})" if rare else "") + ".")
    return name, fix, "\n".join(lines) + "\n"


@register
class ClassImbalance(Check):
    """Some classes cover far fewer pixels than others; the loss needs to compensate.

    *Why it matters*: with plain cross-entropy a network that predicts only the frequent class already
    reaches a low loss and high pixel accuracy, so rare classes are learned late or never (Dice 0 while
    accuracy looks fine).

    *How to fix*: use the prescribed loss, computed from this dataset's pixel counts: Dice + BCE with
    inverse-frequency weights for a binary set whose foreground is 1-5% of the pixels; focal BCE +
    Tversky (alpha 0.3, beta 0.7: missed foreground costs more than false alarms) below 1%; for several
    classes, cross-entropy weighted by median-frequency balancing plus a macro soft Dice. The snippet
    compiles it for a sigmoid (1 channel) or softmax (K channels) head.

    Thresholds: binary, the minority class below 5% of labelled pixels; multi-class, a class below
    min(5%, 50%/K) or most/least frequent class pixel ratio >= 50. Void labels (255 beside small ids,
    the VOC void colour) are left out; JPEG/interpolation artefacts count for the nearest class.
    Calibrated on ../shared/realdata: ISBI membranes (22%/78%) and Kvasir polyps (23% foreground) stay
    quiet; the Cityscapes crop (wall 0.15% vs road 44%, ratio ~300) fires.
    """

    code = "SD151"
    name = "class-imbalance"
    severity = Severity.WARNING
    scope = "data"
    uses = ("mask_objects",)

    def run(self, ctx) -> Iterator[Finding]:
        b = class_balance(ctx)
        if b is None or b.counts.sum() == 0:
            return
        shares = b.shares
        present = b.counts > 0
        smin = float(shares[present].min())
        ratio = float(shares[present].max() / smin)
        if b.binary:
            fg = b.foreground_index()
            minority = float(min(shares))
            fires = minority < RARE_SHARE
        else:
            limit = min(RARE_SHARE, 0.5 / b.k)
            fires = smin < limit or ratio >= MAX_MIN_RATIO
        if not fires:
            return
        if b.binary:
            name, fix, snippet = binary_prescription(b)
            fg_share = float(shares[fg])
            title = (f"Foreground (value {b.names[fg]}) is {_fmt_pct(fg_share)} of the labelled pixels in "
                     f"{b.n_masks} masks (background {_fmt_pct(1 - fg_share)})")
        else:
            name, fix, snippet = multiclass_prescription(b)
            lo, hi = int(np.argmin(np.where(present, shares, np.inf))), int(np.argmax(shares))
            n_rare = int(((shares < RARE_SHARE) & present).sum())
            title = (f"{n_rare} of {b.k} classes hold under {_fmt_pct(RARE_SHARE)} of the pixels each; class "
                     f"{b.names[hi]} outnumbers class {b.names[lo]} {ratio:.0f} to 1 ({b.n_masks} masks)")
        # sampling advice the loss alone cannot give
        if b.empty_masks and len(b.empty_masks) * 2 >= b.n_masks:
            fix += (f" {len(b.empty_masks)} of {b.n_masks} masks hold only background: draw masks with foreground "
                    "more often (e.g. half of each batch).")
        if b.objects and b.tiny_objects * 2 > b.objects:
            fix += " Most objects are tiny: train on full-resolution crops centred on them (see SD152)."
        inv, med = b.inverse_frequency_weights(), b.median_frequency_weights()
        evidence = {
            "masks": b.n_masks,
            "classes": b.k,
            "max_min_ratio": round(ratio, 2),
            "empty_masks": len(b.empty_masks),
            "prescribed_loss": name,
        }
        for n, s, wi, wm, p in zip(b.names, shares, inv, med, b.present_in):
            evidence[f"share[{n}]"] = round(float(s), 6)
            evidence[f"inverse_frequency_weight[{n}]"] = round(float(wi), 4)
            evidence[f"median_frequency_weight[{n}]"] = round(float(wm), 4)
            evidence[f"masks_with[{n}]"] = int(p)
        if b.void is not None:
            evidence["ignored_void"] = b.names[b.classes.index(b.void)] if b.void in b.classes else str(b.void)
        figures = [
            Figure("bar", "Pixel share per class (all masks)",
                   {"labels": b.names, "values": [float(s) for s in shares], "ylabel": "share of labelled pixels (log)",
                    "log": True, "highlight": [n for n, s in zip(b.names, shares) if s < RARE_SHARE]},
                   caption="Orange: classes under 5% of the pixels."),
        ]
        fgs = b.per_mask_foreground_share()
        if b.background is not None:
            counts, edges = np.histogram(fgs, bins=20, range=(0.0, 1.0))
            figures.append(Figure("histogram", "Foreground share per mask",
                                  {"edges": edges.tolist(), "counts": counts.tolist(),
                                   "xlabel": "share of non-background pixels", "ylabel": "masks"},
                                  caption=f"{len(b.empty_masks)} of {b.n_masks} masks hold only background."))
        # affected masks: binary, those whose own foreground share is rare (rarest first); multi-class, those
        # holding a rare class, the pixels the weights are for
        if b.binary:
            fg_rows = b.per_mask_counts[:, fg] / np.maximum(b.per_mask_counts.sum(axis=1), 1)
            rows = [r for r in np.argsort(fg_rows, kind="stable") if fg_rows[r] < RARE_SHARE]
        else:
            rare = (shares < RARE_SHARE) & present
            rows = [r for r in range(b.n_masks) if np.any(b.per_mask_counts[r, rare] > 0)]
        files = [ctx.display(ctx.dataset.pairs[b.per_mask_index[r]]) for r in rows]
        evidence["masks_affected"] = len(files)
        yield self.finding(
            title=title,
            evidence=evidence,
            why=("With an unweighted loss the network can reach a low loss by predicting the frequent class "
                 "everywhere; rare classes then get Dice near 0 while pixel accuracy looks high."),
            fix=fix,
            snippet=snippet,
            files=files,
            figures=figures,
            related=("SD108", "SD152"),
        )


@register
class TinyObjects(Check):
    """Most objects of a class are tiny relative to the image.

    *Why it matters*: an object of a few dozen pixels shrinks to a handful of cells in the encoder's
    feature maps and to a few pixels after any downscaling of the input; one missed object costs
    almost nothing in cross-entropy, so the network learns to ignore them.

    *How to fix*: keep the full resolution (train on crops instead of resizing the whole image down),
    sample crops that contain objects more often than chance, and use a region loss (Dice / focal
    Tversky) that weighs each small object; count detection per object, not only pixel Dice.

    Thresholds: an object (8-connected component of one class, found on a copy at most 256 px on the
    long side, sizes scaled back) is tiny below max(64 px, 0.1% of the image). A class fires when more
    than half of its components (at least 3) are tiny *and* tiny components hold >= 20% of its object
    pixels, so that slivers cut off by void bands (Pascal VOC) do not count. Calibrated on
    ../shared/realdata: ISBI cells (27% tiny, 1.8% of pixels) and Kvasir polyps stay quiet; Cityscapes
    poles and traffic signs in a 128x256 crop fire.
    """

    code = "SD152"
    name = "tiny-objects"
    severity = Severity.WARNING
    scope = "data"
    uses = ("mask_objects",)

    def run(self, ctx) -> Iterator[Finding]:
        b = class_balance(ctx)
        if b is None or not b.objects:
            return
        tiny_classes = []
        for val, (n_c, n_t, px, tpx) in sorted(b.objects_by_class.items()):
            if n_c >= MIN_COMPONENTS and n_t > TINY_COMPONENT_SHARE * n_c and tpx >= TINY_PIXEL_SHARE * max(px, 1.0):
                tiny_classes.append((val, n_c, n_t, px, tpx))
        if not tiny_classes:
            return
        limit = typical_tiny_limit(b)
        names = [b.names[b.classes.index(v)] for v, *_ in tiny_classes]
        total_c = sum(t[1] for t in tiny_classes)
        total_t = sum(t[2] for t in tiny_classes)
        hist = b.object_hist
        last = int(np.max(np.nonzero(hist)[0])) + 2 if hist.any() else SIZE_BINS
        edges = [float(2 ** k) for k in range(min(last, SIZE_BINS) + 1)]
        # typical object side in pixels: median size over the tiny classes' components, from the histogram
        median_bin = int(np.searchsorted(np.cumsum(hist), hist.sum() / 2))
        median_size = 2 ** median_bin * 1.5
        side = float(np.sqrt(median_size))
        crop = int(max(64, min(512, 2 ** int(np.ceil(np.log2(max(8 * side, 64)))))))
        evidence = {
            "tiny_limit_px": round(limit, 1),
            "objects": b.objects,
            "tiny_objects": b.tiny_objects,
            "masks_with_objects": b.object_masks,
            "masks_mostly_tiny": len(b.object_tiny_masks),
            "median_object_px": round(median_size, 1),
        }
        for (v, n_c, n_t, px, tpx), n in zip(tiny_classes, names):
            evidence[f"tiny_share[{n}]"] = round(n_t / n_c, 3)
            evidence[f"tiny_pixel_share[{n}]"] = round(tpx / max(px, 1.0), 3)
            evidence[f"objects[{n}]"] = n_c
        snippet = (
            "import numpy as np\n\n"
            f"def sample_crop(image, mask, size={crop}, p_object=0.6, rng=np.random.default_rng()):\n"
            "    \"\"\"A training crop at full resolution; with probability p_object it is centred on a labelled pixel.\"\"\"\n"
            "    h, w = mask.shape[:2]\n"
            "    fg = np.argwhere(mask[..., 0] > 0 if mask.ndim == 3 else mask > 0)\n"
            "    if len(fg) and rng.random() < p_object:\n"
            "        cy, cx = fg[rng.integers(len(fg))]\n"
            "    else:\n"
            "        cy, cx = rng.integers(h), rng.integers(w)\n"
            "    y0 = int(np.clip(cy - size // 2, 0, max(h - size, 0)))\n"
            "    x0 = int(np.clip(cx - size // 2, 0, max(w - size, 0)))\n"
            "    return image[y0:y0 + size, x0:x0 + size], mask[y0:y0 + size, x0:x0 + size]\n"
        )
        files = [ctx.display(ctx.dataset.pairs[i]) for i in b.object_tiny_masks]
        yield self.finding(
            title=(f"{total_t} of {total_c} objects of class{'es' if len(names) > 1 else ''} {', '.join(names)} are tiny "
                   f"(under {limit:.0f} px: the larger of {TINY_PIXELS} px and {TINY_SHARE:.1%} of the image)"),
            evidence=evidence,
            why=("Tiny objects vanish when the input is resized down and weigh almost nothing in a pixel loss, "
                 "so the network learns to skip them."),
            fix=(f"Train on full-resolution crops of about {crop} px that contain objects in ~60% of the samples "
                 "instead of resizing whole images, and use Dice or focal Tversky loss; do not downsample the input."),
            snippet=snippet,
            files=files,
            figures=[Figure("histogram", "Object sizes (connected components of foreground classes)",
                            {"edges": edges, "counts": hist[: len(edges) - 1].tolist(), "xlabel": "pixels (log2 bins)",
                             "ylabel": "objects", "log": False, "vlines": [{"x": limit, "label": "tiny"}]},
                            caption="Bins are powers of two; the dashed line is the tiny-object limit.")],
            related=("SD151",),
        )
