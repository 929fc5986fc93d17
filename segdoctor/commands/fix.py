"""``segdoctor fix DIR --out FIXED_DIR``: write a repaired copy of a dataset, then re-check it. Never imports TensorFlow."""

from __future__ import annotations

import argparse

from segdoctor.commands.data import add_dataset_arguments
from segdoctor.engines import ENGINES
from segdoctor.errors import UsageError
from segdoctor.registry import split_patterns

NAME = "fix"
HELP = "write a repaired copy of a dataset (0/255, JPEG, resized, RGB, offset, flipped masks), then re-check it"
DESCRIPTION = """\
Run check-data on DIR, then write a complete copy of the dataset to --out with every mechanically
repairable finding repaired, and run check-data on the copy. DIR itself is never modified.

Repairs, each only on the files its finding names: SD101 {0,k} -> {0,1}; SD102 ids remapped to 0..K-1;
SD104 equal channels -> one, colours -> class ids (VOC palette and void recognised); SD105/SD106 every
pixel snapped to the nearest class value or colour; SD203 EXIF orientation applied to the image pixels;
SD252 the named flip/rotation/transpose applied to the masks; SD004 transposed masks transposed back.
Repaired masks are lossless (a .jpg mask becomes .png under the same stem); untouched files are
hard-linked (or copied). FIXED_DIR/segdoctor-fix.json lists every changed file with the repair, its
values before and after and the SHA-256 of the original. Findings without a safe mechanical repair
(unreadable files, unpaired files, imbalance, misaligned pairs, leakage, image normalisation) are
listed as "needs you".

Exit status: 1 when a finding repaired is still found on the copy, or one at --fail-on remains.

examples:
  segdoctor fix data/ --out data-fixed/
  segdoctor fix data/ --out data-fixed/ --dry-run              # writes only ./segdoctor-fix-plan.json
  segdoctor fix data/ --out data-fixed/ --select SD101,SD105   # only these repairs
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="dataset folder (local)")
    p.add_argument("--out", required=True, metavar="FIXED_DIR",
                   help="where the repaired copy goes: a new or empty folder outside DIR")
    p.add_argument("--overwrite", action="store_true",
                   help="replace FIXED_DIR when it holds a previous segdoctor fix output")
    p.add_argument("--dry-run", action="store_true",
                   help="write nothing but the plan (see --manifest): what would be repaired, file by file")
    p.add_argument("--manifest", metavar="PATH",
                   help="with --dry-run: where the plan goes (default: ./segdoctor-fix-plan.json)")
    p.add_argument("--copy", action="store_true", help="copy untouched files instead of hard-linking them")
    add_dataset_arguments(p)
    p.add_argument("--jobs", type=int, metavar="N", help="worker processes (default: all cores)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="where the checks' statistics and the repairs run: local processes (default) or Dask")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address for --engine dask")


def input_paths(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """What this command reads (the CLI refuses --report/--json/--manifest inside it)."""
    return [("DIR", args.dir)]


def output_paths(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """The plan file of a dry run (--out is a folder and is checked by the command itself)."""
    if args.dry_run:
        from segdoctor.fix.run import DRY_RUN_MANIFEST

        return [("--manifest", args.manifest or DRY_RUN_MANIFEST)]
    return []


def run(args: argparse.Namespace, progress):
    from segdoctor.allocator import tune_allocator
    from segdoctor.fix.run import fix_dataset

    if args.manifest and not args.dry_run:
        raise UsageError(f"--manifest {args.manifest}: only with --dry-run; a fix run writes its manifest to "
                         f"{args.out}/segdoctor-fix.json.")
    tune_allocator()  # this process is segdoctor's own (as for check-data)
    report = fix_dataset(
        args.dir, args.out,
        images=args.images, masks=args.masks, mask_pattern=args.mask_pattern, num_classes=args.num_classes,
        select=split_patterns(args.select), ignore=split_patterns(args.ignore),
        jobs=args.jobs, engine=args.engine, scheduler=args.scheduler,
        dry_run=args.dry_run, overwrite=args.overwrite, hard_links=not args.copy,
        manifest=args.manifest, progress=progress,
    )
    if args.dry_run:
        # a dry run writes nothing but its plan: the CLI writes the reports after run() from these options
        args.report = None
        args.json = None
    return report
