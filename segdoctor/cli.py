"""Command-line entry point: argument parsing, progress, the terminal summary and exit codes.

This is the only module that prints. It never imports Keras or TensorFlow at module level.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
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
    "segdoctor.commands.pipeline",
    "segdoctor.commands.fix",
    "segdoctor.commands.lrfind",
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


class _Version(argparse.Action):
    """``--version``: the version, and whether the compiled helpers are in use (imported only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help="show the version and whether the compiled helpers are in use, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from segdoctor import speedups

        state = ("in use" if speedups.available() else
                 "not in use (not built: no C compiler at install time, or SEGDOCTOR_PURE_PYTHON=1); "
                 "results are the same, slower")
        print(f"segdoctor {__version__}\ncompiled helpers: {state}")  # stdout, as argparse's own version action
        parser.exit()


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="segdoctor",
        description="Diagnose why a Keras segmentation model fails: the dataset, the model, the training log.",
        epilog="Run `segdoctor list-checks` for the catalogue and `segdoctor explain SD101` for one check.",
    )
    parser.add_argument("--version", action=_Version)
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
    lc.add_argument("--scope", choices=("data", "model", "predictions", "history", "pipeline"), help="only checks of this scope")
    ex = sub.add_parser("explain", help="show a check's documentation: what it detects, why it matters, how to fix")
    ex.add_argument("check", metavar="CODE|NAME", nargs="?")
    ex.add_argument("--links", action="store_true", help="list every causal link the diagnosis uses (this check's, with CODE)")
    sub.add_parser("schema", help="print the JSON Schema of the --json report (segdoctor.report/1)")
    return parser, modules


def _list_checks(args: argparse.Namespace) -> int:
    from segdoctor.registry import all_checks

    rows = [c for c in all_checks() if not args.scope or c.scope == args.scope]
    for c in rows:
        print(f"{c.code}  {c.name:<28} {c.severity.label:<8} {c.scope:<12} {c.summary()}")
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from segdoctor.diagnosis import links_of, links_text
    from segdoctor.errors import UsageError
    from segdoctor.registry import get_check

    if args.check is None:
        if not args.links:
            raise UsageError("explain: expected a check code or name (e.g. `segdoctor explain SD101`), or --links for the causal links.")
        print(links_text())
        return EXIT_OK
    c = get_check(args.check)
    if args.links:
        print(links_of(c.code))
        return EXIT_OK
    aliases = f" (aliases: {', '.join(c.aliases)})" if c.aliases else ""
    print(f"{c.code} {c.name}{aliases}\nseverity: {c.severity.label}    scope: {c.scope}\n")
    print(c.documentation())
    print()
    print(links_of(c.code))
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from segdoctor.report.json_writer import schema_text

    print(schema_text(), end="")
    return EXIT_OK


#: characters never printed as they are: C0/C1 controls (ESC starts terminal escape sequences, CR rewrites the
#: line, BEL rings) and the bidirectional overrides that reorder what the eye sees (U+202A-E, U+2066-9)
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_control(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _printable(text: object) -> str:
    """``text`` safe for a terminal: control characters from file names, log columns or notes shown as \\xNN
    escapes (an ESC from a folder name never reaches the terminal as an escape sequence, a newline never
    splits a one-line message), and the undecodable bytes of non-UTF-8 file names (lone surrogates) shown as
    \\xNN escapes too, as the reports show them: printing a lone surrogate to a strict UTF-8 stream raises
    UnicodeEncodeError."""
    text = _UNPRINTABLE.sub(_escape_control, str(text))
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _printable(super().format(record))


def _print_summary(report, args: argparse.Namespace, written: list[str]) -> None:
    from segdoctor.report.terminal import summary_lines

    width = max(60, min(os.get_terminal_size().columns if sys.stdout.isatty() else 100, 120))
    # the first line is the verdict: it names the root cause when the run found one
    for line in summary_lines(report, width=width, quiet=args.quiet):
        print(_printable(line))
    for path in written:
        print(_printable(f"Report: {path}"))


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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("segdoctor: %(message)s"))  # log lines name files too
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.ERROR, handlers=[handler])
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "list-checks":
            return _list_checks(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "schema":
            return _schema(args)
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
