"""Logseq's journal pages: the date a journal file holds, and the page name Logseq gives it.

A Logseq graph keeps one page a day in ``journals/``, in files named ``2024_01_31.md``; the page
is *named* by the date in the graph's title format (``Jan 31st, 2024`` by default), and that name
is what ``[[Jan 31st, 2024]]`` links and Logseq's date references write. The format is the
``:journal/page-title-format`` of ``logseq/config.edn`` (date-fns tokens: ``yyyy``, ``yy``,
``MMMM``, ``MMM``, ``MM``, ``M``, ``do``, ``dd``, ``d``, ``EEEE``, ``EEE``/``EE``/``E``;
``'text'`` is literal).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

DEFAULT_TITLE_FORMAT = "MMM do, yyyy"
"""Logseq's default journal page title format."""

CONFIG_FILE = "logseq/config.edn"
"""Where a Logseq graph sets its journal title format (vault-relative)."""

_FILE = re.compile(r"journals/(?P<y>\d{4})[_-](?P<m>\d{2})[_-](?P<d>\d{2})\.md", re.IGNORECASE)
_SETTING = re.compile(r':journal/page-title-format\s+"(?P<format>[^"]+)"')
_TOKEN = re.compile(r"yyyy|yy|MMMM|MMM|MM|M|do|dd|d|EEEE|EEE|EE|E|'[^']*'")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def title_format(vault: str | os.PathLike[str]) -> str:
    """The journal title format a Logseq graph's ``logseq/config.edn`` sets (the default when
    it sets none, or there is no such file, or it cannot be read)."""
    try:
        text = (Path(vault) / CONFIG_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return DEFAULT_TITLE_FORMAT
    for line in text.splitlines():
        match = _SETTING.search(line.split(";", 1)[0])  # ";" starts an EDN comment
        if match:
            return match["format"]
    return DEFAULT_TITLE_FORMAT


def journal_date(rel: str) -> dt.date | None:
    """The day a vault-relative path's journal page holds (None: not a journal file)."""
    match = _FILE.fullmatch(rel)
    if match is None:
        return None
    try:
        return dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:
        return None


def journal_title(day: dt.date, fmt: str = DEFAULT_TITLE_FORMAT) -> str:
    """The page name of a day's journal in a title format (English names, whatever the
    locale, as Logseq's)."""

    def token(match: re.Match[str]) -> str:
        t = match[0]
        if t.startswith("'"):
            return t[1:-1]
        return {
            "yyyy": f"{day.year:04d}", "yy": f"{day.year % 100:02d}",
            "MMMM": _MONTHS[day.month - 1], "MMM": _MONTHS[day.month - 1][:3],
            "MM": f"{day.month:02d}", "M": str(day.month),
            "do": _ordinal(day.day), "dd": f"{day.day:02d}", "d": str(day.day),
            "EEEE": _DAYS[day.weekday()],
        }.get(t, _DAYS[day.weekday()][:3])  # EEE, EE, E

    return _TOKEN.sub(token, fmt)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
