"""SD1xx: how the masks encode their labels (0/255, offsets, void, colours, compression, resizing)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from segdoctor.checks._common import example_pairs, of, plural
from segdoctor.context import DataContext
from segdoctor.findings import Figure, Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.encoding import LabelSummary
from segdoctor.stats.labels import VOC_NAMES, VOC_VOID_COLOUR, unpack_rgb, voc_palette

VOID_CANDIDATES = (255, 65535, -1)
#: a class colour this close (RGB Euclidean) to a Pascal VOC colour is that colour after compression
VOC_SNAP_DISTANCE = 24.0
#: a label map with more distinct class values than this is not a label map
MAX_PLAUSIBLE_CLASSES = 256


def _void_value(s: LabelSummary, num_classes: int | None):
    """The ignore label (usually 255) when it stands apart from small class ids; else None."""
    for v in VOID_CANDIDATES:
        if v not in s.class_values and not _thin_void(s, v):
            continue
        others = [c for c in s.class_values if c != v]
        if num_classes is not None:
            # {0, 255} with --num-classes 2 is a 0/255 binary mask (SD101), not a dataset of void-only masks
            outside = v >= num_classes or v < 0
            return v if outside and _shares_a_mask_with_a_class(s, v, others) else None
        # 255 / 65535 stand apart above small ids; -1 stands apart below ids that start at 0, unless it covers most
        # pixels: then it is a background coded as -1 (SD107), not pixels to ignore
        apart = bool(others) and (max(others) < v / 2 if v > 0 else min(others) >= 0 and s.share(v) < 0.5)
        if len(others) >= 2 and apart and _shares_a_mask_with_a_class(s, v, others):
            return v
    return None


def _thin_void(s: LabelSummary, v) -> bool:
    """A void border one or two pixels wide (VOC borders after downsizing) has no interior pixels, so it is not
    a class value; unlike a resizing or compression artefact it never lies strictly between its neighbours."""
    row = s.value_table.get(v)
    return row is not None and row[0] > 0 and row[2] == 0


def _shares_a_mask_with_a_class(s: LabelSummary, v, others: list) -> bool:
    """Void borders objects, so it shares masks with foreground classes. A value that never does is another
    encoding of the foreground (masks {0, 255} mixed with masks {0, 1}), not void."""
    foreground = {c for c in others if c != 0}
    return any(v in m.values and foreground & set(m.values) for m in s.per_mask)


def _label_classes(s: LabelSummary, num_classes: int | None) -> list:
    void = _void_value(s, num_classes)
    return [c for c in s.class_values if c != void]


def _is_palette_dataset(s: LabelSummary) -> bool:
    return sum(s.palette_kinds.values()) > 0 and sum(s.palette_kinds.values()) >= s.n_label_masks / 2


def _mask_value_sets(ctx: DataContext, classes: set) -> list[tuple]:
    """(pair, record, set of class values present) for label masks."""
    out = []
    for pair, rec, info in ctx.masks():
        if "values" not in info:
            continue
        vals = set(info["values"]["values"].tolist()) & classes
        out.append((pair, rec, vals))
    return out


def _plain(v):
    """A class value as a plain int (or float), for evidence that JSON and the repair read alike."""
    f = float(v)
    return int(f) if f.is_integer() else f


def _round_to_classes_snippet(classes: list) -> str:
    cls = ", ".join(str(int(c)) for c in classes)
    return ("import numpy as np\n"
            f"CLASS_VALUES = np.array([{cls}])\n"
            "def snap_to_classes(mask):\n"
            "    # each pixel takes the nearest true class value\n"
            "    d = np.abs(mask[..., None].astype(np.int32) - CLASS_VALUES)\n"
            "    return CLASS_VALUES[d.argmin(axis=-1)].astype(np.uint8)")


@register
class Mask0255(Check):
    """Binary masks stored as {0, 255} (or {0, k} for one k > 1) instead of {0, 1}.

    *Why it matters*: with a sigmoid head and binary cross-entropy the targets must lie in [0, 1]. A target of
    255 makes the loss negative and unbounded, Dice/IoU metrics exceed 1, and the network usually collapses to
    blank predictions. With sparse categorical losses, 255 is read as class 255.

    *How to fix*: binarise when loading: ``mask = (mask > 127).astype("uint8")``. Never divide class-index masks
    by 255. Palette PNGs are exempt (their values are palette indices).

    Fires when the dataset's class values (values that fill regions, see SD106) are exactly {0, k} with k > 1,
    or when masks holding {0, k} are mixed with {0, 1} masks.
    """

    code = "SD101"
    name = "mask-0-255"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        if _is_palette_dataset(s):
            return
        classes = _label_classes(s, ctx.options.num_classes)
        nonzero = [c for c in classes if c != 0]
        sets = _mask_value_sets(ctx, set(s.class_values))
        scaled = [(p, v) for p, _, v in sets if v and max(v) > 1 and len(v - {0}) == 1 and (v - {0}) <= set(nonzero)]
        if not scaled:
            return
        ks = sorted({max(v) for _, v in scaled})
        unit = [p for p, _, v in sets if v == {0, 1} or v == {1}]
        binary_dataset = 0 in classes and len(nonzero) == 1
        mixed = len(nonzero) >= 2 and unit and set(nonzero) <= {1, *ks}
        if not (binary_dataset or mixed):
            return
        if ctx.options.num_classes and ctx.options.num_classes > 2 and not mixed:
            return  # declared multi-class; SD102/SD107 judge the ids
        k = ks[0]
        n = len(scaled)
        total = len(sets)
        share = s.share(k)
        thr = max(1, k // 2)
        title = (f"{of(n, total)} masks store the foreground as {k} instead of 1" if not mixed else
                 f"{plural(n, 'mask')} {'uses' if n == 1 else 'use'} {{0, {k}}} while {plural(len(unit), 'mask')} "
                 f"{'uses' if len(unit) == 1 else 'use'} {{0, 1}}")
        void = _void_value(s, ctx.options.num_classes)
        yield self.finding(
            title=title,
            evidence={"values": ", ".join(str(c) for c in classes), "foreground_value": k,
                      "foreground_pixel_share": round(share, 4), "masks_with_0_k": n, "masks_with_0_1": len(unit),
                      "masks": total,
                      # the repair (segdoctor fix): pixels above the threshold become 1; a void value stays
                      "threshold": thr, **({"void_value": void} if void is not None else {})},
            why=f"Binary cross-entropy and Dice expect targets in [0, 1]; a target of {k} gives negative losses, "
                "Dice/IoU above 1 and, usually, a network that predicts blank masks.",
            fix=f"Binarise every mask when loading it (mask > {thr}); never divide class-index masks by 255.",
            snippet=(f"mask = (np.asarray(mask) > {thr}).astype('uint8')          # NumPy / PIL loader\n"
                     f"mask = tf.cast(mask > {thr}, tf.float32)                    # inside a tf.data map()"),
            files=[ctx.dataset.display(p.mask) for p, _ in scaled],
            figures=[example_pairs([p for p, _ in scaled], f"Masks stored as {{0, {k}}}")],
        )


@register
class MaskLabelOffset(Check):
    """Class ids start at 1 (no 0 anywhere, e.g. trimaps {1, 2, 3}) or skip ids in a scaled pattern ({0, 50, 100}).

    *Why it matters*: sparse categorical losses need ids 0..K-1. Ids starting at 1 leave channel 0 as a phantom
    class and need K+1 outputs; scaled ids (0, 50, 100) need 101 outputs or silently index out of range.

    *How to fix*: remap to 0..K-1 with the exact table in the finding. Gaps are normal when some classes are
    absent from this subset: pass ``--num-classes K`` and only ids ≥ K are reported (SD107).
    """

    code = "SD102"
    name = "mask-label-offset"
    severity = Severity.WARNING
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        k = ctx.options.num_classes
        classes = _label_classes(s, k)
        if len(classes) < 2 or _is_palette_dataset(s):
            return
        ints = [int(c) for c in classes if float(c).is_integer()]
        if len(ints) != len(classes):
            return
        offset = 0 not in ints and min(ints) >= 1
        diffs = np.diff(ints)
        scaled = 0 in ints and len(ints) >= 3 and bool(np.all(diffs >= 2))
        if k is not None and not offset and max(ints) < k:
            return  # gaps are classes absent from this data
        if not (offset or scaled):
            return
        table = {c: i for i, c in enumerate(ints)}
        void = _void_value(s, k)
        lut_lines = ", ".join(f"{c}: {i}" for c, i in table.items())
        if max(max(ints), void or 0) < 256 and (void is None or void >= 0):
            snippet = ("import numpy as np\n"
                       f"REMAP = {{{lut_lines}}}" + (f"  # {void} (void) is kept" if void is not None else "") + "\n"
                       f"lut = np.arange({max(max(ints), void or 0) + 1}, dtype=np.uint8)\n"
                       "for old, new in REMAP.items():\n"
                       "    lut[old] = new\n"
                       "mask = lut[mask]")
        else:  # ids beyond uint8 (16/32-bit masks) or a negative void: a lookup table would be huge or wrap
            snippet = ("import numpy as np\n"
                       f"CLASS_VALUES = np.array([{', '.join(map(str, ints))}])   # the ids found, in order -> 0..{len(ints) - 1}\n"
                       "new = np.searchsorted(CLASS_VALUES, mask).astype(np.uint8)\n"
                       + (f"new[mask == {void}] = 255   # the void label {void} stays void (ignore_class=255)\n" if void is not None else "")
                       + "mask = new")
        if offset:
            title = f"Class ids start at {min(ints)}, not 0: the masks hold {{{', '.join(map(str, ints))}}}"
            why = ("Sparse categorical losses need ids 0..K-1; with ids from 1, output channel 0 is a phantom class "
                   f"and the model needs {max(ints) + 1} outputs instead of {len(ints)}.")
        else:
            title = f"Class ids skip values in a regular pattern: {{{', '.join(map(str, ints))}}} ({len(ints)} classes)"
            why = (f"Used as they are, these ids need {max(ints) + 1} output channels for {len(ints)} classes "
                   "(or index out of range); they look like class ids multiplied for viewing.")
        yield self.finding(
            title=title,
            evidence={"class_values": ", ".join(map(str, ints)), "classes": len(ints),
                      **({"declared_num_classes": k} if k else {}),
                      # the repair (segdoctor fix): old id -> new id; other values (void) stay
                      "remap": dict(table), **({"void_value": void} if void is not None else {})},
            why=why,
            fix=f"Remap the ids to 0..{len(ints) - 1} with this table when loading (and build the head with {len(ints)} channels).",
            snippet=snippet,
            files=[ctx.dataset.display(p.mask) for p, _, _ in ctx.masks()],
        )


@register
class MaskVoidLabel(Check):
    """A value outside 0..K-1 (usually 255) marks pixels to ignore (void), mostly on object borders.

    *Why it matters*: fed to the loss as a class, void pixels either crash sparse cross-entropy (id ≥ K) or teach
    the model a class that does not exist; in metrics they count as errors.

    *How to fix*: ``SparseCategoricalCrossentropy(ignore_class=255)`` and ``MeanIoU(..., ignore_class=255)``; for a
    binary head, zero the loss on void pixels with sample weights.

    Fires when 255 (or 65535, or -1) fills regions apart from small class ids (below half its value), or is ≥ K
    when ``--num-classes K`` is given. Reports the void share and how much of it lies on class borders.
    """

    code = "SD103"
    name = "mask-void-label"
    severity = Severity.WARNING
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        void = _void_value(s, ctx.options.num_classes)
        if void is None:
            return
        count, interior, _, n_masks = s.value_table[void]
        classes = [c for c in s.class_values if c != void]
        k = ctx.options.num_classes or (int(max(classes)) + 1 if classes else 2)
        border = 1 - interior / count if count else 0.0
        files = [ctx.dataset.display(p.mask) for p, _, info in ctx.masks()
                 if "values" in info and void in set(info["values"]["values"].tolist())]
        binary = k <= 2
        if binary:
            snippet = ("# binary head: keep void pixels out of the loss with sample weights\n"
                       "def with_void_weights(image, mask):\n"
                       f"    weights = tf.cast(mask != {void}, tf.float32)\n"
                       f"    mask = tf.where(mask == {void}, tf.zeros_like(mask), mask)\n"
                       "    return image, mask, weights\n"
                       "dataset = dataset.map(with_void_weights)   # model.fit uses the third element as sample_weight")
        else:
            snippet = (f"loss = keras.losses.SparseCategoricalCrossentropy(ignore_class={void})\n"
                       f"miou = keras.metrics.MeanIoU(num_classes={k}, ignore_class={void}, sparse_y_pred=False)\n"
                       f"model.compile(optimizer='adam', loss=loss, metrics=[miou])   # head: Conv2D({k}, 1, activation='softmax')")
        yield self.finding(
            title=f"{plural(len(files), 'mask')} {'contains' if len(files) == 1 else 'contain'} the void label {void} ({s.share(void):.1%} of pixels, {border:.0%} of them on borders)",
            evidence={"void_value": void, "void_pixel_share": round(s.share(void), 4), "void_on_borders": round(border, 3),
                      "masks_with_void": len(files), "class_ids": ", ".join(str(c) for c in classes), "num_classes": k},
            why=f"Treated as a class, the void label {void} crashes sparse cross-entropy (id ≥ {k}) or teaches a class "
                "that does not exist, and counts as errors in IoU.",
            fix=f"Ignore {void} in the loss and the metrics instead of training on it.",
            snippet=snippet,
            files=files,
        )


def _colour_table(s: LabelSummary) -> tuple[list[tuple[tuple[int, int, int], int, str]], bool]:
    """(colour, id, name) for the class colours, and whether they follow the Pascal VOC palette."""
    voc = {tuple(int(x) for x in c): i for i, c in enumerate(voc_palette(256)[:21])}
    voc[VOC_VOID_COLOUR] = 255
    colours = [unpack_rgb(c) for c in s.class_colours]
    void_packed = (VOC_VOID_COLOUR[0] << 16) | (VOC_VOID_COLOUR[1] << 8) | VOC_VOID_COLOUR[2]
    # compressed masks shift colours by a few levels: snap each class colour to a VOC colour close to it
    voc_rgb = np.array(list(voc), dtype=float)
    snapped = []
    for c in colours:
        d = np.sqrt(((voc_rgb - np.array(c, dtype=float)) ** 2).sum(-1))
        snapped.append(tuple(int(x) for x in voc_rgb[d.argmin()]) if d.min() <= VOC_SNAP_DISTANCE else None)
    if colours and all(snapped):
        colours = list(dict.fromkeys(snapped))
        if VOC_VOID_COLOUR not in colours and void_packed in s.colour_table:
            colours.append(VOC_VOID_COLOUR)  # a thin void border has no interior pixels, yet it is the VOC void colour
        rows = [(c, voc[c], "void (ignore)" if voc[c] == 255 else VOC_NAMES[voc[c]]) for c in colours]
        return sorted(rows, key=lambda r: r[1]), True
    rows = []
    ordered = sorted(colours, key=lambda c: (c != (0, 0, 0), -s.colour_table[(c[0] << 16) | (c[1] << 8) | c[2]][0]))
    for i, c in enumerate(ordered):
        rows.append((c, i, "background" if c == (0, 0, 0) else f"class {i}"))
    return rows, False


@register
class MaskMultichannel(Check):
    """Masks with 3 or 4 channels: either equal channels (store one) or colour-coded classes.

    *Why it matters*: a 3-channel mask fed to a 1-channel sigmoid head or to sparse cross-entropy gives the wrong
    shape or three times the targets; colour-coded classes must be mapped to ids before any loss sees them.

    *How to fix*: equal channels: keep one (``mask[..., 0]`` or ``Image.open(p).convert('L')``). Colour masks: map
    each colour to its class id with the inferred table (the Pascal VOC palette and its void colour
    (224, 224, 192) are recognised).
    """

    code = "SD104"
    name = "mask-multichannel"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        equal = [p for p, _, info in ctx.masks() if info.get("equal_channels")]
        colour = [p for p, _, info in ctx.masks() if "colours" in info]
        total = ctx.n_masks
        if equal:
            yield self.finding(
                title=f"{of(len(equal), total)} masks are 3-channel images whose channels all hold the same label",
                evidence={"masks_equal_channels": len(equal), "masks": total},
                why="Loaded as they are, these masks have 3 channels: a 1-channel head sees three targets per pixel and "
                    "sparse cross-entropy gets the wrong shape.",
                fix="Keep one channel when loading (or re-save the masks as single-channel PNG).",
                snippet=("mask = np.asarray(Image.open(mask_path).convert('L'))       # PIL\n"
                         "mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)  # tf.data\n"
                         "mask = mask[..., :1]                                          # already loaded arrays"),
                files=[ctx.dataset.display(p.mask) for p in equal],
            )
        if colour:
            rows, is_voc = _colour_table(s)
            void = [r for r in rows if r[1] == 255]
            lines = [f"    {c}: {i},  # {name}" for c, i, name in rows]
            noisy = any(f.lossy_like or f.interpolated or f.stray_pixels for f in s.per_colour_mask)
            header = ("import numpy as np\n"
                      "PALETTE = {  # (R, G, B): class id" + (" (Pascal VOC)" if is_voc else "") + "\n" + "\n".join(lines) + "\n}\n")
            if noisy:
                # colours were shifted by compression or blended by resizing: map each pixel to the nearest colour
                snippet = (header +
                           "COLOURS = np.array(list(PALETTE), np.float32)\n"
                           "IDS = np.array(list(PALETTE.values()), np.uint8)\n"
                           "def rgb_to_class(mask, max_distance=40.0):\n"
                           "    rgb = np.asarray(mask)[..., :3].astype(np.float32)\n"
                           "    d = np.linalg.norm(rgb[..., None, :] - COLOURS, axis=-1)  # (H, W, colours)\n"
                           "    out = IDS[d.argmin(axis=-1)]\n"
                           "    out[d.min(axis=-1) > max_distance] = 255  # far from every class colour -> ignore\n"
                           "    return out")
            else:
                snippet = (header +
                           "def rgb_to_class(mask):\n"
                           "    rgb = np.asarray(mask)[..., :3].astype(np.int32)\n"
                           "    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]\n"
                           "    out = np.full(packed.shape, 255, np.uint8)  # unknown colours -> 255, ignored in the loss\n"
                           "    for (r, g, b), class_id in PALETTE.items():\n"
                           "        out[packed == (r << 16) | (g << 8) | b] = class_id\n"
                           "    return out")
            other = sum(n for c, (n, _, _) in s.colour_table.items() if c not in set(s.class_colours))
            total_px = sum(n for n, _, _ in s.colour_table.values())
            ev = {"masks_colour_coded": len(colour), "masks": total, "class_colours": len(rows),
                  "palette": "Pascal VOC" if is_voc else "inferred (black = 0, then by pixel share)",
                  "table": "; ".join(f"{c} -> {i}" for c, i, _ in rows[:24]),
                  # the repair (segdoctor fix): [r, g, b, id] for every class colour; colours further than
                  # max_colour_distance from all of them (0: any colour not in the table) become 255
                  "colour_table": [[int(c[0]), int(c[1]), int(c[2]), int(i)] for c, i, _ in rows],
                  "max_colour_distance": 40.0 if noisy else 0.0}
            if void:
                ev["void_colour"] = f"{VOC_VOID_COLOUR} -> 255 (ignore)"
            if other:
                ev["pixels_in_stray_colours"] = round(other / total_px, 4)
            void_note = (f" The void colour {VOC_VOID_COLOUR} (object borders) maps to 255: ignore it in the loss "
                         "with ignore_class=255.") if void else ""
            yield self.finding(
                title=f"{of(len(colour), total)} masks encode classes as RGB colours ({len(rows)} colours"
                      + (", Pascal VOC palette" if is_voc else "") + ")",
                evidence=ev,
                why="Losses need one class id per pixel; colours must be mapped to ids first, or the model trains on "
                    "three meaningless channels." + void_note,
                fix="Map every colour to its class id with this table when loading, or convert the masks once and "
                    "store them as single-channel PNG." + void_note,
                snippet=snippet,
                files=[ctx.dataset.display(p.mask) for p in colour],
                figures=[Figure("bar", "Pixels per mask colour", {
                    "labels": [f"{c}" for c, _, _ in rows], "values": [s.colour_table.get((c[0] << 16) | (c[1] << 8) | c[2], [0])[0] for c, _, _ in rows],
                    "ylabel": "pixels", "log": True}), example_pairs(colour, "Colour-coded masks")],
            )


@register
class MaskJpegArtifacts(Check):
    """Lossy-compressed masks: values clustered near the class values (e.g. 0..8 and 247..255), or .jpg masks.

    *Why it matters*: JPEG changes label values along every boundary (and, at low quality, everywhere): ids no
    longer match classes, ``mask == 255`` misses the object's edge, and sparse losses see ids that do not exist.

    *How to fix*: re-export the masks as PNG from the source; meanwhile snap every pixel to the nearest class value
    (binary: threshold at half the foreground value).

    Fires for masks stored as JPEG/WebP (error when artefacts are measurable, warning otherwise), and for other
    formats when the boundary-only values cluster within 10% of the class gap of a class value (≥ 70% of them).
    """

    code = "SD105"
    name = "mask-jpeg-artifacts"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        total = ctx.n_masks
        lossy_files = [p for p, _, info in ctx.masks() if info.get("lossy")]
        flagged = {f.index: f for f in s.per_mask if f.lossy_like}
        colour_flagged = {f.index: f for f in s.per_colour_mask if f.lossy_like}
        affected = list(dict.fromkeys([*lossy_files, *(ctx.dataset.pairs[i] for i in (*flagged, *colour_flagged))]))
        if not affected:
            return
        measurable = [f for f in flagged.values() if f.artefact_pixels > 0]
        colour_measurable = [f for f in colour_flagged.values() if f.near_pixels > 0]
        stray_px = sum(f.artefact_pixels for f in measurable) + sum(f.stray_pixels for f in colour_measurable)
        near_px = sum(f.near_pixels for f in measurable) + sum(f.near_pixels for f in colour_measurable)
        total_px = sum(f.total_pixels for f in (*measurable, *colour_measurable)) or 1
        severity = Severity.ERROR if (measurable or colour_measurable) else Severity.WARNING
        where = []
        if measurable:
            where.append(f"stray values near the class values {self._classes(s)} in {plural(len(measurable), 'mask')}")
        if colour_measurable:
            where.append(f"colours shifted off the {plural(len(s.class_colours), 'class colour')} in "
                         f"{plural(len(colour_measurable), 'colour mask')}")
        if lossy_files:
            title = f"{of(len(lossy_files), total)} masks are stored as JPEG"
            title += (": " + "; ".join(where)) if where else " (no artefacts measured in these files, but the format is lossy)"
        else:
            title = f"{of(len(affected), total)} masks carry lossy compression artefacts: " + "; ".join(where)
        evidence = {"masks_lossy_format": len(lossy_files), "masks_with_stray_values": len(measurable) + len(colour_measurable),
                    "masks": total, "stray_pixel_share_in_those_masks": round(stray_px / total_px, 5),
                    "stray_near_class_share": round(near_px / stray_px, 3) if stray_px else 0.0}
        if s.class_values:
            evidence.update({"class_values": self._classes(s), "stray_values": self._artefact_ranges(s)})
        if colour_measurable:
            evidence["class_colours"] = ", ".join(str(unpack_rgb(c)) for c in s.class_colours[:12])
        # the repair (segdoctor fix): every pixel to the nearest of these values (grey) or colours (colour masks)
        evidence["snap_values"] = [_plain(v) for v in s.class_values]
        if s.class_colours:
            evidence["snap_colours"] = [list(unpack_rgb(c)) for c in s.class_colours]
        if colour_measurable and not measurable:
            snippet = ("# map every pixel to the nearest class colour (the SD104 table gives the ids)\n"
                       f"CLASS_COLOURS = np.array({[list(unpack_rgb(c)) for c in s.class_colours[:24]]}, np.float32)\n"
                       "nearest = np.linalg.norm(mask[..., None, :3].astype(np.float32) - CLASS_COLOURS, axis=-1).argmin(-1)\n"
                       "clean_rgb = CLASS_COLOURS[nearest].astype(np.uint8)")
        else:
            snippet = _round_to_classes_snippet(s.class_values or [0, 255])
        yield self.finding(
            title=title,
            severity=severity,
            evidence=evidence,
            why="Compression changes label values along every boundary: ids stop matching classes, comparisons such as "
                "mask == 255 miss object edges, and sparse losses see ids that do not exist.",
            fix="Re-export the masks as PNG from their source; until then, snap each pixel to the nearest class value.",
            snippet=snippet,
            files=[ctx.dataset.display(p.mask) for p in affected],
            figures=[example_pairs(affected, "Lossy masks")],
        )

    @staticmethod
    def _classes(s: LabelSummary) -> str:
        return "{" + ", ".join(str(c) for c in s.class_values[:12]) + ("…" if len(s.class_values) > 12 else "") + "}"

    @staticmethod
    def _artefact_ranges(s: LabelSummary) -> str:
        vals = [int(v) for v in s.artefact_values if float(v).is_integer()]
        if not vals:
            return "none"
        runs, start, prev = [], vals[0], vals[0]
        for v in vals[1:]:
            if v != prev + 1:
                runs.append((start, prev))
                start = v
            prev = v
        runs.append((start, prev))
        return ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs[:8]) + (" …" if len(runs) > 8 else "")


@register
class MaskInterpolated(Check):
    """Intermediate values on class boundaries: masks resized with bilinear/bicubic interpolation, or soft float masks.

    *Why it matters*: interpolation invents values between classes along every edge (0 → 255 becomes 0, 64,
    128, 191, 255; ids 0 and 4 produce 1, 2, 3 — real but wrong classes). Binary losses see fractional
    targets, sparse losses see the wrong classes, and boundaries blur by a pixel or two.

    *How to fix*: resize masks with nearest-neighbour (``tf.image.resize(..., method="nearest")``,
    ``cv2.INTER_NEAREST``, ``Image.NEAREST``); to repair existing masks, snap to the nearest class value.

    Fires per mask when more than 6% of boundary pixels lie strictly between their four neighbours' min and
    max (clean masks: ≤ 2%, Cityscapes train ids; resized masks 18–41%) and more than 8% lie on a monotone
    ramp between two opposite neighbours (clean, even 4x nearest-downsampled multi-class crops: ≤ 4.5%;
    resized: 12–41%), unless the stray values cluster near class values (compression, SD105); for colour
    masks, when most stray colours lie on the segment between two class colours; and for float masks
    holding fractional values.
    """

    code = "SD106"
    name = "mask-interpolated"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        total = ctx.n_masks
        soft = [p for p, _, info in ctx.masks() if info.get("float_soft")]
        flagged = [f for f in s.per_mask if f.interpolated]
        colour_flagged = [f for f in s.per_colour_mask if f.interpolated]
        if not flagged and not soft and not colour_flagged:
            return
        boundary = sum(f.boundary_pixels for f in flagged)
        ratio = sum(f.between_pixels for f in flagged) / boundary if boundary else 0.0
        interpolated = bool(flagged)
        affected = list(dict.fromkeys([*soft, *(ctx.dataset.pairs[f.index] for f in (*flagged, *colour_flagged))]))
        blend_px = sum(f.blend_pixels for f in colour_flagged)
        colour_px = sum(f.total_pixels for f in colour_flagged)
        n_between_values = len({v for f in flagged for v in f.values} & set(s.artefact_values))
        if colour_flagged and not interpolated and not soft:
            title = (f"{of(len(affected), total)} colour masks have blended colours along class boundaries "
                     f"({blend_px / max(colour_px, 1):.1%} of pixels): resized with interpolation")
        elif soft and not interpolated:
            title = f"{of(len(soft), total)} masks hold fractional float values (soft or interpolated labels)"
        elif n_between_values:
            title = (f"{of(len(affected), total)} masks have {plural(n_between_values, 'intermediate value')} on class boundaries "
                     f"(resized with interpolation)")
        else:
            title = (f"{of(len(affected), total)} masks have ramps of in-between class ids along boundaries "
                     f"({ratio:.0%} of boundary pixels): resized with interpolation")
        classes = s.class_values or [0, 1]
        yield self.finding(
            title=title,
            evidence={"boundary_pixels_between_neighbours": round(ratio, 4), "clean_masks_at_most": 0.014,
                      "intermediate_values": n_between_values, "class_values": ", ".join(str(c) for c in classes[:16]),
                      "masks_affected": len(affected), "masks": total, "float_soft_masks": len(soft),
                      **({"colour_masks_with_blends": len(colour_flagged),
                          "blended_pixel_share": round(blend_px / max(colour_px, 1), 4)} if colour_flagged else {}),
                      # the repair (segdoctor fix): every pixel to the nearest class value, or class colour
                      "snap_values": [_plain(v) for v in s.class_values],
                      **({"snap_colours": [list(unpack_rgb(c)) for c in s.class_colours]} if s.class_colours else {})},
            why="Interpolation invents values between classes along every edge: binary losses see fractional targets, "
                "sparse losses see wrong classes, and object boundaries blur.",
            fix="Resize masks with nearest-neighbour interpolation everywhere (data preparation and augmentation); "
                "repair the existing masks by snapping to the nearest class value.",
            snippet=("mask = tf.image.resize(mask, (height, width), method='nearest')      # TensorFlow\n"
                     "mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)  # OpenCV\n"
                     "mask = mask_pil.resize((width, height), resample=Image.NEAREST)        # Pillow\n\n"
                     + _round_to_classes_snippet(classes)),
            files=[ctx.dataset.display(p.mask) for p in affected],
            figures=[example_pairs(affected, "Masks with interpolated boundaries")],
        )


@register
class MaskUnexpectedLabels(Check):
    """Values outside the declared classes (``--num-classes K``), more distinct values than a label map can hold, or NaN/Inf.

    *Why it matters*: a sparse loss given an id ≥ K reads out of range (NaN loss or a crash on GPU); a NaN label
    makes the loss NaN; a mask with thousands of values is not a label map (probabilities, instance ids, or an
    image saved as a mask). Negative ids are outside 0..K-1 for every K: {-1, 1} masks (a sign-coded binary
    label) or a background stored as -1 give negative, unbounded losses.

    *How to fix*: remap the ids, fix K, or convert instance ids to class ids (Cityscapes: ``ids // 1000``).

    Negative values that fill regions fire without ``--num-classes``; a -1 that lies along object borders beside
    ids from 0 and covers under half of the pixels is the void label (SD103) instead. Stored values are read as
    they are (uint32 and int8 TIFF samples included), never wrapped.
    """

    code = "SD107"
    name = "mask-unexpected-labels"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        k = ctx.options.num_classes
        total = ctx.n_masks
        nonfinite = [(p, info["nonfinite"]) for p, _, info in ctx.masks() if info.get("nonfinite")]
        if nonfinite:
            yield self.finding(
                title=f"{of(len(nonfinite), total)} masks hold NaN or Inf values",
                evidence={"masks_with_nan_or_inf": len(nonfinite), "masks": total,
                          "nan_or_inf_pixels": sum(n for _, n in nonfinite)},
                why="A NaN or Inf target makes the loss NaN for the whole batch, and the weights with it.",
                fix="Find where these masks were computed and replace the NaN/Inf pixels (with background or void).",
                snippet="mask = np.nan_to_num(mask, nan=0.0, posinf=0.0, neginf=0.0)",
                files=[ctx.dataset.display(p.mask) for p, _ in nonfinite],
            )
        void = _void_value(s, k)
        negative = [c for c in s.class_values if c != void and c < 0]
        if negative:
            yield _negative_ids_finding(self, ctx, s, negative, total)
        if k is not None:
            bad_vals = [c for c in s.class_values if c != void and c >= k]
            if bad_vals:
                files = [ctx.dataset.display(p.mask) for p, _, info in ctx.masks()
                         if "values" in info and set(info["values"]["values"].tolist()) & set(bad_vals)]
                counts = {f"value {v}": s.value_table[v][0] for v in bad_vals[:12]}
                yield self.finding(
                    title=f"{plural(len(files), 'mask')} hold ids outside 0..{k - 1}: {', '.join(map(str, bad_vals[:8]))}",
                    evidence={"num_classes": k, "class_values_found": ", ".join(map(str, s.class_values[:24])), **counts},
                    why=f"A sparse loss with {k} outputs reads out of range for these ids: NaN losses, or a crash on GPU.",
                    fix=f"Remap these ids into 0..{k - 1}, mark them as void (ignore_class), or correct --num-classes.",
                    files=files,
                )
        # Boundary artefacts (resizing, JPEG) add values without making a mask less of a label map, unless they are
        # most of the pixels: then nothing fills regions and the file is an image or a probability map.
        mostly_artefacts = bool(s.artefact_values) and (not s.class_values or s.artefact_share > 0.5)
        distinct = max(len(s.class_values),
                       s.max_distinct_per_mask if (not s.artefact_values or mostly_artefacts) else len(s.class_values))
        if distinct > MAX_PLAUSIBLE_CLASSES or s.truncated_masks:
            big = max(s.class_values) if s.class_values else 0
            hint = (" Values above 1000 look like instance ids (class * 1000 + instance): use ids // 1000."
                    if isinstance(big, (int, np.integer)) and big > 1000 else "")
            files = [ctx.dataset.display(p.mask) for p, _, info in ctx.masks()
                     if "values" in info and info["values"]["n_distinct"] > MAX_PLAUSIBLE_CLASSES]
            yield self.finding(
                title=f"Masks hold {s.max_distinct_per_mask:,} distinct values (at most {MAX_PLAUSIBLE_CLASSES} expected for a label map)",
                evidence={"max_distinct_values_in_a_mask": s.max_distinct_per_mask,
                          "class_like_values": len(s.class_values), "masks": total, "largest_value": big},
                why="These files are not label maps (probabilities, instance ids or images saved as masks); any loss "
                    "reads them as hundreds of classes." + hint,
                fix="Point segdoctor (and the training loader) at the label files, or convert these values to class ids."
                    + hint,
                files=files or [ctx.dataset.display(p.mask) for p, _, _ in ctx.masks()][:50],
            )


def _negative_ids_finding(check: Check, ctx: DataContext, s: LabelSummary, negative: list, total: int) -> Finding:
    values = [int(c) for c in s.class_values]
    files = [ctx.dataset.display(p.mask) for p, _, info in ctx.masks()
             if "values" in info and set(info["values"]["values"].tolist()) & set(negative)]
    share = sum(s.share(c) for c in negative)
    binary_pm = sorted(values) == [-1, 1]
    as_background = s.share(min(values)) >= 0.5
    shown = ", ".join(map(str, values[:12]))
    if binary_pm:
        snippet = "mask = (np.asarray(mask) > 0).astype('uint8')   # -1 (background) -> 0, 1 (foreground) -> 1"
    else:
        snippet = ("import numpy as np\n"
                   f"CLASS_VALUES = np.array([{shown}])   # the ids found, in order\n"
                   f"mask = np.searchsorted(CLASS_VALUES, mask).astype('uint8')   # -> 0..{len(values) - 1}")
    return check.finding(
        title=(f"{plural(len(files), 'mask')} {'holds' if len(files) == 1 else 'hold'} negative class ids "
               f"{{{', '.join(map(str, negative[:8]))}}} ({share:.1%} of pixels"
               + (", the background" if as_background else "") + f"); ids found: {{{shown}}}"),
        evidence={"negative_ids": ", ".join(map(str, negative)), "class_values_found": shown,
                  "negative_pixel_share": round(share, 4), "masks_with_negative_ids": len(files), "masks": total},
        why=("Class ids index the output channels from 0: sparse cross-entropy fails on a negative id (NaN, or an "
             "error on GPU), and binary cross-entropy or Dice with a -1 target are negative and unbounded."
             + (" {-1, 1} is the sign encoding of a binary label, not a class map." if binary_pm else "")),
        fix=(f"Remap the ids to 0..{len(values) - 1} when loading (the snippet maps them in sorted order); if the "
             "negative value marks pixels to ignore, pass it as ignore_class instead."),
        snippet=snippet,
        files=files,
    )


@register
class MaskEmpty(Check):
    """Masks that hold only background; an error when every mask is empty.

    *Why it matters*: an all-empty dataset cannot teach anything (often the result of dividing class ids by 255
    and casting). Many empty masks push the model towards blank predictions, and per-image Dice of an empty mask
    is 0/0: with a smooth term of 1 a blank prediction scores a perfect 1.0, which inflates Dice.

    *How to fix*: check the loading code when all are empty; otherwise keep the empty masks but balance batches
    (oversample images with foreground) and report Dice over images with foreground separately.

    Severity: error when all masks are empty, warning when ≥ 20% are, info below that.
    """

    code = "SD108"
    name = "mask-empty"
    severity = Severity.WARNING
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        void = _void_value(s, ctx.options.num_classes)
        classes = [c for c in s.class_values if c != void]
        if not classes and not s.class_colours:
            return
        background = 0 if 0 in classes or not classes else min(classes)
        empty, total = [], 0
        art = set(s.artefact_values)
        for pair, _, info in ctx.masks():
            total += 1
            if "values" in info:
                vals = set(info["values"]["values"].tolist()) - art - ({void} if void is not None else set())
                if vals <= {background}:
                    empty.append(pair)
            elif "colours" in info:
                cols = set(info["colours"]["values"].tolist()) & set(s.class_colours)
                if cols <= {0}:
                    empty.append(pair)
        if not empty or total == 0:
            return
        share = len(empty) / total
        sev = Severity.ERROR if len(empty) == total else (Severity.WARNING if share >= 0.2 else Severity.INFO)
        yield self.finding(
            title=f"{of(len(empty), total)} masks are empty (background {background} only)",
            severity=sev,
            evidence={"empty_masks": len(empty), "masks": total, "share": round(share, 4), "background_value": background},
            why=("Every mask is empty: nothing can be learnt (often masks divided by 255 and cast to integers)."
                 if sev is Severity.ERROR else
                 "Empty masks push the model towards blank predictions, and their per-image Dice is 0/0: with a smooth "
                 "term a blank prediction scores 1.0 on them, which inflates the mean Dice."),
            fix=("Check how the masks were written and loaded (a division by 255 before a cast to int zeroes them)."
                 if sev is Severity.ERROR else
                 "Keep them, but oversample images with foreground and report Dice on images with foreground separately."),
            snippet=None if sev is Severity.ERROR else (
                "# oversample pairs with foreground to about half of each batch\n"
                "has_fg = dataset.filter(lambda x, y: tf.reduce_any(y > 0))\n"
                "empty = dataset.filter(lambda x, y: tf.logical_not(tf.reduce_any(y > 0)))\n"
                "balanced = tf.data.Dataset.sample_from_datasets([has_fg.repeat(), empty.repeat()], weights=[0.5, 0.5])"),
            files=[ctx.dataset.display(p.mask) for p in empty],
        )


@register
class MaskPaletteMode(Check):
    """Palette ('P') PNG masks: the pixel values are class indices, fine when read without conversion.

    *Why it matters*: ``Image.open(p).convert('RGB')`` turns indices into colours, and ``tf.io.decode_png`` expands
    palette PNGs to RGB too: either silently replaces ids by colours.

    *How to fix*: read the indices with ``np.array(Image.open(path))`` (no ``convert``), e.g. through
    ``tf.numpy_function`` in a tf.data pipeline.
    """

    code = "SD109"
    name = "mask-palette-mode"
    severity = Severity.INFO
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        s = ctx.labels
        n = sum(s.palette_kinds.values())
        if not n:
            return
        total = ctx.n_masks
        files = [ctx.dataset.display(p.mask) for p, _, info in ctx.masks() if info.get("palette")]
        voc = s.palette_kinds.get("voc", 0)
        yield self.finding(
            title=f"{of(n, total)} masks are palette PNGs" + (" with the Pascal VOC palette" if voc else "")
                  + f"; indices {{{', '.join(str(c) for c in s.class_values[:12])}}} are read correctly",
            evidence={"palette_masks": n, "voc_palette": voc, "class_indices": ", ".join(str(c) for c in s.class_values[:24])},
            why="Palette PNGs store class indices plus a colour table; converting to RGB (PIL .convert('RGB') or "
                "tf.io.decode_png) replaces the indices by colours.",
            fix="Read the indices directly, without converting the image.",
            snippet=("mask = np.array(Image.open(mask_path))   # palette indices, shape (H, W)\n"
                     "# in tf.data (tf.io.decode_png would expand the palette to RGB):\n"
                     "mask = tf.numpy_function(lambda p: np.array(Image.open(p.decode())), [mask_path], tf.uint8)"),
            files=files,
        )
