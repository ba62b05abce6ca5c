"""A tiny reader for the YAML-ish front matter of Markdown pages (no YAML dependency).

What it understands, which is what Obsidian writes and people type by hand::

    ---
    title: A page            # key: value      -> "A page" (quotes are removed)
    tags: [x, "y"]           # key: [a, b]     -> ["x", "y"] (may go on over indented lines;
                             #   a "[" never closed is an error naming its line)
    aliases:                 # key: then "- item" lines -> ["one", "two"]
      - one
      - two
    note: |                  # block scalars and nested maps are kept as text
      two lines
      of text
    ---

Values are strings or lists of strings; nothing else is interpreted (``true``, ``3`` and ``null``
stay as written, and ``#`` is not a comment inside a value). A top-level line that is not
``key: value`` is an error naming its line.
"""

from __future__ import annotations

import json
import os
import re

from .errors import SourceError

Value = str | list[str]
"""A front-matter or property value: a string, or a list of strings."""

_FENCE = "---"
_ENDS = ("---", "...")
_KEY_VALUE = re.compile(r"(?P<key>[^\s#].*?)\s*:(?:\s+(?P<value>.*))?")
_BLOCK_SCALAR = re.compile(r"[|>][+-]?\d*")
_UNCLOSED = "a list opened with '[' is never closed with ']'"


def front_matter(path: str | os.PathLike[str], lines: list[str]) -> tuple[dict[str, Value], int]:
    """The front matter at the top of ``lines`` and the index of the first line after it.

    A page without front matter gives ``({}, 0)``. A block opened with ``---`` and never closed
    is a :class:`SourceError` naming line 1.
    """
    if not lines or lines[0].rstrip() != _FENCE:
        return {}, 0
    end = front_matter_end(lines) - 1
    if end < 0:
        raise SourceError(path, "front matter opened with '---' is never closed", 1)
    values: dict[str, Value] = {}
    key: str | None = None  # the key that indented or "- item" lines continue
    joiner = " "  # how continuation lines join a text value: "\n" after "|", else " "
    flow: list[str] = []  # the lines of a "[a, b" list still open, and where it opened
    flow_line = 0
    for i in range(1, end):
        raw = lines[i]
        text = raw.strip()
        if flow and key is not None and text and (raw[0] in " \t" or text.startswith("]")):
            flow.append(text)  # a list written over several lines
            if text.endswith("]"):
                values[key] = parse_value(" ".join(flow))
                flow = []
            continue
        if flow:
            raise SourceError(path, _UNCLOSED, flow_line)
        if not text or text.startswith("#"):
            continue
        item = text == "-" or text.startswith(("- ", "-\t"))
        if key is not None and (raw[0] in " \t" or item):
            values[key] = _continue(values[key], text, item, joiner)
            continue
        match = _KEY_VALUE.fullmatch(raw)
        if match is None or item:
            raise SourceError(path, "front matter is not valid YAML-like 'key: value'", i + 1)
        key = _unquote(match["key"])
        raw_value = (match["value"] or "").strip()
        joiner = "\n" if raw_value.startswith("|") else " "
        if raw_value.startswith("[") and not raw_value.endswith("]"):
            flow, flow_line = [raw_value], i + 1
            continue
        values[key] = "" if _BLOCK_SCALAR.fullmatch(raw_value) else parse_value(raw_value)
    if flow:
        raise SourceError(path, _UNCLOSED, flow_line)
    return values, end + 1


def front_matter_end(lines: list[str]) -> int:
    """The index of the first line after a closed front-matter block at the top of ``lines``
    (0 when there is none, or it is never closed: then every line is the page's body)."""
    if not lines or lines[0].rstrip() != _FENCE:
        return 0
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in _ENDS), None)
    return 0 if end is None else end + 1


def parse_value(text: str) -> Value:
    """One value: ``[a, b]`` is a list, a quoted string loses its quotes, the rest is as written."""
    if text.startswith("[") and text.endswith("]"):
        return [_unquote(item) for item in _split(text[1:-1]) if item.strip()]
    return _unquote(text)


def _continue(value: Value, text: str, item: bool, joiner: str) -> Value:
    if item and (value == "" or isinstance(value, list)):
        items = value if isinstance(value, list) else []
        entry = text[1:].strip()
        if entry:
            items.append(_unquote(entry))
        return items
    if isinstance(value, list):  # text under a list: keep it with the last item
        return [*value[:-1], f"{value[-1]} {text}".strip()] if value else [text]
    return f"{value}{joiner}{text}" if value else text


def _split(text: str) -> list[str]:
    # Commas inside quotes do not split: [a, "b, c"] is two items.
    items: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return items


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)  # YAML's double-quoted escapes are JSON's, near enough
        except ValueError:
            return text[1:-1]
        return decoded if isinstance(decoded, str) else text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text
