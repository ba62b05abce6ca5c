"""When to show a progress bar while a source loads."""

from __future__ import annotations

import sys

LARGE_FILE_COUNT = 500
"""A folder with more files than this shows a progress bar (when stderr is a terminal)."""

LARGE_LINE_COUNT = 50_000
"""A text file with more lines than this shows a progress bar (when stderr is a terminal)."""


def show_progress(progress: bool | None, size: int, threshold: int) -> bool:
    """Whether to draw a bar: forced by ``True``/``False``, else only for a large source on a tty.

    ``size`` is the number of files or lines to read; ``threshold`` is
    :data:`LARGE_FILE_COUNT` or :data:`LARGE_LINE_COUNT`.
    """
    if progress is not None:
        return progress
    if size <= threshold:
        return False
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False
