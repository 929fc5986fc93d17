"""Dataset discovery and image/mask pairing.

Recognises the common layouts (``images/``+``masks/`` and their synonyms, split folders, Pascal VOC,
Cityscapes, masks beside images with a suffix, Carvana's ``train``+``train_masks``) and pairs files by
stem, by a consistent suffix, or by a shared numeric id, recording which rule paired them.
Unpaired files are kept and reported, never dropped silently.
"""

from __future__ import annotations

import fnmatch
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from segdoctor.errors import DatasetError
from segdoctor.io.readers import IMAGE_EXTENSIONS
from segdoctor.io.remote import RemotePath, is_url

SPLIT_NAMES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test",
    "trainval": "trainval",
}

# Folder-name words. A pair of sibling folders matches when swapping one image word for one mask
# word turns one name into the other (images_prepped_train -> annotations_prepped_train).
IMAGE_WORDS = ("images", "image", "imgs", "img", "x", "inputs", "input", "jpegimages", "leftimg8bit", "rgb",
               "photos", "photo", "frames", "raw", "originals", "original", "data", "scans", "slices", "tiles")
MASK_WORDS = ("masks", "mask", "labels", "label", "annotations", "annotation", "ann", "anns", "annot", "gt",
              "groundtruth", "ground", "segmentationclass", "segmentationclassaug", "segmentationclassraw",
              "segmentation", "segmentations", "seg", "segs", "y", "targets", "target", "gtfine", "gtcoarse",
              "trimaps", "trimap", "manual", "1st", "lbl", "lbls", "truth", "labelmaps", "labelmap")
# whole-name pairs that share no word
NAMED_PAIRS = {("jpegimages", "segmentationclass"), ("jpegimages", "segmentationclassaug"),
               ("jpegimages", "segmentationclassraw"), ("leftimg8bit", "gtfine"), ("leftimg8bit", "gtcoarse"),
               ("jpegimages", "segmentationobject")}

MASK_SUFFIX_RE = re.compile(
    r"(?:[_\-. ](?:gtfine|gtcoarse))?[_\-. ](?:mask|masks|seg|segmentation|label|labels|labelids|labeltrainids|"
    r"instanceids|color|gt|target|targets|annotation|annot|ann|lbl|trimap|manual\d*|groundtruth|truth|"
    r"segmentationclass)$",
    re.IGNORECASE,
)
IMAGE_SUFFIX_RE = re.compile(
    r"[_\-. ](?:image|img|im|rgb|input|leftimg8bit|sat|training|test|train|orig|original|raw|photo|x)$",
    re.IGNORECASE,
)
PREDICTION_SUFFIX_RE = re.compile(r"[_\-. ](?:pred|predict|predicted|prediction|output|out|prob|probs)$", re.IGNORECASE)

# Cityscapes ships several label files per image; train ids are what models train on.
CITYSCAPES_MASK_PRIORITY = ("*_labelTrainIds.png", "*_labelIds.png")

MAX_DEPTH = 5


@dataclass(frozen=True, slots=True)
class Pair:
    """One image and its mask (either may be None for an unpaired file)."""

    image: Path | None
    mask: Path | None
    split: str | None = None
    key: str = ""


@dataclass
class Dataset:
    """What discovery found: complete pairs, unpaired files, and how they were paired."""

    root: Path
    pairs: list[Pair]
    unpaired_images: list[Pair] = field(default_factory=list)
    unpaired_masks: list[Pair] = field(default_factory=list)
    layout: str = ""
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sampled_from: int | None = None

    @property
    def splits(self) -> list[str]:
        return sorted({p.split for p in self.pairs if p.split})

    def display(self, path: Path | None) -> str:
        """A path relative to the dataset root, for reports."""
        if path is None:
            return ""
        try:
            return printable(str(path.relative_to(self.root)))
        except ValueError:
            return printable(str(path))


def printable(text: str) -> str:
    """``text`` with file-name bytes that are not UTF-8 shown as ``\\xNN`` (os.fsdecode keeps them as lone
    surrogates, which no UTF-8 report file can hold)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[_\-\s.]+", name.lower()) if t]


def _is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _list_files(folder: Path, recursive: bool = True) -> list[Path]:
    if isinstance(folder, RemotePath):
        from segdoctor.io.remote import list_files

        return list_files(folder, recursive=recursive, max_depth=MAX_DEPTH, accept=lambda n: _is_image_file(Path(n)))
    out: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    stack = [(folder, 0)]
    while stack:
        d, depth = stack.pop()
        try:
            st = d.stat()
            ident = (st.st_dev, st.st_ino)
            if ident in seen_dirs:  # symlink loops
                continue
            seen_dirs.add(ident)
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    if e.is_symlink() and _links_to_ancestor(e.path, d):
                        continue
                    if recursive and depth < MAX_DEPTH:
                        stack.append((Path(e.path), depth + 1))
                elif _is_image_file(Path(e.name)):
                    out.append(Path(e.path))
            except OSError:
                out.append(Path(e.path))  # unreadable entry: let the reader report it
    return sorted(out)


def _links_to_ancestor(link: str, folder: Path) -> bool:
    """A folder link back to the folder holding it, or above, would list the same files again under new
    names (images/loop/masks/x.png taken for an image); the (device, inode) check alone misses it when the
    target is above the folder the listing started from."""
    target = os.path.realpath(link)
    here = os.path.realpath(folder)
    return here == target or here.startswith(target.rstrip(os.sep) + os.sep)


def _subdirs(folder: Path) -> list[Path]:
    if isinstance(folder, RemotePath):
        from segdoctor.io.remote import subdirs

        return subdirs(folder)
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _dir_pair_score(image_dir: str, mask_dir: str) -> int | None:
    """Lower is better; None when the two folder names are not an image/mask pair."""
    a, b = image_dir.lower(), mask_dir.lower()
    if (a, b) in NAMED_PAIRS:
        return 0
    ta, tb = _tokens(a), _tokens(b)
    for i, t in enumerate(ta):
        if t not in IMAGE_WORDS:
            continue
        for j, u in enumerate(tb):
            if u in MASK_WORDS and ta[:i] + ta[i + 1 :] == tb[:j] + tb[j + 1 :]:
                return 1 + MASK_WORDS.index(u)
    # Carvana: train + train_masks
    if len(tb) == len(ta) + 1 and tb[:-1] == ta and tb[-1] in MASK_WORDS:
        return 50 + MASK_WORDS.index(tb[-1])
    # 1st_manual style: all tokens of the mask name are mask words, image name is an image word
    if ta and all(t in IMAGE_WORDS for t in ta) and tb and all(u in MASK_WORDS or u.isdigit() for u in tb):
        return 80
    return None


def _find_dir_pairs(root: Path) -> list[tuple[Path, Path, str]]:
    """(image_dir, mask_dir, note) pairs among sibling folders anywhere below root (breadth first)."""
    found: list[tuple[Path, Path, str]] = []
    queue = [(root, 0)]
    seen: set[Path] = {root.resolve()}  # a link back to the root must not be searched again
    while queue:
        d, depth = queue.pop(0)
        subs = _subdirs(d)
        claimed: set[Path] = set()
        for img in subs:
            candidates = []
            for msk in subs:
                if msk == img:
                    continue
                s = _dir_pair_score(img.name, msk.name)
                if s is not None:
                    candidates.append((s, msk))
            if not candidates:
                continue
            candidates.sort(key=lambda c: (c[0], c[1].name))
            best = candidates[0][1]
            others = [c[1].name for c in candidates[1:] if c[1] not in claimed]
            note = ""
            if others:
                note = f"{d.name or d}/: took {best.name}/ as the masks for {img.name}/ (also found {', '.join(others)}/; choose with --masks)."
            found.append((img, best, note))
            claimed.update({img, best})
        if not claimed:
            loose = _loose_dir_pair(subs)
            if loose is not None:
                img, msk = loose
                found.append((img, msk, f"{d.name or d}/: paired the folders by name alone: {img.name}/ holds the "
                                        f"images, {msk.name}/ the masks (override with --images/--masks)."))
                claimed.update({img, msk})
        for s in subs:
            if s not in claimed and depth < MAX_DEPTH and s.resolve() not in seen:
                seen.add(s.resolve())
                queue.append((s, depth + 1))
    # an image folder paired at an outer level hides nested matches inside it
    outer = [f for f in found if not any(f[0] != g[0] and g[0] in f[0].parents for g in found)]
    return outer


def _loose_dir_pair(subs: list[Path]) -> tuple[Path, Path] | None:
    """Exactly one sibling named like images and one named like masks, whatever else their names say
    (ISIC's ``*_Task1-2_Training_Input`` + ``*_Task1_Training_GroundTruth``)."""
    def words(p: Path) -> set[str]:
        return set(_tokens(p.name))

    image_like = [p for p in subs if words(p) & set(IMAGE_WORDS) and not words(p) & set(MASK_WORDS)]
    mask_like = [p for p in subs if words(p) & set(MASK_WORDS) and not words(p) & set(IMAGE_WORDS)]
    if len(image_like) == 1 and len(mask_like) == 1:
        return image_like[0], mask_like[0]
    return None


def _split_of(rel: Path) -> str | None:
    for part in rel.parts:
        s = SPLIT_NAMES.get(part.lower())
        if s:
            return s
    return None


def _core_stem(stem: str, pattern: re.Pattern) -> str:
    prev = None
    s = stem
    while prev != s:
        prev = s
        s = pattern.sub("", s)
    return s or stem


_NUMBER_RE = re.compile(r"\d+")


def _numeric_id(stem: str) -> str | None:
    m = _NUMBER_RE.search(stem)
    return str(int(m.group())) if m else None


KeyFn = Callable[[Path, Path], str | None]


def _rules() -> list[tuple[str, KeyFn, KeyFn]]:
    def rel_stem(base: Path, p: Path) -> str:
        return str(p.relative_to(base).parent / p.stem)

    def rel_core(pattern: re.Pattern) -> KeyFn:
        return lambda base, p: str(p.relative_to(base).parent / _core_stem(p.stem, pattern))

    def core(pattern: re.Pattern) -> KeyFn:
        return lambda base, p: _core_stem(p.stem, pattern)

    return [
        ("identical file stems", rel_stem, rel_stem),
        ("identical file stems (ignoring sub-folders)", lambda b, p: p.stem, lambda b, p: p.stem),
        ("file stems after removing image/mask suffixes such as _image, _mask, _gtFine_labelTrainIds",
         rel_core(IMAGE_SUFFIX_RE), rel_core(MASK_SUFFIX_RE)),
        ("file stems after removing image/mask suffixes (ignoring sub-folders)",
         core(IMAGE_SUFFIX_RE), core(MASK_SUFFIX_RE)),
        ("the numeric id in the file names (e.g. 21_training.tif with 21_manual1.gif)",
         lambda b, p: _numeric_id(p.stem), lambda b, p: _numeric_id(p.stem)),
    ]


def _common_suffix(longer: Sequence[str], shorter: Sequence[str]) -> tuple[str, int] | None:
    """The most common S with ``long == short + S`` (e.g. CamVid's ``_L``), and how many names it explains."""
    import bisect

    ordered = sorted(shorter)
    counts: Counter[str] = Counter()
    for name in longer:
        # the candidate prefixes of name sit just before it in sorted order
        i = bisect.bisect_right(ordered, name)
        for j in range(i - 1, max(-1, i - 4), -1):
            prefix = ordered[j]
            if name.startswith(prefix) and len(name) > len(prefix):
                counts[name[len(prefix):]] += 1
                break
    if not counts:
        return None
    return counts.most_common(1)[0]


def _learned_suffix_rules(images: Sequence[Path], masks: Sequence[Path]) -> list[tuple[str, KeyFn, KeyFn]]:
    """A suffix learnt from the file names themselves, when one explains most of them (``0001_L.png``)."""
    rules: list[tuple[str, KeyFn, KeyFn]] = []
    img, msk = [p.stem for p in images], [p.stem for p in masks]
    for longer, shorter, mask_side in ((msk, img, True), (img, msk, False)):
        found = _common_suffix(longer, shorter)
        if not found:
            continue
        suffix, n = found
        if n < max(2, 0.5 * min(len(img), len(msk))) or not suffix.strip("_-. "):
            continue

        def strip(base: Path, p: Path, suffix: str = suffix) -> str:
            return p.stem[: -len(suffix)] if p.stem.endswith(suffix) else p.stem

        def keep(base: Path, p: Path) -> str:
            return p.stem

        side = "masks" if mask_side else "images"
        rules.append((f"file stems after removing the suffix {suffix!r} that the {side} carry",
                      keep if mask_side else strip, strip if mask_side else keep))
    return rules


def _unique_keys(files: Sequence[Path], key: Callable[[Path], str | None]) -> dict[str, Path]:
    """key -> file, for the keys that exactly one file has."""
    out: dict[str, Path] = {}
    dup: set[str] = set()
    for p in files:
        k = key(p)
        if k is None:
            continue
        if k in out:
            dup.add(k)
        out[k] = p
    return {k: p for k, p in out.items() if k not in dup}


def pair_images_and_masks(
    image_base: Path, images: Sequence[Path], mask_base: Path, masks: Sequence[Path], split_base: Path | None = None
) -> tuple[list[Pair], list[Pair], list[Pair], str]:
    """Pair files by the rule that pairs the most of them; return (pairs, unpaired images, unpaired masks, rule)."""
    best: tuple[int, str, dict[str, Path], dict[str, Path]] | None = None
    for rule, image_key, mask_key in [*_rules(), *_learned_suffix_rules(images, masks)]:
        # A key shared by several files (a.png and a.jpg) is ambiguous: those files stay unpaired and are
        # reported, instead of one duplicate discarding the whole rule (and with it every pair).
        ik = _unique_keys(images, lambda p: image_key(image_base, p))
        mk = _unique_keys(masks, lambda p: mask_key(mask_base, p))
        n = len(ik.keys() & mk.keys())
        if best is None or n > best[0]:
            best = (n, rule, ik, mk)
        if n == min(len(images), len(masks)) and n > 0:
            break
    split_root = split_base or image_base
    if best is None or best[0] == 0:
        un_i = [Pair(p, None, _split_of(_rel(split_root, p)), p.stem) for p in images]
        un_m = [Pair(None, p, _split_of(_rel(split_base or mask_base, p)), p.stem) for p in masks]
        return [], un_i, un_m, "no rule paired any files"
    _, rule, ik, mk = best
    paired = sorted(ik.keys() & mk.keys())
    pairs = [Pair(ik[k], mk[k], _split_of(_rel(split_root, ik[k])), k) for k in paired]
    used_i = {ik[k] for k in paired}
    used_m = {mk[k] for k in paired}
    un_i = [Pair(p, None, _split_of(_rel(split_root, p)), p.stem) for p in images if p not in used_i]
    un_m = [Pair(None, p, _split_of(_rel(split_base or mask_base, p)), p.stem) for p in masks if p not in used_m]
    return pairs, un_i, un_m, rule


def _rel(base: Path, p: Path) -> Path:
    try:
        return p.relative_to(base)
    except ValueError:
        return Path(p.name)


def _apply_mask_pattern(masks: list[Path], pattern: str | None, notes: list[str], where: str) -> list[Path]:
    if pattern:
        chosen = [m for m in masks if fnmatch.fnmatch(m.name, pattern)]
        return chosen
    # Several label files per image (Cityscapes): take the one models train on.
    for pat in CITYSCAPES_MASK_PRIORITY:
        chosen = [m for m in masks if fnmatch.fnmatch(m.name, pat)]
        if chosen and len(chosen) < len(masks):
            kinds = sorted({re.sub(r"^.*_gtFine_", "*_gtFine_", m.name) for m in masks if "_gtFine_" in m.name})
            notes.append(
                f"{where}: several label files per image ({', '.join(kinds) or 'several kinds'}); took {pat} "
                "(choose another with --mask-pattern)."
            )
            return chosen
    return masks


def _pair_folders(
    root: Path, image_dir: Path, mask_dir: Path, mask_pattern: str | None, notes: list[str]
) -> tuple[list[Pair], list[Pair], list[Pair], str]:
    images = _list_files(image_dir)
    masks = _apply_mask_pattern(_list_files(mask_dir), mask_pattern, notes, _rel(root, mask_dir).as_posix())
    # Cityscapes-style colour renderings and predictions beside the labels are not masks.
    pairs, un_i, un_m, rule = pair_images_and_masks(image_dir, images, mask_dir, masks, split_base=root)
    for lst in (pairs, un_i, un_m):
        for i, p in enumerate(lst):
            path = p.image or p.mask
            if p.split is None and path is not None:
                lst[i] = replace(p, split=_split_of(_rel(root, path)))
    return pairs, un_i, un_m, rule


def _same_folder_groups(root: Path) -> list[tuple[Path, list[Path], list[Path], list[Path]]]:
    """Folders where masks sit beside images with a suffix: (folder, images, masks, other files)."""
    groups = []
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    for f in _list_files(root):
        by_dir[f.parent].append(f)
    for d, files in sorted(by_dir.items()):
        masks = [f for f in files if MASK_SUFFIX_RE.search(f.stem)]
        if not masks:
            continue
        rest = [f for f in files if f not in set(masks)]
        explicit = [f for f in rest if IMAGE_SUFFIX_RE.search(f.stem)]
        if explicit:
            images = explicit
        else:
            images = [f for f in rest if not PREDICTION_SUFFIX_RE.search(f.stem)]
        other = [f for f in rest if f not in set(images)]
        groups.append((d, images, masks, other))
    return groups


def _describe_tree(root: Path) -> str:
    subs = [s.name + "/" for s in _subdirs(root)][:12]
    files = _list_files(root, recursive=False)
    exts = Counter(f.suffix.lower() for f in files)
    parts = []
    if subs:
        parts.append("folders " + ", ".join(subs))
    if files:
        parts.append(f"{len(files)} image files ({', '.join(f'{n} {e}' for e, n in exts.most_common(4))})")
    return "; ".join(parts) or "nothing"


def _resolve_flag_dir(root: Path, value: str, flag: str) -> Path:
    p = Path(value)
    if not p.is_absolute():
        p = root / p
    if not p.is_dir():
        raise DatasetError(f"{flag} {value}: {p} is not a folder; expected a folder of image files under {root}.")
    return p


def discover_dataset(
    root: str | Path,
    *,
    images: str | None = None,
    masks: str | None = None,
    mask_pattern: str | None = None,
) -> Dataset:
    """Find image/mask pairs under ``root``; raise ``DatasetError`` when none can be found."""
    # fsspec URLs (s3://, memory://, file://...) are listed through fsspec; local paths keep os.scandir
    root = RemotePath.from_url(root) if is_url(root) else Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such folder; expected a dataset folder (e.g. with images/ and masks/).")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file; expected a dataset folder (e.g. with images/ and masks/).")
    notes: list[str] = []
    if images or masks:
        if not (images and masks):
            raise DatasetError(f"{root}: --images and --masks must be given together (e.g. --images imgs --masks labels).")
        idir, mdir = _resolve_flag_dir(root, images, "--images"), _resolve_flag_dir(root, masks, "--masks")
        if idir.resolve() == mdir.resolve():
            groups = _same_folder_groups(idir)
            return _from_groups(root, groups, mask_pattern, notes, layout=f"masks beside images in {idir.name}/")
        pairs, un_i, un_m, rule = _pair_folders(root, idir, mdir, mask_pattern, notes)
        return _finish(root, pairs, un_i, un_m, [rule], notes, f"{_rel(root, idir)}/ + {_rel(root, mdir)}/ (from flags)")

    dir_pairs = _find_dir_pairs(root)
    if dir_pairs:
        all_pairs: list[Pair] = []
        un_i: list[Pair] = []
        un_m: list[Pair] = []
        rules: list[str] = []
        for idir, mdir, note in dir_pairs:
            if note:
                notes.append(note)
            p, ui, um, rule = _pair_folders(root, idir, mdir, mask_pattern, notes)
            all_pairs += p
            un_i += ui
            un_m += um
            rules.append(rule)
        layout = "; ".join(f"{_rel(root, i).as_posix()}/ + {_rel(root, m).as_posix()}/" for i, m, _ in dir_pairs)
        covered = {d for i, m, _ in dir_pairs for d in (i, m)}
        _note_uncovered(root, covered, notes)
        return _finish(root, all_pairs, un_i, un_m, rules, notes, layout)

    groups = _same_folder_groups(root)
    if groups:
        return _from_groups(root, groups, mask_pattern, notes, layout="masks beside images, told apart by a suffix")
    raise DatasetError(
        f"{root}: found no image/mask pairs (saw {_describe_tree(root)}). Expected images/ + masks/ (or image/+label/, "
        "JPEGImages/+SegmentationClass/, leftImg8bit/+gtFine/, train/ val/ splits of these), or masks beside images "
        "named *_mask.png; otherwise pass --images SUBDIR --masks SUBDIR."
    )


def _note_uncovered(root: Path, covered: set[Path], notes: list[str]) -> None:
    """Say which folders holding images were not analysed (e.g. a test split without masks)."""
    for sub in _subdirs(root):
        if any(sub == c or sub in c.parents or c in sub.parents for c in covered):
            if sub in {c.parent for c in covered} or any(sub == c for c in covered):
                continue
            for inner in _subdirs(sub):
                if not any(inner == c or inner in c.parents for c in covered):
                    n = len(_list_files(inner))
                    if n:
                        notes.append(f"Not analysed: {_rel(root, inner).as_posix()}/ ({n} image files, no masks found beside them).")
            continue
        n = len(_list_files(sub))
        if n:
            notes.append(f"Not analysed: {_rel(root, sub).as_posix()}/ ({n} image files, no masks found beside them).")


def _from_groups(root: Path, groups, mask_pattern: str | None, notes: list[str], layout: str) -> Dataset:
    all_pairs: list[Pair] = []
    un_i: list[Pair] = []
    un_m: list[Pair] = []
    rules = []
    for d, images, masks, other in groups:
        masks = _apply_mask_pattern(masks, mask_pattern, notes, _rel(root, d).as_posix() or ".")
        p, ui, um, rule = pair_images_and_masks(d, images, d, masks, split_base=root)
        all_pairs += p
        un_i += ui
        un_m += um
        rules.append(rule)
        if other:
            kinds = sorted({PREDICTION_SUFFIX_RE.search(f.stem).group(0) if PREDICTION_SUFFIX_RE.search(f.stem) else f.suffix
                            for f in other})
            notes.append(f"Ignored {len(other)} files in {_rel(root, d).as_posix() or '.'}/ that are neither images nor masks "
                         f"by name ({', '.join(kinds)}).")
    if not all_pairs and un_m:
        # Masks found by their suffix, but nothing beside them pairs: the images live elsewhere (ISIC's
        # *_Input/ + *_GroundTruth/). A report of unpaired masks alone would hide every image.
        where = sorted({_rel(root, p.mask.parent).as_posix() or "." for p in un_m})
        raise DatasetError(
            f"{root}: found {len(un_m)} files named like masks (e.g. {un_m[0].mask.name}) in {', '.join(where[:3])}/ "
            f"but no images beside them with the same stem (saw {_describe_tree(root)}). "
            "Pass --images SUBDIR --masks SUBDIR."
        )
    return _finish(root, all_pairs, un_i, un_m, rules, notes, layout)


def _finish(root, pairs, un_i, un_m, rules, notes, layout) -> Dataset:
    if not pairs and not un_i and not un_m:
        raise DatasetError(f"{root}: found no image/mask pairs: the folders {layout} hold no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
    if not pairs:
        # nothing to analyse: an exit status of 0 (or a report of unpaired files) would pass an empty dataset
        seen = [f"{len(files)} {what}" + (f" (e.g. {files[0].name})" if files else "")
                for what, files in (("image file(s)", [p.image for p in un_i]), ("mask file(s)", [p.mask for p in un_m]))]
        raise DatasetError(f"{root}: found no image/mask pairs in {layout}: {' and '.join(seen)}, none with a partner "
                           f"({'; '.join(dict.fromkeys(rules))}). Expected images and masks of the same stem "
                           f"({', '.join(sorted(IMAGE_EXTENSIONS))}); otherwise pass --images SUBDIR --masks SUBDIR.")
    distinct_rules = list(dict.fromkeys(r for r in rules if r != "no rule paired any files")) or list(dict.fromkeys(rules))
    return Dataset(root=root, pairs=pairs, unpaired_images=un_i, unpaired_masks=un_m, layout=layout,
                   rules=distinct_rules, notes=notes)


def sample_dataset(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """A seeded random subset of ``n`` pairs (unpaired files are kept: they are cheap and matter)."""
    if n <= 0 or n >= len(ds.pairs):
        return ds
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(ds.pairs)), n))
    return replace(ds, pairs=[ds.pairs[i] for i in chosen], sampled_from=len(ds.pairs))


def iter_paths(pairs: Iterable[Pair]) -> Iterable[Path]:
    for p in pairs:
        if p.image is not None:
            yield p.image
        if p.mask is not None:
            yield p.mask
