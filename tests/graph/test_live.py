"""A live source: files changed on disk become the smallest change by key."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graphwire.graph.diff import canonical
from graphwire.graph.live import LiveSource
from graphwire.graph.sources import load_source

from .helpers import write


def fresh(path: Path) -> object:
    return canonical(load_source(path))


def test_a_vault_follows_created_edited_renamed_and_deleted_pages(tmp_path: Path) -> None:
    vault = write(tmp_path / "v", {"a.md": "- [[b]] [[c]]\n", "b.md": "- [[a]]\n",
                                   "notes/c.md": "- plain\n"})
    live = LiveSource(vault)
    live.load()

    write(vault, {"d.md": "- [[a]] and [[b]]\n"})
    up = live.update([str(vault / "d.md")])
    assert [n.key for n in up.diff.added_nodes] == ["d"] and up.files_read == 1
    assert {(e.source, e.target) for e in up.diff.added_edges} == {("a", "d"), ("b", "d")}
    assert not up.diff.removed_nodes and not up.errors

    write(vault, {"a.md": "- [[c]]\n"})  # drop the link to b (b still links to a)
    up = live.update([str(vault / "a.md")])
    assert up.diff.removed_edges == [] and up.diff.updated_edges  # a-b weight 2 -> 1

    write(vault, {"b.md": "- nothing\n"})
    up = live.update([str(vault / "b.md")])
    assert up.diff.removed_edges == [("a", "b")]

    os.rename(vault / "d.md", vault / "e.md")  # rename: new key, same links
    up = live.update([str(vault / "d.md"), str(vault / "e.md")])
    assert up.diff.removed_nodes == ["d"] and [n.key for n in up.diff.added_nodes] == ["e"]
    assert {(e.source, e.target) for e in up.diff.added_edges} == {("a", "e"), ("b", "e")}
    assert canonical(load_source(vault)) == live.graph


def test_placeholders_are_promoted_and_demoted_in_place(tmp_path: Path) -> None:
    vault = write(tmp_path / "v", {"a.md": "- [[Idea]]\n"})
    live = LiveSource(vault)
    data = live.load()
    assert any(n.key == "Idea" and n.metadata == {"placeholder": True} for n in data.nodes)
    write(vault, {"Idea.md": "title:: A good idea\n"})
    up = live.update([str(vault / "Idea.md")])
    assert not up.diff.added_nodes and not up.diff.removed_nodes
    assert [(n.key, n.label, n.metadata["path"]) for n in up.diff.updated_nodes] == [
        ("Idea", "A good idea", "Idea.md")]
    (vault / "Idea.md").unlink()
    up = live.update([str(vault / "Idea.md")])
    assert [(n.key, dict(n.metadata)) for n in up.diff.updated_nodes] == [
        ("Idea", {"placeholder": True})]
    (vault / "a.md").unlink()  # nobody links to it any more: the placeholder goes too
    up = live.update([str(vault / "a.md")])
    assert sorted(up.diff.removed_nodes) == ["Idea", "a"]


def test_a_malformed_page_is_reported_and_keeps_its_last_parse(tmp_path: Path) -> None:
    vault = write(tmp_path / "v", {"a.md": "- [[b]]\n", "b.md": ""})
    live = LiveSource(vault)
    live.load()
    before = live.graph
    write(vault, {"a.md": b"- [[c]] \xff\xfe\n", "new.md": b"\xff"})
    up = live.update([str(vault / "a.md"), str(vault / "new.md")])
    assert not up.diff
    assert sorted(e.path.rsplit("/", 1)[-1] for e in up.errors) == ["a.md", "new.md"]
    assert "UTF-8" in str(up.errors[0]) and live.graph == before
    # a.md keeps its last parse; new.md had none: it is left out, and the update says which
    assert [e.path.rsplit("/", 1)[-1] for e in up.left_out] == ["new.md"]
    write(vault, {"new.md": "---\nnot front matter\n---\n[[b]]"})  # kept, and said so
    up = live.update([str(vault / "new.md")])
    assert [n.key for n in up.diff.added_nodes] == ["new"] and not up.errors
    [warning] = up.warnings
    assert warning.startswith(f"{vault / 'new.md'}, line 2: ")
    write(vault, {"a.md": "- [[c]]\n"})  # fixed: now it counts
    up = live.update([str(vault / "a.md")])
    assert [n.key for n in up.diff.added_nodes] == ["c"] and not up.errors


def test_a_folder_renamed_or_deleted_rescans(tmp_path: Path) -> None:
    vault = write(tmp_path / "v", {"a.md": "- [[x]]\n", "sub/x.md": "- [[y]]\n",
                                   "sub/y.md": ""})
    live = LiveSource(vault)
    live.load()
    os.rename(vault / "sub", vault / "moved")
    up = live.update([str(vault / "sub"), str(vault / "moved")])
    assert not up.diff.added_nodes and not up.diff.removed_nodes  # same keys, new paths
    assert sorted(n.key for n in up.diff.updated_nodes) == ["x", "y"]
    shutil.rmtree(vault / "moved")
    up = live.update([str(vault / "moved")])
    assert up.diff.removed_nodes == ["y"]  # x stays as a placeholder
    assert [(n.key, dict(n.metadata)) for n in up.diff.updated_nodes] == [
        ("x", {"placeholder": True})]
    assert live.concerns(str(vault / "z.md")) and not live.concerns(str(vault / ".git/x.md"))
    assert not live.concerns(str(vault / "logseq/bak/a.md"))


def test_a_file_source_is_read_again_and_diffed(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    doc = {"directed": False, "multigraph": False, "graph": {},
           "nodes": [{"id": "a"}, {"id": "b"}], "links": [{"source": "a", "target": "b"}]}
    path.write_text(json.dumps(doc))
    live = LiveSource(path)
    live.load()
    assert live.concerns(str(path)) and not live.concerns(str(tmp_path / "other.json"))
    doc["nodes"].append({"id": "c"})
    doc["links"] = [{"source": "c", "target": "b"}]
    path.write_text(json.dumps(doc))
    up = live.update([str(path)])
    assert [n.key for n in up.diff.added_nodes] == ["c"]
    assert up.diff.removed_edges == [("a", "b")]
    path.write_text("{ not json")
    up = live.update([str(path)])
    assert not up.diff and len(up.errors) == 1 and "g.json" in str(up.errors[0])
    csv = tmp_path / "e.csv"
    csv.write_text("source,target\nx,y\n")
    live = LiveSource(csv)
    live.load()
    csv.write_text("source,target\nx,y\ny,z\n")
    assert [n.key for n in live.update([str(csv)]).diff.added_nodes] == ["z"]


def test_a_linked_folder_is_followed_by_its_one_way_in(tmp_path: Path) -> None:
    """The watcher follows links too and may name a linked page by another way in (through a
    loop): the page is read again under the name it was loaded by, never twice."""
    vault, shared = tmp_path / "v", tmp_path / "ext" / "shared"
    write(vault, {"a.md": "[[Shared]]"})
    write(shared, {"Shared.md": ""})
    (vault / "s").symlink_to("../ext/shared")
    (shared / "loop").symlink_to("../../ext")
    live = LiveSource(vault)
    live.load()
    (shared / "Shared.md").write_text("[[New]]\n[[a]]\n")
    up = live.update([str(vault / "s" / "loop" / "shared" / "Shared.md")])
    assert [n.key for n in up.diff.added_nodes] == ["New"] and not up.diff.removed_nodes
    (shared / "Other.md").write_text("[[a]]")
    up = live.update([str(vault / "s" / "Other.md")])
    assert [n.key for n in up.diff.added_nodes] == ["Other"]
    assert live.graph == fresh(vault)


def test_a_second_link_to_a_linked_folder_moves_its_pages_rather_than_doubling_them(
        tmp_path: Path) -> None:
    vault, ext = tmp_path / "v", tmp_path / "ext"
    write(vault, {"a.md": "[[X]]"})
    write(ext, {"X.md": ""})
    (vault / "u").symlink_to(ext)
    live = LiveSource(vault)
    live.load()
    (vault / "t").symlink_to(ext)  # the listing now reads ext through t (sorted first)
    up = live.update([str(vault / "t")])
    assert not up.diff.added_nodes and not up.diff.removed_nodes
    assert sorted(live._index.pages) == ["a.md", "t/X.md"] and live.graph == fresh(vault)


def test_the_journal_title_format_follows_the_logseq_config(tmp_path: Path) -> None:
    vault = write(tmp_path / "v", {"journals/2024_01_15.md": "",
                                   "pages/a.md": "- [[2024-01-15]] [[Jan 15th, 2024]]\n"})
    live = LiveSource(vault)
    live.load()
    assert live.graph == fresh(vault)
    config = vault / "logseq" / "config.edn"
    write(vault, {"logseq/config.edn": '{:journal/page-title-format "yyyy-MM-dd"}\n'})
    assert live.concerns(str(config))
    up = live.update([str(config)])
    assert [(n.key, n.label) for n in up.diff.updated_nodes] == [("2024_01_15", "2024-01-15")]
    assert [n.key for n in up.diff.added_nodes] == ["Jan 15th, 2024"]  # now a placeholder
    assert live.graph == fresh(vault)
    up = live.update([str(config)])  # the same format again: nothing to do
    assert not up.diff


def test_a_logseq_config_coming_and_going_rereads_digit_tags(tmp_path: Path) -> None:
    # "#2024" is a tag in a Logseq graph, text elsewhere: the config decides for every page
    vault = write(tmp_path / "v", {"a.md": "done in #2024\n"})
    live = LiveSource(vault)
    live.load()
    assert live.graph == fresh(vault)
    write(vault, {"logseq/config.edn": "{:meta/version 1}\n"})
    up = live.update([str(vault / "logseq" / "config.edn")])
    assert [n.key for n in up.diff.added_nodes] == ["2024"]
    assert live.graph == fresh(vault)
    (vault / "logseq" / "config.edn").unlink()
    up = live.update([str(vault / "logseq" / "config.edn")])
    assert list(up.diff.removed_nodes) == ["2024"]
    assert live.graph == fresh(vault)


@pytest.mark.parametrize("seed", ["0", "1", "2", "3", "4", "5"])
def test_a_name_moving_between_pages_of_one_key_is_kept(tmp_path: Path, seed: str) -> None:
    """``n.md`` goes and ``sub/n.md`` takes its key ``n``, both with the alias X: X must name
    ``n`` after (the index took names back page by page, in an order that depends on string
    hashing, so each seed is its own process)."""
    script = """
import sys
from pathlib import Path
from graphwire.graph.diff import canonical
from graphwire.graph.live import LiveSource
from graphwire.graph.sources import load_source
v = Path(sys.argv[1])
for rel, text in {"n.md": "alias:: X", "sub/n.md": "alias:: X", "z.md": "- [[X]]"}.items():
    (v / rel).parent.mkdir(parents=True, exist_ok=True)
    (v / rel).write_text(text)
for step in ("remove", "create"):
    live = LiveSource(v)
    live.load()
    if step == "remove":
        (v / "n.md").unlink()
    else:
        (v / "n.md").write_text("alias:: X")
    live.update([str(v / "n.md")])
    assert live.graph == canonical(load_source(v)), step
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONHASHSEED": seed}, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_random_edits_with_folders_cases_and_duplicates_match_a_fresh_load(
        tmp_path: Path) -> None:
    rng = random.Random(11)
    vault = tmp_path / "v"
    files = ["a.md", "A.md", "b.md", "sub/a.md", "sub/c.md", "deep/sub/c.md", "x___y.md",
             "Idea.md", "idea.md", "sub/Idea.md", "q/deep/sub/c.md", "q/deep/sub/IDEA.md",
             "journals/2024_01_15.md", "journals/2024_01_16.md"]
    words = ["a", "A", "b", "c", "sub/a", "sub/c", "x/y", "Idea", "idea", "IDEA", "Ghost",
             "ghost", "pic.png", "b.md", "deep/sub/c", "sub/idea", "SUB/C", "deep/sub/idea",
             "../a", "./c", "../../A", "Jan 15th, 2024", "jan 16th, 2024", "Named", "named"]

    def page() -> str:
        lines = [f"- [[{rng.choice(words)}]] #{rng.choice(['tag', 'Tag', 'b'])}"
                 for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.3:
            lines.insert(0, f"alias:: {rng.choice(words)}")
        if rng.random() < 0.2:
            lines.insert(0, f"title:: {rng.choice(['Named', 'Idea', 'Jan 16th, 2024'])}")
        return "\n".join(lines) + "\n"

    write(vault, {"a.md": page()})
    live = LiveSource(vault)
    live.load()
    for _ in range(200):
        touched = []
        for _ in range(rng.randint(1, 3)):
            rel = rng.choice(files)
            file = vault / rel
            if file.exists() and rng.random() < 0.35:
                file.unlink()
            else:
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(page())
            touched.append(str(file))
        if not any(vault.rglob("*.md")):
            write(vault, {"b.md": ""})
            touched.append(str(vault / "b.md"))
        up = live.update(touched)
        assert not up.errors
        assert live.graph == fresh(vault)
