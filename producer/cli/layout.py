"""How ``fcd`` lays out lists so that an id is never cut, at any width.

Rich reads the width from the terminal, or ``COLUMNS`` when piped (80 if unset). A table is used
only when every id column fits whole beside the rest (:func:`table_fits`); otherwise each row
becomes a block of short lines (:func:`print_block`), ids first, in which only free text wraps
(at spaces: an id is one word, so it moves to the next line whole). Id columns of a table never
wrap or shrink (:func:`id_column`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Column
from rich.text import Text

#: What the non-id columns of a table need at least, beside the ids (borders included).
MIN_TEXT_WIDTH = 60


def id_column(header: str, values: Iterable[str]) -> Column:
    """A column that shows every value whole: as wide as the longest, never wrapped."""
    width = max([len(header), *(len(v) for v in values)])
    return Column(header, no_wrap=True, min_width=width, overflow="fold")


def table_fits(console: Console, *id_values: Sequence[str], rest: int = MIN_TEXT_WIDTH) -> bool:
    """True if id columns of these values plus ``rest`` columns of text fit in the console."""
    need = sum(max((len(v) for v in values), default=0) + 3 for values in id_values)
    return console.width >= need + rest


def print_block(console: Console, lines: Sequence[str]) -> None:
    """One record: its first line flush left, the others indented, each wrapped at spaces."""
    for number, line in enumerate(lines):
        if not line:
            continue
        text = Text(line if number == 0 else f"  {line}", overflow="fold")
        console.print(text, highlight=False, soft_wrap=False)
