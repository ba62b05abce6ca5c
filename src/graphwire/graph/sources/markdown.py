"""A folder of Markdown pages: a Logseq graph or an Obsidian vault.

Every ``.md`` file is a knowledge node. Its key is its page name as written: the file name
without ``.md``, case kept, with Logseq's file-name escapes decoded (``a___b.md`` and
``a%2Fb.md`` are the page ``a/b``). Pages can sit anywhere under the folder (Logseq's
``pages/`` and ``journals/``, Obsidian's nested folders). Hidden files and folders
(``.obsidian``, ``.git``, ``.trash``, ...) and Logseq's ``logseq/`` folder (config, ``bak/``)
at the top are skipped.

**Pages with the same name.** Pages are ranked by folder depth, then by their path relative to
the vault; the first keeps the bare name and each later one is keyed by its vault-relative path
without ``.md`` (``notes/2024/todo``), so ``[[todo]]`` means the shallowest ``todo.md``, as it
would in a flat Logseq graph.

**Links** (see :mod:`.page` for what counts as one): a target is resolved, in order, to the page
with exactly that key, the page with exactly that vault-relative path (Obsidian's
``[[folder/note]]``; a trailing ``.md`` is dropped), then the same two ignoring case (Logseq is
case-insensitive; the smallest matching key wins), then a page whose path ends with the target
(``[[deeper/note]]`` names ``sub/deeper/note.md``, as in Obsidian; the shallowest, then the
smallest path, wins), then a page's other name, ignoring case: its ``title``, an item of its
``alias``/``aliases`` (so ``[[ML]]`` and ``#ML`` name the page with ``alias:: ML``, and an alias
is no node of its own), or a Logseq journal's date title (``[[Jan 31st, 2024]]`` names
``journals/2024_01_31.md``, in the graph's title format: :mod:`.journal`; the smallest key
wins). Names and targets are compared in Unicode's composed form (NFC). A target matching no
page becomes a placeholder node keyed by the link text (first spelling met, files in path
order; other spellings that differ only in case join it) with metadata
``{"placeholder": true}``. A link to an attachment (``![[diagram.png]]``, ``[[paper.pdf]]``)
that is not a page is no edge. A page's links to itself are dropped; a link made twice is two
edge specs (``Graph.from_data`` adds their weights).

**Nodes**: label = the ``title`` property, else a journal's date title, else the key;
metadata = ``{"path": <vault-relative path>}`` plus the page's front matter and properties (a
property named ``path`` wins).
"""

from __future__ import annotations

import os
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

from tqdm import tqdm

from ..model import EdgeSpec, GraphData, NodeSpec
from .errors import SourceError
from .journal import CONFIG_FILE, DEFAULT_TITLE_FORMAT, journal_date, journal_title, title_format
from .page import Page, parse_page
from .progress import LARGE_FILE_COUNT, show_progress
from .text_file import read_text

SKIPPED_TOP_FOLDERS = frozenset({"logseq"})
"""Folders skipped at the top of the vault, besides hidden ones (Logseq's config and backups)."""

ATTACHMENT_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".bmp", ".avif", ".pdf", ".mp3", ".wav",
    ".ogg", ".m4a", ".flac", ".mp4", ".webm", ".mov", ".mkv", ".canvas", ".excalidraw", ".zip",
})
"""Link targets with these suffixes are attachments, not pages (unless a page has that name)."""


def nfc(text: str) -> str:
    """Text in Unicode's composed form: a file name macOS wrote decomposed (``Cafe`` + a
    combining accent) names the same page as the ``[[Café]]`` a keyboard types."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def page_name(file_name: str) -> str:
    """The page a file holds: ``"a___b.md"`` and ``"a%2Fb.md"`` both hold ``"a/b"``."""
    stem = file_name[:-3] if file_name.lower().endswith(".md") else file_name
    return nfc(unquote(stem.replace("___", "/")))


def load_markdown_vault(
    path: str | os.PathLike[str], *, progress: bool | None = None,
    pages: dict[str, Page] | None = None,
) -> GraphData:
    """Load every page of a vault; ``progress`` as in :func:`~.load_source`. ``pages``, when
    given, receives every page's parse by vault-relative path (a live source keeps them).

    A page that cannot be read or parsed (not UTF-8, say), or a subfolder that cannot be listed,
    is left out and named in the result's ``skipped``: one bad note does not keep the vault
    from being served. A vault none of whose pages can be read is a SourceError."""
    root = Path(path)
    if not root.is_dir():
        raise SourceError(path, "no such folder" if not root.exists() else "is not a folder")
    skipped: list[SourceError] = []
    files = page_files(root, skipped)
    if not files:
        raise SourceError(path, "has no Markdown pages (.md files)")
    show = show_progress(progress, len(files), LARGE_FILE_COUNT)
    parsed: dict[str, Page] = {}
    digit_tags = is_logseq(root)
    for rel in tqdm(files, disable=not show, file=sys.stderr, unit="file"):
        try:
            parsed[rel] = read_page(root, rel, digit_tags)
        except SourceError as exc:
            skipped.append(exc)
    if not parsed:
        raise SourceError(path, f"has no readable Markdown pages (the first: {skipped[0]})")
    if pages is not None:
        pages.update(parsed)
    data = assemble(root, parsed, title_format(root))
    data.skipped = [str(exc) for exc in skipped]
    data.warnings = [page.problem for _, page in sorted(parsed.items()) if page.problem]
    return data


def is_logseq(root: str | os.PathLike[str]) -> bool:
    """Whether a vault is a Logseq graph (it has ``logseq/config.edn``), whose ``#2024`` is a
    tag; elsewhere (Obsidian) it is text."""
    return os.path.isfile(os.path.join(os.fspath(root), CONFIG_FILE))


def read_page(root: Path, rel: str, digit_tags: bool = False) -> Page:
    """Read and parse one page (``rel``: its vault-relative POSIX path); SourceError if not.
    ``digit_tags`` as in :func:`~.page.parse_page` (:func:`is_logseq` tells)."""
    file = os.path.join(os.fspath(root), rel)
    return parse_page(file, read_text(file), rel.rpartition("/")[0], digit_tags=digit_tags)


def assemble(root: Path, pages: dict[str, Page],
             journal_format: str = DEFAULT_TITLE_FORMAT) -> GraphData:
    """The graph of a vault from its parsed pages (by vault-relative path): keys, links,
    placeholders and nodes by the rules of this module."""
    files = sorted(pages)
    keys = page_keys(root, files)
    resolver = Resolver({rel[:-3]: key for rel, key in keys.items()})
    for rel, key in keys.items():
        for name in page_names(rel, pages[rel], journal_format):
            resolver.add_name(name, key)
    edges: list[EdgeSpec] = []
    for rel in files:
        key = keys[rel]
        for text, kind in pages[rel].references:
            target = resolver.resolve(text)
            if target is not None and target != key:
                edges.append(EdgeSpec(key, target, 1.0, kind))

    nodes = [
        NodeSpec(key, label=page_label(rel, pages[rel], key, journal_format),
                 metadata={"path": rel, **pages[rel].metadata})
        for rel, key in keys.items()
    ]
    nodes += [
        NodeSpec(key, label=key, metadata={"placeholder": True})
        for key in resolver.placeholders.values()
    ]
    return GraphData(nodes=nodes, edges=edges, name=root.resolve().name or "vault")


def page_names(rel: str, page: Page, journal_format: str = DEFAULT_TITLE_FORMAT) -> set[str]:
    """A page's other names, which links may name it by: its title, its aliases, and a Logseq
    journal's date title."""
    more = (page.title, _journal_name(rel, journal_format))
    return {*page.aliases, *(name for name in more if name)}


def page_label(rel: str, page: Page, key: str,
               journal_format: str = DEFAULT_TITLE_FORMAT) -> str:
    """What a page's node shows: its title, else a journal's date title, else its key."""
    return page.title or _journal_name(rel, journal_format) or key


def _journal_name(rel: str, journal_format: str) -> str | None:
    day = journal_date(rel)
    return None if day is None else journal_title(day, journal_format)


def is_page(rel: str) -> bool:
    """Whether a vault-relative POSIX path names a page this module reads (a ``.md`` file
    outside hidden folders and the top ``logseq/`` folder)."""
    parts = rel.split("/")
    if any(p.startswith(".") for p in parts):
        return False
    if len(parts) > 1 and parts[0] in SKIPPED_TOP_FOLDERS:
        return False
    return parts[-1].lower().endswith(".md")


def page_files(root: Path, skipped: list[SourceError] | None = None) -> list[str]:
    """Vault-relative POSIX paths of the pages under ``root``, sorted. A folder that cannot be
    read is a SourceError, or, given ``skipped``, a subfolder is left out and named there.

    A symbolic link to a folder outside the vault is read as a folder of the vault (once,
    whatever the links to it, loops included); a link to a folder inside the vault is not
    followed (its pages are read where they lie)."""
    found: list[str] = []

    def fail(error: OSError) -> None:
        problem = SourceError(error.filename or root,
                              f"cannot be read ({error.strerror or error})")
        if skipped is None or Path(error.filename or root) == root:
            raise problem
        skipped.append(problem)

    inside = os.path.realpath(root)
    walked = {inside}  # the real folders read so far

    def follow(folder: str, name: str, top: bool) -> bool:
        if name.startswith(".") or (top and name in SKIPPED_TOP_FOLDERS):
            return False
        full = os.path.join(folder, name)
        real = os.path.realpath(full)  # every folder once (links can make loops)
        if real in walked or (os.path.islink(full) and (
                _within(real, inside) or not os.path.isdir(real))):
            return False
        walked.add(real)
        return True

    for folder, dirs, names in os.walk(root, onerror=fail, followlinks=True):
        top = Path(folder) == root
        dirs[:] = [d for d in sorted(dirs) if follow(folder, d, top)]
        rel_folder = Path(folder).relative_to(root)
        found.extend(
            (rel_folder / name).as_posix()
            for name in names
            if name.lower().endswith(".md") and not name.startswith(".")
        )
    return sorted(found)


def _within(path: str, folder: str) -> bool:
    """Whether an absolute path lies in a folder (not on another drive, say)."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:
        return False


def page_keys(vault: str | os.PathLike[str], files: list[str]) -> dict[str, str]:
    """The key of each file (the module's rule for pages with the same name), in path order."""
    ranked = sorted(files, key=lambda rel: (rel.count("/"), rel))
    chosen: dict[str, str] = {}
    taken: set[str] = set()
    later: list[str] = []
    for rel in ranked:
        name = page_name(rel.rsplit("/", 1)[-1])
        if name and name not in taken:
            chosen[rel] = name
            taken.add(name)
        else:
            later.append(rel)
    for rel in later:
        key = next((k for k in (rel[:-3], rel) if k not in taken), None)
        if key is None:
            raise SourceError(os.path.join(os.fspath(vault), rel), "its page key is taken twice")
        chosen[rel] = key
        taken.add(key)
    return {rel: chosen[rel] for rel in files}


def link_target(text: str) -> str:
    """A link's text as it is looked up: stripped, without a trailing ``.md``."""
    target = nfc(text.strip())
    if target.lower().endswith(".md") and len(target) > 3:
        target = target[:-3]
    return target


def is_attachment(target: str) -> bool:
    """Whether a link target that is no page names an attachment (no edge, no placeholder)."""
    return os.path.splitext(target)[1].lower() in ATTACHMENT_SUFFIXES


def path_tails(path: str) -> list[str]:
    """The case-folded ends of a vault path that a link may name it by, each with a folder:
    ``"a/b/c"`` gives ``["b/c"]`` (``"c"`` is a page name, looked up as one)."""
    parts = path.casefold().split("/")
    return ["/".join(parts[i:]) for i in range(1, len(parts) - 1)]


def _shallow_first(path: str) -> tuple[int, str]:
    return path.count("/"), path


def _discard(table: dict[str, set[str]], folded: str, item: str) -> None:
    """Take ``item`` out of the group ``folded`` names, and the group once it is empty."""
    group = table.get(folded)
    if group is not None:
        group.discard(item)
        if not group:
            del table[folded]


class Resolver:
    """Link text → node key, creating placeholders for pages that do not exist.

    ``by_path``: vault-relative path without ``.md`` → page key. Pages can be added and removed
    later (:meth:`add`, :meth:`remove`); a case-folded match picks the smallest key (or the key
    of the smallest path), whatever the order pages came in.
    """

    def __init__(self, by_path: dict[str, str]) -> None:
        self.keys: set[str] = set()
        self.by_path: dict[str, str] = {}
        self._folded: dict[str, set[str]] = {}
        self._folded_paths: dict[str, set[str]] = {}
        self._tails: dict[str, set[str]] = {}  # folded path tail ("b/c" of "a/b/c") -> paths
        self._names: dict[str, set[str]] = {}  # folded other name (title, alias) -> keys
        for path, key in by_path.items():
            self.add(path, key)
        self.placeholders: dict[str, str] = {}  # casefolded text → first spelling

    def add(self, path: str, key: str) -> None:
        """A page at ``path`` (without ``.md``) with this key."""
        path = nfc(path)
        self.keys.add(key)
        self.by_path[path] = key
        self._folded.setdefault(key.casefold(), set()).add(key)
        self._folded_paths.setdefault(path.casefold(), set()).add(path)
        for tail in path_tails(path):
            self._tails.setdefault(tail, set()).add(path)

    def remove(self, path: str, key: str) -> None:
        """The page at ``path`` with this key is gone."""
        path = nfc(path)
        self.keys.discard(key)
        self.by_path.pop(path, None)
        _discard(self._folded, key.casefold(), key)
        _discard(self._folded_paths, path.casefold(), path)
        for tail in path_tails(path):
            _discard(self._tails, tail, path)

    def add_name(self, name: str, key: str) -> None:
        """Another name of the page with this key (its title or an alias)."""
        self._names.setdefault(nfc(name).casefold(), set()).add(key)

    def remove_name(self, name: str, key: str) -> None:
        """The page with this key no longer has this name."""
        _discard(self._names, nfc(name).casefold(), key)

    def page(self, target: str) -> str | None:
        """The key of the page a (normalised, non-empty) target names, if any."""
        if target in self.keys:
            return target
        if target in self.by_path:
            return self.by_path[target]
        folded = target.casefold()
        keys = self._folded.get(folded)
        if keys:
            return min(keys)
        paths = self._folded_paths.get(folded)
        if paths:
            return self.by_path[min(paths)]
        paths = self._tails.get(folded)
        if paths:
            return self.by_path[min(paths, key=_shallow_first)]
        keys = self._names.get(folded)
        return min(keys) if keys else None

    def resolve(self, text: str) -> str | None:
        """The key a link's text names: a page, or a placeholder (created on first use), or
        None (empty, or an attachment)."""
        target = link_target(text)
        if not target:
            return None
        found = self.page(target)
        if found is not None:
            return found
        if is_attachment(target):
            return None
        return self.placeholders.setdefault(target.casefold(), target)
