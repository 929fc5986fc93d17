"""Command-line entry point: argument parsing, progress, the terminal summary and exit codes.

This is the only module that prints. It never imports Keras or TensorFlow at module level.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from importlib import import_module

from segdoctor import __version__
from segdoctor.errors import SegDoctorError
from segdoctor.progress import TqdmProgress as Progress  # tqdm.auto bars, on a TTY, unless -q

#: command modules, each with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args, progress)``
COMMAND_MODULES = (
    "segdoctor.commands.data",
    "segdoctor.commands.model",
    "segdoctor.commands.history",
)

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("segdoctor")


def add_common_arguments(p: argparse.ArgumentParser, default_report: str = "segdoctor-report.html") -> None:
    """Options every checking command shares (report paths, selection, exit policy)."""
    g = p.add_argument_group("output")
    g.add_argument("--report", metavar="PATH", default=default_report,
                   help=f"write the HTML report here (default: ./{default_report}); '-' or 'none' to skip")
    g.add_argument("--json", metavar="PATH", help="also write the report as JSON (schema segdoctor.report/1)")
    g.add_argument("--fail-on", choices=("error", "warning", "info", "never"), default="error",
                   help="exit 1 when a finding reaches this severity (default: error)")
    g.add_argument("--select", action="append", metavar="CODES",
                   help="run only these checks: codes (SD101), prefixes (SD1) or names, comma-separated or repeated")
    g.add_argument("--ignore", action="append", metavar="CODES", help="skip these checks (same forms as --select)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the one-line verdict")
    g.add_argument("-v", "--verbose", action="store_true", help="log what the checks do")


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="segdoctor",
        description="Diagnose why a Keras segmentation model fails: the dataset, the model, the training log.",
        epilog="Run `segdoctor list-checks` for the catalogue and `segdoctor explain SD101` for one check.",
    )
    parser.add_argument("--version", action="version", version=f"segdoctor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, object] = {}
    for name in COMMAND_MODULES:
        mod = import_module(name)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        add_common_arguments(p)
        modules[mod.NAME] = mod
    lc = sub.add_parser("list-checks", help="list every check: code, name, severity, scope and one line")
    lc.add_argument("--scope", choices=("data", "model", "predictions", "history"), help="only checks of this scope")
    ex = sub.add_parser("explain", help="show a check's documentation: what it detects, why it matters, how to fix")
    ex.add_argument("check", metavar="CODE|NAME")
    return parser, modules


def _list_checks(args: argparse.Namespace) -> int:
    from segdoctor.registry import all_checks

    rows = [c for c in all_checks() if not args.scope or c.scope == args.scope]
    for c in rows:
        print(f"{c.code}  {c.name:<28} {c.severity.label:<8} {c.scope:<12} {c.summary()}")
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from segdoctor.registry import get_check

    c = get_check(args.check)
    aliases = f" (aliases: {', '.join(c.aliases)})" if c.aliases else ""
    print(f"{c.code} {c.name}{aliases}\nseverity: {c.severity.label}    scope: {c.scope}\n")
    print(c.documentation())
    return EXIT_OK


def _printable(text: object) -> str:
    """``text`` with the undecodable bytes of non-UTF-8 file names (lone surrogates) shown as \\xNN escapes,
    as the reports show them: printing a lone surrogate to a strict UTF-8 stream raises UnicodeEncodeError."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _print_summary(report, args: argparse.Namespace, written: list[str]) -> None:
    counts = report.counts
    written = [_printable(path) for path in written]
    print(_printable(report.verdict))
    if args.quiet:
        for path in written:
            print(f"Report: {path}")
        return
    print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
    width = max(60, min(os.get_terminal_size().columns if sys.stdout.isatty() else 100, 120))
    for f in report.findings[:10]:
        line = f"  {f.severity.label.upper():<7} {f.code} {f.title}"
        print(_printable(textwrap.shorten(line, width=width, placeholder=" …")))
    if len(report.findings) > 10:
        print(f"  … and {len(report.findings) - 10} more in the report")
    crashed = [c for c in report.checks if c.status == "crashed"]
    for c in crashed:
        print(_printable(f"  check {c.code} could not run: {c.message}"))
    for path in written:
        print(f"Report: {path}")


def _write_outputs(report, args: argparse.Namespace) -> list[str]:
    written = []
    from segdoctor.io.outputs import wants_output

    if wants_output(args.json):  # as for --report, and as _check_output_paths assumes
        from segdoctor.report.json_writer import write_json

        written.append(str(write_json(report, args.json)))
    if wants_output(args.report):
        from segdoctor.report.html import write_html

        written.append(str(write_html(report, args.report)))
    return written


def _check_output_paths(args: argparse.Namespace, module: object) -> None:
    """Before any analysis: refuse outputs that would overwrite an input or cannot be written (exit 2)."""
    from segdoctor.io.outputs import guard_outputs

    inputs = module.input_paths(args) if hasattr(module, "input_paths") else []
    guard_outputs([("--report", args.report), ("--json", args.json), *getattr(module, "output_paths", lambda a: [])(args)],
                  inputs)


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.ERROR,
                        format="segdoctor: %(message)s", stream=sys.stderr)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "list-checks":
            return _list_checks(args)
        if args.command == "explain":
            return _explain(args)
        _check_output_paths(args, modules[args.command])
        if args.verbose:
            import segdoctor.io.model as model_io

            model_io.show_native_logs = True  # -v: TensorFlow's own log lines too (a GPU setup to debug)
        if args.command == "check-data":
            from segdoctor.allocator import tune_allocator

            # this process is segdoctor's own: keep the dataset-wide studies' large buffers on the heap.
            # (check-model leaves TensorFlow's allocations to the defaults; its scan workers tune themselves.)
            tune_allocator()
        progress = Progress(enabled=not args.quiet and sys.stderr.isatty())
        try:
            report = modules[args.command].run(args, progress)
        finally:
            progress.close()
        written = _write_outputs(report, args)
    except SegDoctorError as exc:
        print(_printable(f"segdoctor: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("segdoctor: interrupted", file=sys.stderr)
        return 130
    for note in report.notes:  # e.g. the --unsafe warning: it must reach the terminal, not only the report
        print(_printable(f"segdoctor: note: {note}"), file=sys.stderr)
    _print_summary(report, args, written)
    return EXIT_FINDINGS if report.fails(args.fail_on) else EXIT_OK
