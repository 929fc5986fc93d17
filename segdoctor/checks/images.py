"""Image value checks: SD201 image-range (one normalisation for all), SD202 image-constant (and NaN/Inf),
SD203 image-exif-rotation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np

from segdoctor.findings import Figure, Finding, Severity
from segdoctor.registry import Check, register

#: value conventions that share one divisor; a dataset mixing families cannot be normalised by one constant
FAMILY = {
    "uint8 0-255": "8-bit scale",
    "uint16 with 8-bit content": "8-bit scale",
    "float 0-255": "8-bit scale",
    "float 0-1": "unit scale",
    "float -1-1": "unit scale",
    "uint16 12-bit": "16-bit integers",
    "uint16 16-bit": "16-bit integers",
    "float other": "other floats",
    "signed integer": "signed integers",
    "integer other": "other integers",
    # batch images of a data pipeline (segdoctor.stats.pipeline.finalise_image_kinds): standardised floats share the
    # unit family (one preprocessing function), floats on an 8-bit scale the 8-bit family
    "float standardised": "unit scale",
    "float 8-bit scale": "8-bit scale",
}

EXIF_MEANING = {
    2: "mirrored horizontally", 3: "rotated 180 degrees", 4: "mirrored vertically",
    5: "transposed", 6: "rotated 90 degrees clockwise", 7: "transverse", 8: "rotated 90 degrees counter-clockwise",
}


def _image_rows(ctx):
    """(pair, image_stats, image_info) for every decoded image."""
    for pair, rec in ctx.items():
        stats, info = rec.get("image_stats"), rec.get("image_info")
        if stats is not None and info is not None:
            yield pair, stats, info


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def normalisation_snippet(kinds: Counter, stats_by_kind: dict) -> str:
    """A ``normalise(image)`` function mapping every image of the dataset to float32 [0, 1]."""
    lines = [
        "import numpy as np",
        "",
        "def normalise(image: np.ndarray) -> np.ndarray:",
        "    \"\"\"Map every image of this dataset to float32 in [0, 1]; use it for training and inference alike.\"\"\"",
        "    x = np.asarray(image, dtype=np.float32)",
    ]
    u16 = [k for k in kinds if k.startswith("uint16")]
    if "uint8 0-255" in kinds:
        lines += [f"    if image.dtype == np.uint8:  # {kinds['uint8 0-255']} images", "        return x / 255.0"]
    if u16:
        desc = ", ".join(f"{kinds[k]} {k.replace('uint16 ', '')}" for k in u16)
        lines.append(f"    if image.dtype == np.uint16:  # {desc}")
        if len(u16) == 1:
            div = {"uint16 with 8-bit content": "255.0", "uint16 12-bit": "4095.0", "uint16 16-bit": "65535.0"}[u16[0]]
            lines.append(f"        return x / {div}")
        else:
            # Several contents in one dtype. A per-file divisor chosen from the values would stretch dim
            # images, so keep the sensor's full scale and re-export the files that hold 8-bit values.
            div = "65535.0" if "uint16 16-bit" in kinds else "4095.0"
            if "uint16 with 8-bit content" in kinds:
                lines.append(f"        # {kinds['uint16 with 8-bit content']} files hold 8-bit values (max <= 255): "
                             "re-export them as 8-bit, or divide those by 255")
            lines.append(f"        return x / {div}")
    floats = [k for k in kinds if k.startswith("float")]
    if floats:
        lo = min(stats_by_kind[k][0] for k in floats)
        hi = max(stats_by_kind[k][1] for k in floats)
        lines.append("    x = np.nan_to_num(x)  # NaN/Inf would poison every gradient (see SD202)")
        if set(floats) <= {"float 0-1"}:
            lines.append(f"    return np.clip(x, 0.0, 1.0)  # {sum(kinds[k] for k in floats)} float images already in [0, 1]")
        elif set(floats) <= {"float 0-1", "float -1-1"}:
            lines.append("    return (np.clip(x, -1.0, 1.0) + 1.0) / 2.0  # float images in [-1, 1]")
        elif set(floats) <= {"float 0-1", "float 0-255"} and "float 0-255" in floats:
            lines += ["    # float images: some in [0, 1], some in [0, 255]: tell them apart by their maximum",
                      "    return x / 255.0 if float(x.max()) > 1.0 else x"]
        else:
            lines += [f"    # float images span [{_fmt(lo)}, {_fmt(hi)}] across the dataset: one fixed window for all",
                      f"    return np.clip((x - ({_fmt(lo)})) / ({_fmt(hi - lo)}), 0.0, 1.0)"]
    ints = [k for k in kinds if k in ("signed integer", "integer other")]
    if ints:
        lo = min(stats_by_kind[k][0] for k in ints)
        hi = max(stats_by_kind[k][1] for k in ints)
        lines += [f"    # other integer images span [{_fmt(lo)}, {_fmt(hi)}]: one fixed window for all",
                  f"    return np.clip((x - ({_fmt(lo)})) / ({_fmt(max(hi - lo, 1))}), 0.0, 1.0)"]
    if not floats and not ints:
        lines.append("    raise TypeError(f\"unexpected image dtype {image.dtype}\")")
    return "\n".join(lines) + "\n"


@register
class ImageRange(Check):
    """Images do not share one value range: no single normalisation makes them comparable.

    *Why it matters*: a network sees raw numbers. If some images arrive in 0-255 and others in 0-1,
    or 16-bit files hold 8-bit content (after ``/ 65535`` they are almost black), or floats are
    standardised in some files and not in others, the same tissue or object gets inputs that differ by
    orders of magnitude and the model learns the storage format instead of the content.

    *How to fix*: apply one ``normalise`` function to every image, for training and inference alike
    (the snippet is written for the conventions found), or better re-export the images in one format.

    Detection: each image gets a convention from its dtype and actual min/max: uint8 0-255; uint16 with
    8-bit content (max <= 255), 12-bit (max <= 4095) or 16-bit; float in [0, 1], [-1, 1], [0, 255] or
    other; signed integers. Conventions are grouped into families sharing one divisor (8-bit scale,
    unit scale, 16-bit integers, other). Error when the dataset mixes families (uint8 beside float
    0-1, floats beside 16-bit integers ...); warning when uint16 files with 8-bit content sit beside
    deeper 16-bit files (a very dim image can look the same), or when all images agree but are stored
    unusually (uint16 with 8-bit content, floats outside [0, 1] and [-1, 1]). 12-bit and 16-bit
    contents of uint16 files count as one convention. Calibrated on ../shared/realdata, whose sets are all uint8 and
    stay quiet.
    """

    code = "SD201"
    name = "image-range"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx) -> Iterator[Finding]:
        kinds: Counter = Counter()
        files_by_kind: dict[str, list[str]] = {}
        stats_by_kind: dict[str, list[float]] = {}
        for pair, s, _ in _image_rows(ctx):
            k = s["range_kind"]
            kinds[k] += 1
            files_by_kind.setdefault(k, []).append(ctx.display(pair, "image"))
            lo_hi = stats_by_kind.setdefault(k, [np.inf, -np.inf])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], s["min"]), max(lo_hi[1], s["max"])
        if not kinds:
            return
        n = sum(kinds.values())
        u16_kinds = [k for k in kinds if k.startswith("uint16")]

        def family(k: str) -> str:
            # 8-bit content beside deeper uint16 files is judged with them (mixed_u16 below), not as a family mix
            if k == "uint16 with 8-bit content" and len(u16_kinds) > 1:
                return "16-bit integers"
            return FAMILY.get(k, k)

        families: Counter = Counter()
        for k, c in kinds.items():
            families[family(k)] += c
        mixed_families = len(families) > 1
        mixed_u16 = "uint16 with 8-bit content" in kinds and len(u16_kinds) > 1
        unusual = [k for k in kinds if k in ("uint16 with 8-bit content", "float 0-255", "float other")]
        if not (mixed_families or mixed_u16 or unusual):
            return
        severity = Severity.ERROR if mixed_families else Severity.WARNING
        major = families.most_common(1)[0][0]
        if mixed_families:
            odd = n - families[major]
            title = (f"{odd} of {n} images do not use the dataset's main value range ({major}): "
                     + ", ".join(f"{c} {k}" for k, c in kinds.most_common()))
            odd_kinds = [k for k in kinds if family(k) != major]
        elif mixed_u16:
            title = (f"{kinds['uint16 with 8-bit content']} of {sum(kinds[k] for k in u16_kinds)} 16-bit images hold "
                     "only 8-bit values (max <= 255) while the others use more: "
                     + ", ".join(f"{kinds[k]} {k.replace('uint16 ', '')}" for k in u16_kinds))
            odd_kinds = ["uint16 with 8-bit content"]
        else:
            title = f"{sum(kinds[k] for k in unusual)} of {n} images are stored as " + ", ".join(
                f"{k} ({kinds[k]})" for k in unusual)
            odd_kinds = unusual
        files = [f for k in odd_kinds for f in files_by_kind[k]]
        evidence: dict = {"images": n, "families": len(families)}
        for k, c in kinds.most_common():
            evidence[f"images[{k}]"] = c
            evidence[f"min[{k}]"] = round(float(stats_by_kind[k][0]), 6)
            evidence[f"max[{k}]"] = round(float(stats_by_kind[k][1]), 6)
        snippet = normalisation_snippet(kinds, stats_by_kind)
        why = ("The network sees raw numbers: images in different ranges give the same content inputs that differ "
               "by orders of magnitude, so it learns the storage format instead of the content.")
        if "uint16 with 8-bit content" in kinds:
            why += " 16-bit files holding 8-bit values become nearly black after dividing by 65535."
        yield self.finding(
            title=title,
            evidence=evidence,
            why=why,
            fix="Normalise every image with the one function below (training and inference), or re-export all "
                "images in one format.",
            snippet=snippet,
            files=files,
            figures=[Figure("bar", "Images per value convention",
                            {"labels": [k for k, _ in kinds.most_common()], "values": [c for _, c in kinds.most_common()],
                             "ylabel": "images", "highlight": odd_kinds})],
            severity=severity,
        )


@register
class ImageConstant(Check):
    """Some images are constant or nearly constant (all black, all white), or contain NaN/Inf values.

    *Why it matters*: a blank image carries no information, yet its mask still asks the network for
    an answer (noise in the gradient); a single NaN or Inf pixel turns the loss into NaN and ends
    training.

    *How to fix*: remove or re-export these files; if NaN marks missing data, replace it with a value
    (``np.nan_to_num``) and mask those pixels out of the loss.

    Thresholds: constant = max equals min; near-constant = the largest per-channel standard deviation
    (on a strided sample) below one stored level for integer images (one grey level in 8 bits, one
    count in 16 bits, so dim fluorescence images are not blank) and below 0.4% of the nominal full
    scale for float images. Real
    images in ../shared/realdata measure 10-28% (ISBI EM 17%, Kvasir 28%, Pascal VOC >= 10%).
    """

    code = "SD202"
    name = "image-constant"
    severity = Severity.ERROR
    scope = "data"

    def run(self, ctx) -> Iterator[Finding]:
        constant, near, nonfinite = [], [], []
        total_nonfinite = 0
        n = 0
        examples = []
        for pair, s, _ in _image_rows(ctx):
            n += 1
            name = ctx.display(pair, "image")
            if s["nonfinite"]:
                nonfinite.append(name)
                total_nonfinite += int(s["nonfinite"])
            if s["constant"]:
                constant.append(name)
            elif s["near_constant"]:
                near.append(name)
            if (s["nonfinite"] or s["near_constant"]) and len(examples) < 4:
                examples.append({"image": str(pair.image), "mask": str(pair.mask) if pair.mask else None,
                                 "caption": f"{name}: min {s['min']:.4g}, max {s['max']:.4g}"})
        if not (constant or near or nonfinite):
            return
        parts = []
        if constant:
            parts.append(f"{len(constant)} constant")
        if near:
            parts.append(f"{len(near)} near-constant")
        if nonfinite:
            parts.append(f"{len(nonfinite)} with NaN/Inf ({total_nonfinite} pixels)")
        files = list(dict.fromkeys(constant + near + nonfinite))
        yield self.finding(
            title=f"{len(files)} of {n} images are unusable: " + ", ".join(parts),
            evidence={"images": n, "constant": len(constant), "near_constant": len(near),
                      "with_nonfinite": len(nonfinite), "nonfinite_pixels": total_nonfinite},
            why=("A blank image gives the network nothing to learn from while its mask still asks for an answer; "
                 "one NaN or Inf pixel makes the loss NaN and ends training."),
            fix="Remove or re-export these files; replace NaN/Inf with a value and mask those pixels out of the loss.",
            snippet=("import numpy as np\n\n"
                     "image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)  # and exclude them from the loss\n"
                     if nonfinite else None),
            files=files,
            figures=[Figure("pairs", "Examples", {"items": examples})] if examples else [],
        )


@register
class ImageExifRotation(Check):
    """Images carry an EXIF orientation tag other than 1: viewers rotate them, numpy readers do not.

    *Why it matters*: the pixels are stored unrotated and the tag asks the reader to rotate them.
    Some loaders honour it (``ImageOps.exif_transpose``, browsers, some augmentation libraries) and
    some do not (``np.array(Image.open(...))``, OpenCV with flags); masks (PNG) rarely carry the tag.
    Image and mask then disagree by a rotation or flip for exactly these files.

    *How to fix*: apply the tag to the pixels once and strip it, for the image and consistently for
    its mask (``ImageOps.exif_transpose``), then check the pair visually; or make every loader ignore it.

    Threshold: any image whose EXIF orientation (tag 0x0112) is not 1.
    """

    code = "SD203"
    name = "image-exif-rotation"
    severity = Severity.WARNING
    scope = "data"

    def run(self, ctx) -> Iterator[Finding]:
        tagged: Counter = Counter()
        files, examples = [], []
        masks_tagged = 0
        n = 0
        for pair, rec in ctx.items():
            info = rec.get("image_info")
            if info is None:
                continue
            n += 1
            o = int(info.get("exif_orientation") or 1)
            if o != 1:
                tagged[o] += 1
                files.append(ctx.display(pair, "image"))
                if int((rec.get("mask_info") or {}).get("exif_orientation") or 1) != 1:
                    masks_tagged += 1
                if len(examples) < 3:
                    examples.append({"image": str(pair.image), "mask": str(pair.mask) if pair.mask else None,
                                     "caption": f"orientation {o}: {EXIF_MEANING.get(o, 'unknown')}"})
        if not tagged:
            return
        k = sum(tagged.values())
        evidence = {"images": n, "tagged": k, "masks_tagged_too": masks_tagged}
        for o, c in sorted(tagged.items()):
            evidence[f"orientation[{o}] {EXIF_MEANING.get(o, 'unknown')}"] = c
        yield self.finding(
            title=f"{k} of {n} images have an EXIF orientation other than 1 ("
                  + ", ".join(f"{c} {EXIF_MEANING.get(o, str(o))}" for o, c in tagged.most_common()) + ")",
            evidence=evidence,
            why=("Some readers rotate these images by the tag and some do not, while the masks are stored without it: "
                 "for these files image and mask can disagree by a rotation or flip depending on the loader."),
            fix="Apply the tag to the pixels once and strip it (image and mask alike), then re-check the pairs.",
            snippet=("from PIL import Image, ImageOps\n\n"
                     "for path in tagged_image_paths:  # the files listed in this finding\n"
                     "    with Image.open(path) as im:\n"
                     "        fixed = ImageOps.exif_transpose(im)  # rotates the pixels, drops the tag\n"
                     "    fixed.save(path.with_suffix('.png'))  # lossless; re-check the mask against it\n"),
            files=files,
            figures=[Figure("pairs", "Tagged images (as stored, before rotation)", {"items": examples})],
            related=("SD252",),
        )
