"""Small helpers shared by check modules (formatting counts, example figures)."""

from __future__ import annotations

from collections.abc import Sequence

from segdoctor.findings import Figure
from segdoctor.io.dataset import Pair

EXAMPLES = 3


def py_str(text: object) -> str:
    """A Python string literal holding ``text`` exactly: how a user-controlled string (a file name, a log's column
    name, a function name read from a model file) enters a copy-paste snippet, in code and in comments alike.

    ``repr`` escapes quotes, backslashes, newlines, control and bidirectional characters and lone surrogates, so
    the string can never end the literal (or the comment line) it sits in. Double quotes, like the rest of the
    snippets, whenever the text holds none.
    """
    text = str(text)
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1] + '"'  # repr escaped no quote: it had neither quote, or only single ones
    return literal


def py_identifier(name: object, default: str) -> str:
    """``name`` when it is a plain Python identifier (a ``def`` in a snippet may carry it), else ``default``."""
    import keyword

    text = str(name)
    return text if text.isidentifier() and text.isascii() and not keyword.iskeyword(text) else default


def plural(n: int, word: str, plural_word: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural_word or word + 's')}"


def of(n: int, total: int) -> str:
    return f"{n:,} of {total:,}" if n != total or total == 1 else f"all {total:,}"


def example_pairs(pairs: Sequence[Pair], title: str, captions: Sequence[str] | None = None) -> Figure:
    items = []
    for i, p in enumerate(list(pairs)[:EXAMPLES]):
        items.append({
            "image": str(p.image) if p.image else None,
            "mask": str(p.mask) if p.mask else None,
            "caption": (captions[i] if captions else (p.mask.name if p.mask else "")),
        })
    return Figure("pairs", title, {"items": items})
