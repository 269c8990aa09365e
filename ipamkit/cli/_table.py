"""Plain-text tables for terminal output, 100 columns wide where the cells allow."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence

__all__ = ["WIDTH", "format_table"]

#: The widest line a table may have.
WIDTH = 100
_GAP = "  "
#: The narrowest a wrapped column gets, however wide the others are.
_NARROWEST = 20


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int = WIDTH,
    paint: Mapping[int, Callable[[str], str]] | None = None,
) -> str:
    """Lay ``rows`` out in left-aligned columns under ``headers``.

    The last column is wrapped so that no line is wider than ``width``, unless
    that would leave it narrower than 20 characters (then the line is wider, as
    when the other columns alone are). ``paint`` maps a column's
    index to a function that decorates its cells (colour), applied after the
    widths are measured.
    """
    wrap = len(headers) - 1
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    others = sum(w for i, w in enumerate(widths) if i != wrap) + len(_GAP) * (len(widths) - 1)
    widths[wrap] = max(min(widths[wrap], width - others), len(headers[wrap]), _NARROWEST)
    paint = paint or {}
    lines = [_line(headers, widths, {}), _line(["-" * w for w in widths], widths, {})]
    for row in rows:
        pieces = textwrap.wrap(row[wrap], widths[wrap], break_on_hyphens=False) or [""]
        cells = list(row)
        for number, piece in enumerate(pieces):
            cells[wrap] = piece
            lines.append(_line(cells, widths, paint))
            if number == 0:
                cells = [""] * len(cells)
    return "\n".join(lines)


def _line(
    cells: Sequence[str], widths: Sequence[int], paint: Mapping[int, Callable[[str], str]]
) -> str:
    padded = [cell.ljust(w) for cell, w in zip(cells, widths, strict=True)]
    painted = (paint[i](c) if i in paint and c.strip() else c for i, c in enumerate(padded))
    return _GAP.join(painted).rstrip()
