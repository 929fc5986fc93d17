"""Small helpers shared by check modules (formatting counts, example figures)."""

from __future__ import annotations

from collections.abc import Sequence

from segdoctor.findings import Figure
from segdoctor.io.dataset import Pair

EXAMPLES = 3


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
