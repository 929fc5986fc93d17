"""SD0xx: can every file be read and paired, and do images and masks agree in geometry?"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from segdoctor.checks._common import example_pairs, of, plural
from segdoctor.context import DataContext
from segdoctor.findings import Finding, Severity
from segdoctor.registry import Check, register


@register
class UnreadableFile(Check):
    """Files that cannot be decoded: zero bytes, truncated, not an image, unsupported mode.

    *Why it matters*: a loader that hits such a file crashes mid-epoch, or (with a permissive reader)
    silently feeds a black image or an all-background mask to the model. The rest of the scan goes on.

    *How to fix*: re-export the listed files from their source, or remove them together with their pair.
    """

    code = "SD001"
    name = "unreadable-file"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        bad: list[tuple[str, str]] = []
        for pair, rec in ctx.items():
            if rec.get("image_error"):
                bad.append((ctx.dataset.display(pair.image), rec["image_error"]))
            if rec.get("mask_error"):
                bad.append((ctx.dataset.display(pair.mask), rec["mask_error"]))
        if not bad:
            return
        reasons = Counter(r.split(" (")[0] for _, r in bad)
        total = 2 * len(ctx.dataset.pairs)
        yield self.finding(
            title=f"{plural(len(bad), 'file')} cannot be decoded",
            evidence={"unreadable": len(bad), "files_scanned": total,
                      **{f"reason: {r}": n for r, n in reasons.most_common(5)},
                      "first": f"{bad[0][0]}: {bad[0][1]}"},
            why="A loader that reaches one of these files crashes mid-epoch, or silently trains on a blank image or mask.",
            fix="Re-export these files from their source (or delete them and their partner file); the rest of the dataset was analysed.",
            files=[path for path, _ in bad],
            file_details=dict(bad),
        )


@register
class UnpairedImage(Check):
    """Images that have no mask under the pairing rule used.

    *Why it matters*: a training loader usually drops them silently, or worse, pairs the remaining files by
    sort order so every later image gets its neighbour's mask. Error when more than half the images are unpaired
    (the pairing rule, or the folder choice, is probably wrong).

    *How to fix*: add the missing masks, remove the images, or pass ``--images``/``--masks``/``--mask-pattern``
    when discovery chose the wrong folders.
    """

    code = "SD002"
    name = "unpaired-image"
    severity = Severity.WARNING
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        ds = ctx.dataset
        n = len(ds.unpaired_images)
        if not n:
            return
        total = n + len(ds.pairs)
        share = n / total
        yield self.finding(
            title=f"{of(n, total)} images have no mask",
            severity=Severity.ERROR if share > 0.5 else Severity.WARNING,
            evidence={"unpaired_images": n, "images": total, "share": round(share, 4),
                      "pairing_rule": "; ".join(ds.rules), "layout": ds.layout,
                      "example_stems": ", ".join(p.key for p in ds.unpaired_images[:5])},
            why="Training loaders drop such images silently, or pair files by sort order and shift every later mask by one.",
            fix=f"Add masks named like their images (the pairing rule used: {'; '.join(ds.rules)}), remove these images, "
                "or point segdoctor at the right folders with --images/--masks/--mask-pattern.",
            files=[ds.display(p.image) for p in ds.unpaired_images],
        )


@register
class UnpairedMask(Check):
    """Masks that have no image under the pairing rule used.

    *Why it matters*: these labels are never used; when they outnumber the images, the masks are probably named
    differently from the images and the pairing rule should change.

    *How to fix*: add or rename the images, delete the stray masks, or choose the label files with ``--mask-pattern``.
    """

    code = "SD003"
    name = "unpaired-mask"
    severity = Severity.WARNING
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        ds = ctx.dataset
        n = len(ds.unpaired_masks)
        if not n:
            return
        total = n + len(ds.pairs)
        yield self.finding(
            title=f"{of(n, total)} masks have no image",
            evidence={"unpaired_masks": n, "masks": total, "pairing_rule": "; ".join(ds.rules), "layout": ds.layout,
                      "example_stems": ", ".join(p.key for p in ds.unpaired_masks[:5])},
            why="These labels never reach training; many unpaired masks usually mean the images are named differently.",
            fix=f"Rename or add the images (pairing rule used: {'; '.join(ds.rules)}), delete stray masks, "
                "or choose the label files with --mask-pattern.",
            files=[ds.display(p.mask) for p in ds.unpaired_masks],
        )


@register
class ShapeMismatch(Check):
    """Image and mask height/width differ; says when it is a transpose (H, W swapped) or an integer scale.

    *Why it matters*: a loader that resizes both to the model size hides the problem, but the mask is then
    stretched against its image; a loader that does not resize crashes or crops.

    *How to fix*: resize the masks to their images with nearest-neighbour interpolation (never bilinear), or
    transpose the masks that were saved with H and W swapped.
    """

    code = "SD004"
    name = "shape-mismatch"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        bad = []
        transposed = []
        kinds: Counter[str] = Counter()
        for pair, rec in ctx.items():
            ii, mi = rec.get("image_info"), rec.get("mask_info")
            if not ii or not mi:
                continue
            ih, iw, mh, mw = ii["height"], ii["width"], mi["height"], mi["width"]
            if (ih, iw) == (mh, mw):
                continue
            if (ih, iw) == (mw, mh):
                kind = "transposed (H and W swapped)"
            elif mh and mw and ih % mh == 0 and iw % mw == 0 and ih // mh == iw // mw:
                kind = f"mask {ih // mh}x smaller"
            elif ih and iw and mh % ih == 0 and mw % iw == 0 and mh // ih == mw // iw:
                kind = f"mask {mh // ih}x larger"
            else:
                kind = "different size"
            kinds[kind] += 1
            bad.append((pair, f"image {iw}x{ih}, mask {mw}x{mh} ({kind})"))
            if (ih, iw) == (mw, mh):
                transposed.append(pair)
        if not bad:
            return
        total = len(ctx.dataset.pairs)
        top = kinds.most_common(1)[0][0]
        if top.startswith("transposed"):
            fix = "Transpose the listed masks so that they match their images (and fix the code that wrote them)."
            snippet = "mask = np.swapaxes(mask, 0, 1)  # (W, H) -> (H, W), for the listed masks"
        else:
            fix = "Resize each listed mask to its image's size with nearest-neighbour interpolation, never bilinear."
            snippet = ("from PIL import Image\n"
                       "mask = Image.open(mask_path)\n"
                       "mask = mask.resize(Image.open(image_path).size, resample=Image.NEAREST)\n"
                       "# or in TensorFlow: tf.image.resize(mask, size, method='nearest')")
        # "different size" says nothing the title does not; named kinds (transposed, 2x smaller) are worth a count
        named = [f"{n} {k}" for k, n in kinds.most_common() if k != "different size"]
        if named and kinds["different size"]:
            named.append(f"{kinds['different size']} otherwise")
        yield self.finding(
            title=f"{of(len(bad), total)} pairs have image and mask of different sizes" + (f": {', '.join(named)}" if named else ""),
            evidence={"mismatched_pairs": len(bad), "pairs": total, **{k: n for k, n in kinds.most_common(4)},
                      "first": f"{ctx.dataset.display(bad[0][0].mask)}: {bad[0][1]}",
                      # the repair (segdoctor fix) swaps the axes of these masks
                      **({"transposed_masks": [ctx.dataset.display(p.mask) for p in transposed]} if transposed else {})},
            why="Stretching or cropping a mask to its image misplaces every boundary; some loaders crash instead.",
            fix=fix, snippet=snippet,
            files=[ctx.dataset.display(p.mask) for p, _ in bad],
            file_details={ctx.dataset.display(p.mask): d for p, d in bad},
            figures=[example_pairs([p for p, _ in bad], "Pairs whose sizes differ")],
        )


@register
class InconsistentImages(Check):
    """Images differ in channel count (gray/RGB/RGBA), dtype or bit depth across the dataset.

    *Why it matters*: a model built for 3 channels gets 1 or 4 for some files (a crash or a silent broadcast),
    and 8-bit and 16-bit images normalised with one constant differ by a factor of 257.

    *How to fix*: convert every image to one mode when loading (the code is in the finding), and report the
    counts per mode so the odd ones can be re-exported.
    """

    code = "SD005"
    name = "inconsistent-images"
    severity = Severity.WARNING
    scope = "data"

    def run(self, ctx: DataContext) -> Iterator[Finding]:
        groups: dict[tuple, list] = {}
        for pair, _, ii in ctx.images():
            key = (ii["channels"], ii["dtype"], ii["bits"])
            groups.setdefault(key, []).append(pair)
        if len(groups) < 2:
            return
        ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        (main_ch, main_dtype, main_bits), main = ordered[0]
        odd = [p for _, ps in ordered[1:] for p in ps]
        names = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}
        desc = {f"{names.get(k[0], str(k[0]) + '-channel')} {k[1]} ({k[2]}-bit)": len(v) for k, v in ordered}
        target = names.get(main_ch, "RGB")
        convert = {"gray": "L", "RGB": "RGB", "RGBA": "RGBA", "gray+alpha": "LA"}.get(target, "RGB")
        snippet = (f"from PIL import Image\nimport numpy as np\n\n"
                   f"def load_image(path):\n"
                   f"    im = Image.open(path)\n"
                   f"    if im.mode in ('I;16', 'I;16B', 'I'):\n"
                   f"        a = np.asarray(im, dtype=np.float32) / 65535.0   # 16-bit\n"
                   f"        return a if {main_ch} == 1 else np.repeat(a[..., None], {main_ch}, axis=-1)\n"
                   f"    return np.asarray(im.convert('{convert}'), dtype=np.float32) / 255.0")
        yield self.finding(
            title=f"Images are stored in {len(groups)} different modes; {of(len(odd), len(odd) + len(main))} differ from the most common ({target}, {main_dtype})",
            evidence=desc,
            why="A model built for one channel count breaks or silently broadcasts on the others, and one normalisation "
                "constant cannot serve 8-bit and 16-bit images.",
            fix=f"Convert every image to {target} {main_dtype} when loading (or re-export the odd ones).",
            snippet=snippet,
            files=[ctx.dataset.display(p.image) for p in odd],
        )
