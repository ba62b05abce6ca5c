"""A vault's graph kept current page by page: the change of a few pages costs a few pages.

:func:`~.markdown.assemble` builds a vault's graph from every page's parse; reading it all again
after each save would cost the whole vault (a second at 10,000 pages). :class:`VaultIndex` keeps
the same graph (by key, as :class:`~graphwire.graph.diff.Canonical`) together with what each
page contributes, and applies page changes to it, returning the
:class:`~graphwire.graph.diff.TopologyDiff`. It follows :mod:`.markdown`'s rules exactly (a test
compares it with a fresh load after random edits):

- page keys are recomputed over the file list (a sort: cheap) and a page whose key changed (a
  page of the same name appeared or went) counts as changed;
- when the set of page keys changes, the links that may now resolve differently are those whose
  case-folded text is a case-folded key, path or path's tail that came or went; an index of
  the texts each page mentions finds their pages, which are resolved again;
- a page's other names (title, aliases, a journal's date title) are kept per page; the links
  whose case-folded text is a name that came to or went from a page are resolved again;
- a placeholder is keyed by the first spelling of its text in path order, so it is kept per page
  (the first spelling in each page) and its key is that of the smallest path;
- an edge between two nodes depends only on the pages at its two ends: its weight is the number
  of mentions either way, its type the type of the last mention in path order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ..diff import Canonical, EdgeKey, NodeState, TopologyDiff, edge_key
from ..model import EdgeSpec, NodeType
from .journal import DEFAULT_TITLE_FORMAT
from .markdown import (
    Resolver,
    is_attachment,
    link_target,
    nfc,
    page_keys,
    page_label,
    page_name,
    page_names,
    path_tails,
)
from .page import Page

_Ref = tuple[str | None, str | None, str]
"""A resolved mention: (page key, or None) / (placeholder's folded text, or None) / edge type."""


class VaultIndex:
    """The graph of a vault's pages, updated by :meth:`apply`."""

    def __init__(self, root: Path, journal_format: str = DEFAULT_TITLE_FORMAT) -> None:
        self.root = root
        self.journal_format = journal_format
        self.graph = Canonical()
        self.pages: dict[str, Page] = {}
        self._keys: dict[str, str] = {}  # rel -> key
        self._rel_of: dict[str, str] = {}  # page key -> rel
        self._resolver = Resolver({})
        self._refs: dict[str, list[_Ref]] = {}  # rel -> its mentions, resolved, in order
        self._texts: dict[str, set[str]] = {}  # rel -> folded link texts it mentions
        self._mentions: dict[str, set[str]] = {}  # folded link text -> rels mentioning it
        self._spellings: dict[str, dict[str, str]] = {}  # placeholder folded -> rel -> spelling
        self._placeholder: dict[str, str] = {}  # placeholder folded -> its key
        self._named: dict[str, set[str]] = {}  # page name -> rels of the files with that name
        self._renamed = False  # some page is keyed by its path (its name was taken)
        self._names_of: dict[str, tuple[str, set[str]]] = {}  # rel -> (key, its other names)

    def apply(self, changes: Mapping[str, Page | None]) -> TopologyDiff:
        """Apply page changes (``rel`` → its new parse, or None when the file is gone) and
        return what changed. A SourceError (two pages would get the same key) changes nothing."""
        gone = {rel for rel, page in changes.items() if page is None and rel in self.pages}
        came = {rel for rel, page in changes.items() if page is not None
                and rel not in self.pages}
        old_keys = self._keys
        keys, rekeyed = self._new_keys(came, gone)  # before anything changes: it may raise
        for rel, page in changes.items():
            if page is None:
                self.pages.pop(rel, None)
            else:
                self.pages[rel] = page

        touched_keys: set[str] = set()  # nodes whose state may have changed
        touched_pairs: set[EdgeKey] = set()
        touched_placeholders: set[str] = set()
        redo = (changes.keys() - gone) | rekeyed
        if gone or rekeyed or came:
            for rel in gone | rekeyed:
                self._resolver.remove(rel[:-3], old_keys[rel])
                self._rel_of.pop(old_keys[rel], None)
            for rel in came | rekeyed:
                self._resolver.add(rel[:-3], keys[rel])
                self._rel_of[keys[rel]] = rel
            self._keys = keys
            for rel in gone | rekeyed | came:
                for key in {old_keys.get(rel), keys.get(rel)} - {None}:
                    assert key is not None
                    touched_keys.add(key)
                    redo |= self._mentions.get(key.casefold(), set())
                path = nfc(rel[:-3])
                for text in (path.casefold(), *path_tails(path)):
                    redo |= self._mentions.get(text, set())
        for rel in changes.keys() - gone:
            touched_keys.add(keys[rel])
        # other names (titles, aliases) that came or went: every old (name, key) pair is taken
        # back before any new one is added, as one page's old key may be another's new key
        renamed = changes.keys() | rekeyed
        before = {rel: self._names_of.pop(rel, ("", set())) for rel in renamed}
        for key, names in before.values():
            for name in names:
                self._resolver.remove_name(name, key)
        for rel in renamed:
            key, names = before[rel]
            now = (page_names(rel, self.pages[rel], self.journal_format) if rel not in gone
                   else set())
            for name in now:
                self._resolver.add_name(name, keys[rel])
            if now:
                self._names_of[rel] = (keys[rel], now)
            moved = names ^ now if key == keys.get(rel) else names | now
            for name in moved:
                redo |= self._mentions.get(nfc(name).casefold(), set())
        redo -= gone

        for rel in gone | redo:  # take back what these pages said
            self._forget(rel, old_keys.get(rel), touched_pairs, touched_placeholders)
        for rel in sorted(redo):
            self._read(rel, touched_pairs, touched_placeholders)
        for folded in touched_placeholders:  # a placeholder's key: its first spelling
            old = self._placeholder.pop(folded, None)
            spellings = self._spellings.get(folded)
            new = spellings[min(spellings)] if spellings else None
            if new is not None:
                self._placeholder[folded] = new
            for end in (old, new):
                if end is not None:
                    touched_keys.add(end)
                    if old != new:  # every edge to it changes its end
                        touched_pairs |= {edge_key(self._keys[rel], end) for rel in spellings or ()}
        for rel in redo:  # the edges to placeholders, now that their keys are known
            key = self._keys[rel]
            touched_pairs |= {edge_key(key, end) for ref in self._refs[rel]
                              if ref[1] is not None and (end := self._end(ref)) is not None}
        return self._settle(touched_keys, touched_pairs)

    def _new_keys(self, came: set[str], gone: set[str]) -> tuple[dict[str, str], set[str]]:
        """Every page's key after files came and went, and the pages that stay whose key
        changed (the old dict itself when no file came or went).

        While every page is keyed by its name, a file whose name no other file has takes it and
        changes no other key; otherwise the keys are computed again for all files (markdown's
        rule for pages with the same name)."""
        if not came and not gone:
            return self._keys, set()
        names = {rel: page_name(rel.rsplit("/", 1)[-1]) for rel in came | gone}
        simple = not self._renamed and len(set(names.values())) == len(names) and all(
            name and len(self._named.get(name, ())) == (1 if rel in gone else 0)
            and (rel in gone or name not in self._rel_of)
            for rel, name in names.items())
        rekeyed: set[str] = set()
        if simple:
            keys = {rel: key for rel, key in self._keys.items() if rel not in gone}
            keys.update({rel: names[rel] for rel in came})
        else:
            files = sorted((self._keys.keys() - gone) | came)
            keys = page_keys(self.root, files)
            self._renamed = any(key != page_name(rel.rsplit("/", 1)[-1])
                                for rel, key in keys.items())
            old = self._keys
            rekeyed = {rel for rel in keys.keys() & old.keys() if old[rel] != keys[rel]}
        for rel, name in names.items():
            group = self._named.setdefault(name, set())
            if rel in gone:
                group.discard(rel)
            else:
                group.add(rel)
            if not group:
                del self._named[name]
        return keys, rekeyed

    # -- one page's contribution -------------------------------------------------------------
    def _forget(self, rel: str, key: str | None, pairs: set[EdgeKey],
                placeholders: set[str]) -> None:
        for target, folded, _ in self._refs.pop(rel, []):
            if key is None:
                continue
            end = target if target is not None else self._placeholder.get(folded or "")
            if end is not None and end != key:
                pairs.add(edge_key(key, end))
            if folded is not None:
                spellings = self._spellings.get(folded)
                if spellings is not None and spellings.pop(rel, None) is not None:
                    placeholders.add(folded)
                    if not spellings:
                        del self._spellings[folded]
        for text in self._texts.pop(rel, set()):
            rels = self._mentions.get(text)
            if rels is not None:
                rels.discard(rel)
                if not rels:
                    del self._mentions[text]

    def _read(self, rel: str, pairs: set[EdgeKey], placeholders: set[str]) -> None:
        key = self._keys[rel]
        refs: list[_Ref] = []
        texts: set[str] = set()
        for text, kind in self.pages[rel].references:
            target = link_target(text)
            if not target:
                continue
            folded = target.casefold()
            texts.add(folded)
            found = self._resolver.page(target)
            if found is not None:
                if found != key:
                    refs.append((found, None, kind))
                    pairs.add(edge_key(key, found))
            elif not is_attachment(target):
                refs.append((None, folded, kind))
                self._spellings.setdefault(folded, {}).setdefault(rel, target)
                placeholders.add(folded)
        self._refs[rel] = refs
        self._texts[rel] = texts
        for text in texts:
            self._mentions.setdefault(text, set()).add(rel)

    # -- the graph --------------------------------------------------------------------------
    def _end(self, ref: _Ref) -> str | None:
        target, folded, _ = ref
        return target if target is not None else self._placeholder.get(folded or "")

    def _node(self, key: str) -> NodeState | None:
        rel = self._rel_of.get(key)
        if rel is not None:
            page = self.pages[rel]
            return NodeState(page_label(rel, page, key, self.journal_format),
                             NodeType.KNOWLEDGE, {"path": rel, **page.metadata})
        placeholder = self._placeholder.get(key.casefold())
        if placeholder == key:
            return NodeState(key, NodeType.KNOWLEDGE, {"placeholder": True})
        return None

    def _tally(self, rel: str, cache: dict[str, dict[str, tuple[int, str]]]
               ) -> dict[str, tuple[int, str]]:
        """A page's mentions by the node they reach: (how many, the type of the last)."""
        tally = cache.get(rel)
        if tally is None:
            tally = cache[rel] = {}
            for ref in self._refs.get(rel, ()):
                end = self._end(ref)
                if end is not None:
                    tally[end] = (tally.get(end, (0, ""))[0] + 1, ref[2])
        return tally

    def _edge(self, pair: EdgeKey, cache: dict[str, dict[str, tuple[int, str]]]
              ) -> tuple[float, str | None] | None:
        weight = 0.0
        last: tuple[str, str] | None = None  # (rel, type) of the last mention in path order
        for here, there in (pair, pair[::-1]):
            rel = self._rel_of.get(here)
            if rel is None:
                continue
            count, kind = self._tally(rel, cache).get(there, (0, ""))
            weight += count
            if count and (last is None or rel > last[0]):
                last = (rel, kind)
        return None if last is None else (weight, last[1])

    def _settle(self, keys: Iterable[str], pairs: Iterable[EdgeKey]) -> TopologyDiff:
        """Compare the touched nodes and edges with the graph, update it, return the change."""
        out = TopologyDiff()
        g = self.graph
        for key in sorted(keys):
            state, before = self._node(key), g.nodes.get(key)
            if state is None and before is not None:
                del g.nodes[key]
                out.removed_nodes.append(key)
            elif state is not None and before is None:
                g.nodes[key] = state
                out.added_nodes.append(state.spec(key))
            elif state is not None and state != before:
                g.nodes[key] = state
                out.updated_nodes.append(state.spec(key))
        gone = set(out.removed_nodes)
        tallies: dict[str, dict[str, tuple[int, str]]] = {}  # each touched page counted once
        for pair in sorted(pairs):
            value = (self._edge(pair, tallies) if pair[0] in g.nodes and pair[1] in g.nodes
                     else None)
            before_edge = g.edges.get(pair)
            if value is None and before_edge is not None:
                del g.edges[pair]
                if pair[0] not in gone and pair[1] not in gone:  # those go with their node
                    out.removed_edges.append(pair)
            elif value is not None and before_edge is None:
                g.edges[pair] = value
                out.added_edges.append(EdgeSpec(pair[0], pair[1], value[0], value[1]))
            elif value is not None and value != before_edge:
                g.edges[pair] = value
                out.updated_edges.append(EdgeSpec(pair[0], pair[1], value[0], value[1]))
        return out
