"""A source that follows its files: re-read what changed, and say what changed by key.

:class:`LiveSource` holds what the source said last (its canonical form, see
:mod:`graphwire.graph.diff`) and turns a set of changed paths into the smallest
:class:`~graphwire.graph.diff.TopologyDiff`:

- a **vault** keeps every page's parse; a created, edited or deleted page is read again alone,
  and a change it cannot place (a folder renamed or deleted) rescans the folder, reading again
  only pages whose size or modification time changed. The index of the vault
  (:mod:`.sources.vault_index`, the rules of :mod:`.sources.markdown`) updates the graph for
  those pages alone and says what changed;
- a **file** (JSON, GraphML, GEXF, CSV) is read again whole and compared by node key.

A page or file that fails to read or parse is reported in :attr:`SourceUpdate.errors` and
changes nothing: a page keeps its last good parse (a new page stays out), a file its last good
graph. No I/O happens on import or construction; every method is synchronous (run it in a
thread) and not thread-safe (one caller at a time).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

from .diff import Canonical, TopologyDiff, canonical, diff
from .model import GraphData, GraphError
from .sources import SourceError, load_source
from .sources.journal import CONFIG_FILE, journal_date, title_format
from .sources.markdown import is_logseq, is_page, load_markdown_vault, page_files, read_page
from .sources.page import Page
from .sources.vault_index import VaultIndex


@dataclass(slots=True)
class SourceUpdate:
    """What one batch of file changes did to the graph."""

    diff: TopologyDiff = field(default_factory=TopologyDiff)
    errors: list[SourceError] = field(default_factory=list)
    left_out: list[SourceError] = field(default_factory=list)
    """Those of :attr:`errors` whose page was not in the graph before (a new page that does
    not read): it stays out until it reads; the others' pages keep their last good parse."""
    warnings: list[str] = field(default_factory=list)
    """Pages read but not whole (front matter ignored: :attr:`Page.problem`)."""
    files_read: int = 0


class LiveSource:
    """The source at ``path`` (None: the bundled demo, which never changes)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self.is_vault = self.path is not None and self.path.is_dir()
        self._baseline = Canonical()
        self._index = VaultIndex(self.path or Path("."))
        self._digit_tags = False  # "#2024" is a tag: the vault is a Logseq graph
        self._stats: dict[str, tuple[int, int]] = {}
        self._folders: frozenset[str] = frozenset()
        self._folder_pages: dict[str, int] = {}

    @property
    def identity(self) -> str:
        """A name for this source that stays the same across restarts (its resolved path)."""
        return "demo" if self.path is None else str(self.path.resolve())

    @property
    def watchable(self) -> bool:
        """Whether there are files to watch (not the demo)."""
        return self.path is not None

    @property
    def watch_root(self) -> Path:
        """What to watch: the vault's folder, or the folder holding the file (editors replace
        a file by renaming a new one over it, which a watch on the file itself would lose)."""
        assert self.path is not None
        return self.path if self.is_vault else self.path.resolve().parent

    def concerns(self, path: str) -> bool:
        """Whether a changed path can matter to this source (the watcher's filter)."""
        if self.path is None:
            return False
        if not self.is_vault:
            return os.path.abspath(path) == str(self.path.resolve())
        rel = self._rel(path)
        if rel is None or any(p.startswith(".") for p in rel.split("/")):
            return False
        # pages, folders (a folder renamed or deleted moves or removes its pages), and the
        # Logseq config that says how journal pages are named
        return (is_page(rel) or rel in self._folders or rel == CONFIG_FILE
                or os.path.isdir(path))

    # -- reading ---------------------------------------------------------------------------
    def load(self, *, progress: bool | None = None) -> GraphData:
        """Read the whole source (SourceError on any failure) and take it as the baseline."""
        if self.is_vault:
            assert self.path is not None
            pages: dict[str, Page] = {}
            data = load_markdown_vault(self.path, progress=progress, pages=pages)
            index = VaultIndex(self.path, title_format(self.path))
            index.apply(pages)
            self._index = index
            self._digit_tags = is_logseq(self.path)
            self._stats = {rel: st for rel in pages if (st := self._stat(rel)) is not None}
            self._note_folders()
        else:
            data = load_source(self.path, progress=progress)
            self._baseline = self._canonical(data)
        return data

    @property
    def graph(self) -> Canonical:
        """The graph as the source said it last, by key."""
        return self._index.graph if self.is_vault else self._baseline

    def reload(self) -> GraphData:
        """Read the whole source again (SourceError, and nothing changes, on failure)."""
        keep = (self._baseline, self._index, self._stats)
        try:
            return self.load(progress=False)
        except SourceError:
            self._baseline, self._index, self._stats = keep
            raise

    def update(self, changed: Iterable[str] | None = None) -> SourceUpdate:
        """Read what changed (absolute paths; None: look at everything) and return the change
        against the baseline, which becomes the new baseline."""
        if self.path is None:
            return SourceUpdate()
        out = SourceUpdate()
        try:
            if self.is_vault:
                out.diff = self._update_vault(changed, out)
            else:
                new = self._canonical(self._update_file(out))
                out.diff = diff(self._baseline, new)
                self._baseline = new
        except SourceError as exc:
            out.errors.append(exc)
        return out

    def _canonical(self, data: GraphData) -> Canonical:
        try:
            return canonical(data)
        except GraphError as exc:
            raise SourceError(self.path or "demo", str(exc)) from None

    def _update_file(self, out: SourceUpdate) -> GraphData:
        out.files_read = 1
        return load_source(self.path, progress=False)

    def _update_vault(self, changed: Iterable[str] | None, out: SourceUpdate) -> TopologyDiff:
        assert self.path is not None
        pages = self._index.pages
        todo: set[str] = set()
        rescan = config = changed is None
        for path in changed or ():
            rel = self._rel(path)
            if rel is None or not self.concerns(path):
                continue
            if rel == CONFIG_FILE:
                config = True
            elif is_page(rel) and (rel in pages or not self._through_link(rel)):
                todo.add(rel)
            else:  # a folder appeared, went, or was renamed; or a linked folder's page
                rescan = True  # by another way in than the one read (page_files)
        unlisted: set[str] = set()  # gone from the listing, even if a path still opens it
        if rescan:
            files = set(page_files(self.path))
            unlisted = pages.keys() - files
            todo |= unlisted
            todo |= {rel for rel in files if self._stats.get(rel) != self._stat(rel)}
        changes: dict[str, Page | None] = {}
        stats: dict[str, tuple[int, int] | None] = {}
        digit_tags = is_logseq(self.path)
        if digit_tags != self._digit_tags:  # a Logseq config came or went: "#2024" is read
            todo |= pages.keys() - unlisted  # anew in every page
            self._digit_tags = digit_tags
        for rel in sorted(todo):
            stat = None if rel in unlisted else self._stat(rel)
            if stat is None:
                if rel in pages:
                    changes[rel], stats[rel] = None, None
                continue
            out.files_read += 1
            try:
                page = read_page(self.path, rel, digit_tags)
            except SourceError as exc:
                out.errors.append(exc)  # the page keeps its last good parse, if it had one
                if rel not in pages:
                    out.left_out.append(exc)
                continue
            changes[rel], stats[rel] = page, stat
            if page.problem is not None:
                out.warnings.append(page.problem)
        if config and (fmt := title_format(self.path)) != self._index.journal_format:
            self._index.journal_format = fmt  # every journal's name and label change
            for rel, page in pages.items():
                if journal_date(rel) is not None:
                    changes.setdefault(rel, page)
        came = [rel for rel, page in changes.items() if page is not None and rel not in pages]
        gone = [rel for rel, page in changes.items() if page is None]
        change = self._index.apply(changes)  # a SourceError here changes nothing
        for rel, st in stats.items():
            if st is None:
                self._stats.pop(rel, None)
            else:
                self._stats[rel] = st
        if came or gone:
            self._note_folders(came, gone)
        return change

    def _note_folders(self, came: Iterable[str] = (), gone: Iterable[str] = ()) -> None:
        """Count the pages under each folder (all of them when nothing is named) and remember
        the folders that hold some (read by :meth:`concerns` in another thread: the set is
        replaced, never changed in place)."""
        counts = self._folder_pages
        if not came and not gone:
            counts.clear()
            came = self._index.pages
        for rels, step in ((came, 1), (gone, -1)):
            for rel in rels:
                parts = rel.split("/")[:-1]
                for i in range(len(parts)):
                    folder = "/".join(parts[: i + 1])
                    counts[folder] = counts.get(folder, 0) + step
                    if counts[folder] <= 0:
                        del counts[folder]
        self._folders = frozenset(counts)

    def _through_link(self, rel: str) -> bool:
        """Whether a path's folder is reached through a symbolic link (the watcher follows
        links too, and names a linked folder's page by whatever way in it found)."""
        assert self.path is not None
        folder = rel.rpartition("/")[0]
        if not folder:
            return False
        root = os.path.realpath(self.path)
        return os.path.realpath(os.path.join(root, folder)) != os.path.join(root, folder)

    def _stat(self, rel: str) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(os.path.join(self.path, rel))
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if S_ISREG(st.st_mode) else None

    def _rel(self, path: str) -> str | None:
        assert self.path is not None
        try:
            rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.path))
        except ValueError:
            return None
        text = rel.as_posix()
        return None if text in ("", ".") else text
