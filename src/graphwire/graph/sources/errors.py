"""The one exception every source raises when it cannot produce a graph."""

from __future__ import annotations

import os


class SourceError(Exception):
    """A source that cannot be read: missing, unreadable, malformed, unsupported or empty.

    The message names the file, and the line (and column) where it is known:
    ``"notes/a.md, line 3: front matter is not valid YAML-like 'key: value'"``,
    ``"data.json, line 4, column 2: not valid JSON: Expecting value"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        reason: str,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        """The file or folder at fault, as the caller named it."""
        self.reason = reason
        """What was wrong, without the location."""
        self.line = line
        """The 1-based line at fault, or ``None`` when unknown."""
        self.column = column
        """The 1-based column at fault (only with a line), or ``None`` when unknown."""
        where = self.path
        if line is not None:
            where += f", line {line}" if column is None else f", line {line}, column {column}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(
        self,
    ) -> tuple[type[SourceError], tuple[str, str, int | None, int | None]]:
        # Keeps the error picklable (process pools, logging handlers) despite the custom init.
        return (type(self), (self.path, self.reason, self.line, self.column))
