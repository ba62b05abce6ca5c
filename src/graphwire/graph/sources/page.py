"""One Markdown page of a Logseq or Obsidian vault: its properties and the references it makes.

- Front matter (see :mod:`.front_matter`; front matter it cannot read is ignored, and said so
  in :attr:`Page.problem`) and Logseq page properties (``key:: value`` lines at
  the top of the page, before the first block) become metadata; properties win over front
  matter. ``alias``/``aliases``/``tags``/``tag`` values are always lists (``[[b]]`` and ``#b``
  items lose their brackets and ``#``); another property is a list only when it is a comma list
  of ``[[refs]]``/``#tags``, else the string as written.
- References: ``alias``/``aliases`` items (type ``"alias"``) and ``tags``/``tag`` items
  (``"tag"``), then ``[[wiki links]]`` (``"link"``; the target is the text before ``|``, or a
  table row's ``\\|``, and ``#``) and ``#tag`` / ``#[[multi word tag]]`` (``"tag"``) in the
  other property values and in the body, in order (front matter values give links only: ``#``
  is not a tag in YAML).
- Markdown links to pages, ``[text](Other%20Page.md)``, ``[text](<Other Page.md>)`` or
  ``[text](Name)`` (``"link"``; the target is URL-decoded and loses its ``#heading``), count
  like wiki links; a link to a URL (with a scheme, or a path without ``.md``), to a heading of
  the same page or to a file other than ``.md`` does not. A ``#tag`` in the link's text is a
  tag.
- A link target that starts with ``./`` or ``../`` is relative to the page's folder (Obsidian
  writes these when its links are set to relative paths); any other is a vault path or a name.
- A tag is ``#`` after the start of a line or whitespace, then a word character; it runs over
  word characters, ``-`` and ``/`` and ends on a word character. Headings (``# Title``) and
  ``#`` inside URLs are therefore not tags.
  A tag of digits alone (``#1984``, ``issue #12``) is no tag, as in Obsidian, except in a
  Logseq graph (``digit_tags``), where Logseq makes it a page.
- Fenced code blocks (``````` or ``~~~``, also inside a Logseq bullet or a block quote or
  callout, ``> `````) and inline code spans are ignored.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .errors import SourceError
from .front_matter import Value, front_matter, front_matter_end

ALIAS_KEYS = frozenset({"alias", "aliases"})
"""Property keys (any case) whose items are other names of the page."""

TAG_KEYS = frozenset({"tags", "tag"})
"""Property keys (any case) whose items are tags of the page."""

_PROPERTY = re.compile(r"\s*(?:-\s+)?(?P<key>[\w\-./]+)::(?:\s+(?P<value>.*?))?\s*")
_QUOTE = r"\s*(?:>\s*)*"  # block quote markers (a callout's "> ")
_FENCE = re.compile(rf"(?P<quote>{_QUOTE})(?:[-*+]\s+)?(?P<fence>`{{3,}}|~{{3,}})(?P<rest>.*)")
_QUOTE_MARKS = re.compile(_QUOTE)
_INLINE_CODE = re.compile(r"(`+).+?\1")
_BRACKET_TAG = re.compile(r"(?<!\S)#\[\[(?P<target>[^\[\]]+)\]\]")
_WIKI_LINK = re.compile(r"\[\[(?P<target>[^\[\]]+)\]\]")
_TAG = re.compile(r"(?<!\S)#(?P<target>\w(?:[\w\-/]*\w)?)")
_REF_ITEM = re.compile(r"#?\[\[(?P<bracketed>[^\[\]]+)\]\]|#(?P<tag>\S+)")
_MD_LINK = re.compile(
    r"\[(?P<text>[^\[\]]*)\]\((?P<target><[^<>]+>|[^()\s]+)(?:\s+\"[^\"]*\")?\)")
_SCHEME = re.compile(r"[A-Za-z][\w+.-]*:")


@dataclass(slots=True)
class Page:
    """What a page says about itself and what it points to."""

    metadata: dict[str, Any] = field(default_factory=dict)
    """Front matter and page properties (strings, or lists of strings)."""
    references: list[tuple[str, str]] = field(default_factory=list)
    """``(target text, edge type)`` pairs in order of appearance, one per mention."""
    problem: str | None = None
    """Why the page's front matter was ignored (it is not the YAML-like ``key: value`` this
    reader knows, or it is never closed), naming the file and line; None when it was read.
    The page is kept, as Obsidian and Logseq show such a note without its properties."""

    @property
    def aliases(self) -> list[str]:
        """The ``alias``/``aliases`` property items (any case of the key)."""
        return [item for key, value in self.metadata.items() if key.lower() in ALIAS_KEYS
                for item in value]

    @property
    def title(self) -> str | None:
        """The ``title`` property (any case of the key) when it is a non-empty string."""
        for key, value in self.metadata.items():
            if key.lower() == "title" and isinstance(value, str) and value.strip():
                return value.strip()
        return None


def parse_page(path: str | os.PathLike[str], text: str, folder: str = "", *,
               digit_tags: bool = False) -> Page:
    """Read one page's text (``\\n`` line endings); ``path`` names the file in errors, and
    ``folder`` is the vault-relative POSIX folder that holds it (links that start with ``./``
    or ``../`` are relative to it). ``digit_tags``: ``#2024`` is a tag (Logseq), not text
    (Obsidian)."""
    lines = text.split("\n")
    page = Page()
    try:
        matter, start = front_matter(path, lines)
    except SourceError as exc:
        matter, start = {}, front_matter_end(lines)
        page.problem = f"{exc} (its properties are ignored; the page is kept)"
    linked: list[str] = []  # front-matter text to scan for [[links]]
    scanned: list[str] = []  # property text to scan for links and tags like the body
    for key, value in matter.items():
        page.metadata[key] = _special(key, value)
        if key.lower() not in ALIAS_KEYS | TAG_KEYS:
            linked += [value] if isinstance(value, str) else value
    start = _skip_blank(lines, start)
    while start < len(lines) and (match := _PROPERTY.fullmatch(lines[start])):
        key, raw = match["key"], match["value"] or ""
        page.metadata[key] = _special(key, _property_value(key, raw))
        if key.lower() not in ALIAS_KEYS | TAG_KEYS:
            scanned.append(raw)
        start += 1
    for key, value in page.metadata.items():
        kind = "alias" if key.lower() in ALIAS_KEYS else "tag" if key.lower() in TAG_KEYS else ""
        if kind:
            page.references.extend((item, kind) for item in value)
    for value_text in linked:
        page.references.extend((target, "link") for target in _links_only(value_text))
    for line in [*scanned, *_without_code(lines[start:])]:
        page.references.extend(_line_references(line, digit_tags))
    if any(t.startswith(("./", "../")) for t, _ in page.references):
        page.references = [(_relative(t, folder) if kind == "link" else t, kind)
                           for t, kind in page.references]
    return page


def _relative(target: str, folder: str) -> str:
    """A ``./`` or ``../`` target as a vault-relative path (as written if it leaves the vault)."""
    if not target.startswith(("./", "../")):
        return target
    joined = posixpath.normpath(posixpath.join(folder, target))
    return target if joined == ".." or joined.startswith("../") else joined


def _skip_blank(lines: list[str], start: int) -> int:
    while start < len(lines) and not lines[start].strip():
        start += 1
    return start


def _special(key: str, value: Value) -> Value:
    if key.lower() not in ALIAS_KEYS | TAG_KEYS:
        return value
    items = _split_items(value) if isinstance(value, str) else value
    return [ref for ref in (_strip_ref(item) for item in items) if ref]


def _property_value(key: str, raw: str) -> Value:
    if key.lower() in ALIAS_KEYS | TAG_KEYS:
        return _split_items(raw)
    items = _split_items(raw)
    if len(items) > 1 and all(_REF_ITEM.fullmatch(item) for item in items):
        return [_strip_ref(item) for item in items]
    return raw


def _split_items(text: str) -> list[str]:
    # Commas inside [[...]] do not split: "a, [[b, c]]" is two items.
    items: list[str] = []
    depth = 0
    current = ""
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("[[", "]]"):
            depth = depth + 1 if pair == "[[" else max(depth - 1, 0)
            current += pair
            i += 2
            continue
        if text[i] == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    items.append(current)
    return [item.strip() for item in items if item.strip()]


def _strip_ref(item: str) -> str:
    match = _REF_ITEM.fullmatch(item.strip())
    if match is None:
        return item.strip()
    return (match["bracketed"] or match["tag"]).strip()


def _without_code(lines: list[str]) -> list[str]:
    kept: list[str] = []
    fence = ""  # the opening fence while inside a fenced block
    quotes = 0  # the block quote depth (">" markers) the fence was opened in
    for line in lines:
        match = _FENCE.match(line)
        if fence and _quote_depth(line) < quotes:
            fence = ""  # the quote (a callout) ended, and the fence with it
        if fence:
            if (
                match is not None
                and match["fence"][0] == fence[0]
                and len(match["fence"]) >= len(fence)
                and not match["rest"].strip()
            ):
                fence = ""
            continue
        if match is not None and not (match["fence"][0] == "`" and "`" in match["rest"]):
            fence, quotes = match["fence"], match["quote"].count(">")
            continue
        kept.append(_INLINE_CODE.sub(" ", line) if "`" in line else line)
    return kept


def _quote_depth(line: str) -> int:
    """How many block quote markers (``>``) a line starts with."""
    match = _QUOTE_MARKS.match(line)
    return match.group().count(">") if match else 0


def _link_target(text: str) -> str:
    # "[[a\\|b]]" is how a link with shown text is written inside a table row
    return text.split("|", 1)[0].split("#", 1)[0].removesuffix("\\").strip()


def _links_only(text: str) -> list[str]:
    return [t for m in _WIKI_LINK.finditer(text) if (t := _link_target(m["target"]))]


def _md_target(raw: str) -> str:
    """The page a Markdown link ``[text](raw)`` names ("" when it names none: a URL, a heading
    of this page, a file that is not a page)."""
    target = raw[1:-1] if raw.startswith("<") else raw
    if target.startswith("#") or _SCHEME.match(target):
        return ""
    target = unquote(target.split("#", 1)[0]).strip()
    if target.lower().endswith(".md"):
        return target
    # without .md only a bare page name: "docs.python.org/3/library" is a web address
    return target if "/" not in target and "." not in target else ""


def _line_references(line: str, digit_tags: bool) -> list[tuple[str, str]]:
    if "[[" not in line and "#" not in line and "](" not in line:
        return []
    found: list[tuple[int, str, str]] = []  # (offset, target, type), sorted at the end

    def take(match: re.Match[str], target: str, kind: str) -> str:
        if target:
            found.append((match.start(), target, kind))
        return " " * (match.end() - match.start())  # blank it so later patterns skip it

    line = _BRACKET_TAG.sub(lambda m: take(m, m["target"].strip(), "tag"), line)
    line = _WIKI_LINK.sub(lambda m: take(m, _link_target(m["target"]), "link"), line)
    def md_link(match: re.Match[str]) -> str:  # blank the target; keep the text's #tags
        blank = take(match, _md_target(match["target"]), "link")
        return f"[{match['text']}{blank[len(match['text']) + 1:]}"

    if "](" in line:
        line = _MD_LINK.sub(md_link, line)
    def tag(match: re.Match[str]) -> str:  # Obsidian: "#1984" is no tag, nor "issue #12"
        target = match["target"]
        return take(match, target if digit_tags or not target.isdigit() else "", "tag")

    _TAG.sub(tag, line)
    return [(target, kind) for _, target, kind in sorted(found, key=lambda f: f[0])]
