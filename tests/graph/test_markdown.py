"""Markdown vaults (Logseq and Obsidian) written into tmp_path and loaded for real."""

from __future__ import annotations

import datetime as dt
import os
import unicodedata
from pathlib import Path

import pytest

from graphwire.graph import Graph
from graphwire.graph.sources import SourceError, load_markdown_vault, load_source
from graphwire.graph.sources.front_matter import front_matter
from graphwire.graph.sources.journal import journal_title
from graphwire.graph.sources.markdown import page_files, page_name, read_page
from graphwire.graph.sources.page import parse_page

from .helpers import edge_set, keys, node, write

LOGSEQ = {
    "logseq/config.edn": "{:meta/version 1}\n",
    "logseq/bak/pages/Python/2024.md": "- [[Backup Only]]\n",
    ".git/HEAD.md": "- [[Git Only]]\n",
    "pages/Python.md": (
        "title:: The Python Language\n"
        "alias:: py, [[snake lang]]\n"
        "tags:: language, [[Programming Languages]]\n"
        "type:: [[book]]\n"
        "\n"
        "- Created by [[Guido]] #design\n"
        "- See [[projects/graphwire]] and #[[multi word tag]]\n"
        "- Compare with [[rust]]\n"
        "- ```python\n"
        '  x = "[[Not A Link]]"  # #nottag\n'
        "  ```\n"
        "- inline `[[Also Not]]` and `#codetag` code\n"
        "- # Heading, not a tag; https://example.com/#fragment neither; a#b neither\n"
        "- waiting on [[Missing Page]] and [[missing page]]\n"
    ),
    "pages/Rust.md": "- Compared with [[python]] #Python #123, alias [[Snake Lang]]\n",
    "pages/projects___graphwire.md": "- part of [[projects]]\n",
    "pages/a%2Fb.md": "- namespaced with percent escape\n",
    "pages/design.md": "- see [[Jan 15th, 2024]] and [[The Python Language]]\n",
    "journals/2024_01_15.md": "- Worked on [[projects/graphwire]] #python\n",
}

OBSIDIAN = {
    ".obsidian/app.json": "{}",
    ".obsidian/snippets/Ghost.md": "[[Ghost Link]]",
    ".trash/Old.md": "[[Trash Link]]",
    "Home.md": (
        "---\n"
        "title: Welcome\n"
        'tags: [start, "index"]\n'
        "aliases:\n"
        "  - Start Page\n"
        "created: 2024-01-01\n"
        "---\n"
        "# Home\n"
        "Go to [[Projects/Alpha|the alpha project]] and [[Notes#Section two]].\n"
        "Also [[Beta]] and [[beta]].\n"
        "![[diagram.png]]\n"
        "#inbox and [[Nowhere]]\n"
    ),
    "Projects/Alpha.md": "Back to [[Home]]. Related: [[Notes|notes]] and [[Alpha]] itself.\n",
    "Projects/Beta.md": '---\nstatus: draft\nrelated: "[[Home]]"\n---\nNothing else.\n',
    "Notes.md": "Root notes, from [[start page]].\n",
    "Archive/Notes.md": "Older notes, see [[Alpha]] and [[Archive/Notes]].\n",
}


def test_logseq_vault(tmp_path: Path) -> None:
    data = load_source(write(tmp_path / "graph", LOGSEQ))
    pages = {"Python", "Rust", "projects/graphwire", "a/b", "design", "2024_01_15"}
    placeholders = {
        "language", "Programming Languages", "book", "Guido",
        "multi word tag", "Missing Page", "projects", "123",
    }
    assert keys(data) == pages | placeholders
    assert edge_set(data) == {  # aliases name the page: no alias node, no edge to itself
        ("Python", "language", "tag"),
        ("Python", "Programming Languages", "tag"),
        ("Python", "book", "link"),
        ("Python", "Guido", "link"),
        ("Python", "design", "tag"),
        ("Python", "projects/graphwire", "link"),
        ("Python", "multi word tag", "tag"),
        ("Python", "Rust", "link"),  # [[rust]]: no page "rust", so Rust (any case)
        ("Python", "Missing Page", "link"),  # both spellings: one placeholder
        ("Rust", "Python", "link"),
        ("Rust", "Python", "tag"),
        ("Rust", "123", "tag"),
        ("projects/graphwire", "projects", "link"),
        ("2024_01_15", "projects/graphwire", "link"),
        ("2024_01_15", "Python", "tag"),
        ("Rust", "Python", "link"),  # [[Snake Lang]]: an alias (any case)
        ("design", "2024_01_15", "link"),  # a journal by its date title
        ("design", "Python", "link"),  # a page by its title:: property
    }
    python = node(data, "Python")
    assert python.label == "The Python Language"
    assert dict(python.metadata) == {
        "path": "pages/Python.md",
        "title": "The Python Language",
        "alias": ["py", "snake lang"],
        "tags": ["language", "Programming Languages"],
        "type": "[[book]]",
    }
    assert node(data, "Rust").label == "Rust"
    assert dict(node(data, "Guido").metadata) == {"placeholder": True}
    assert dict(node(data, "2024_01_15").metadata) == {"path": "journals/2024_01_15.md"}
    assert node(data, "2024_01_15").label == "Jan 15th, 2024"
    assert dict(node(data, "projects/graphwire").metadata) == {
        "path": "pages/projects___graphwire.md"
    }
    missing = [e for e in data.edges if e.target == "Missing Page"]
    assert len(missing) == 2  # one spec per mention

    graph = Graph.from_data(data)
    assert graph.keys == sorted(keys(data))
    assert [graph.id_of(k) for k in graph.keys] == list(range(len(graph.keys)))
    rust, python_id = graph.id_of("Rust"), graph.id_of("Python")
    assert rust is not None and python_id is not None
    assert graph.has_edge(rust, python_id)


def test_obsidian_vault(tmp_path: Path) -> None:
    data = load_markdown_vault(write(tmp_path / "vault", OBSIDIAN))
    assert keys(data) == {
        "Home", "Alpha", "Beta", "Notes", "Archive/Notes",
        "start", "index", "inbox", "Nowhere",
    }
    assert edge_set(data) == {
        ("Home", "start", "tag"),
        ("Home", "index", "tag"),
        ("Home", "Alpha", "link"),  # [[Projects/Alpha|...]]: by vault path
        ("Home", "Notes", "link"),  # [[Notes#...]]: the shallower Notes.md
        ("Home", "Beta", "link"),
        ("Home", "inbox", "tag"),
        ("Home", "Nowhere", "link"),
        ("Alpha", "Home", "link"),
        ("Alpha", "Notes", "link"),
        ("Beta", "Home", "link"),  # a link in a front-matter value
        ("Archive/Notes", "Alpha", "link"),
        ("Notes", "Home", "link"),  # [[start page]]: an alias of Home (any case)
    }
    home = node(data, "Home")
    assert home.label == "Welcome"
    assert dict(home.metadata) == {
        "path": "Home.md",
        "title": "Welcome",
        "tags": ["start", "index"],
        "aliases": ["Start Page"],
        "created": "2024-01-01",
    }
    assert dict(node(data, "Beta").metadata) == {
        "path": "Projects/Beta.md", "status": "draft", "related": "[[Home]]",
    }
    assert dict(node(data, "Archive/Notes").metadata) == {"path": "Archive/Notes.md"}
    assert node(data, "Archive/Notes").label == "Archive/Notes"

    graph = Graph.from_data(data)
    home_id, beta = graph.id_of("Home"), graph.id_of("Beta")
    assert home_id is not None and beta is not None
    weights = {(e.source, e.target): e.weight for e in graph.edges()}
    # [[Beta]] and [[beta]] in Home, related: "[[Home]]" in Beta: three mentions, one edge
    assert weights[min(home_id, beta), max(home_id, beta)] == 3.0


def test_duplicate_names_rank_by_depth_then_path(tmp_path: Path) -> None:
    write(tmp_path, {"b/x.md": "", "a/x.md": "", "z/deep/x.md": "", "x.md": "", "y/x.md": ""})
    data = load_markdown_vault(tmp_path)
    by_path = {n.metadata["path"]: n.key for n in data.nodes}
    assert by_path == {
        "x.md": "x", "a/x.md": "a/x", "b/x.md": "b/x", "y/x.md": "y/x",
        "z/deep/x.md": "z/deep/x",
    }


def test_page_names_decode_logseq_escapes() -> None:
    assert page_name("a___b.md") == "a/b"
    assert page_name("a%2Fb.md") == "a/b"
    assert page_name("Q1%3A plans.md") == "Q1: plans"
    assert page_name("Case Kept.MD") == "Case Kept"


def test_decomposed_file_names_and_table_links(tmp_path: Path) -> None:
    """A file name macOS wrote decomposed is the page a typed (composed) link names; a link
    with shown text inside a table row escapes its pipe."""
    nfd = lambda text: unicodedata.normalize("NFD", text)  # noqa: E731
    write(tmp_path, {f"{nfd('Café')}.md": "", f"sub/{nfd('Résumé')}.md": "",
                     "a.md": "[[Café]] [[sub/Résumé]]\n| [[Café\\|the café]] | x |\n"})
    data = load_source(tmp_path)
    assert keys(data) == {"Café", "Résumé", "a"}  # no placeholder beside the page
    assert [(e.source, e.target) for e in data.edges] == [("a", "Café"), ("a", "Résumé"),
                                                          ("a", "Café")]


def test_markdown_and_relative_links(tmp_path: Path) -> None:
    """Obsidian with wiki links off writes [text](Note%20Name.md); with relative paths on it
    writes ../ and ./ targets, relative to the note's folder."""
    write(tmp_path, {
        "Home.md": "", "Other Page.md": "", "sub/Target.md": "", "sub/deeper/Leaf.md": "",
        "sub/Note.md": "\n".join([
            "[o](../Other%20Page.md) [t](./Target.md#Part) [l](<deeper/Leaf.md> \"title\")",
            "[[../Home]] [[./deeper/Leaf|leaf]] [h](Home) [far](../../Outside.md)",
            "not pages: [web](https://example.com/a.md) [mail](mailto:a@b.c) [here](#Part)",
            "[pdf](paper.pdf) ![img](pic.png) [html](page.html) [gone](Missing%20One.md)",
            "`[code](Home.md)`",
            "no scheme: [d](docs.python.org/3/library) [w](www.example.com/page) [s](sub/Target)",
            "[a #texttag in the text](https://example.com)",
        ]),
        "sub/Aliased.md": "alias:: ./odd\n",
    })
    data = load_source(tmp_path)
    assert keys(data) == {"Home", "Other Page", "Target", "Leaf", "Note", "Missing One",
                          "../../Outside", "texttag", "Aliased"}
    assert [e.target for e in data.edges if e.source == "Note"] == [
        "Other Page", "Target", "Leaf", "Home", "Leaf", "Home", "../../Outside", "Missing One",
        "texttag"]
    assert [(e.source, e.type) for e in data.edges if e.source != "Note"] == []  # ./odd: a name
    assert read_page(tmp_path, "sub/Aliased.md").aliases == ["./odd"]


def test_journal_titles_follow_the_graphs_format(tmp_path: Path) -> None:
    write(tmp_path, {
        "logseq/config.edn": ('{:meta/version 1\n ;; :journal/page-title-format "MMM do"\n'
                              ' :journal/page-title-format "EEE, dd.MM.yyyy"}\n'),
        "journals/2024_02_29.md": "", "journals/2024_02_30.md": "",  # no such day: a page
        "pages/a.md": "- [[Thu, 29.02.2024]] [[Feb 29th, 2024]]\n",
    })
    data = load_source(tmp_path)
    assert node(data, "2024_02_29").label == "Thu, 29.02.2024"
    assert node(data, "2024_02_30").label == "2024_02_30"
    assert edge_set(data) == {("a", "2024_02_29", "link"), ("a", "Feb 29th, 2024", "link")}
    assert journal_title(dt.date(2023, 3, 1), "do MMMM yyyy, EEEE 'week' M/d/yy") == (
        "1st March 2023, Wednesday week 3/1/23")
    assert [journal_title(dt.date(2024, 1, d), "do") for d in (2, 3, 11, 12, 13, 21, 22, 23)] == [
        "2nd", "3rd", "11th", "12th", "13th", "21st", "22nd", "23rd"]


def test_linked_folders_are_read_once(tmp_path: Path) -> None:
    """A folder linked in from outside the vault is part of it (Obsidian follows such links);
    loops, a second link to it and links to the vault's own folders add nothing."""
    vault, shared = tmp_path / "v", tmp_path / "ext" / "shared"
    write(vault, {"a.md": "[[Shared]] [[Deep]]", "real/R.md": ""})
    write(shared, {"Shared.md": "[[a]]", "inner/Deep.md": ""})
    for link, target in [(vault / "s1", "../ext/shared"), (vault / "s2", "../ext/shared"),
                         (shared / "inner" / "up", ".."), (shared / "loop", "../../ext"),
                         (vault / "again", "real"), (vault / "self", ".")]:
        link.symlink_to(target)
    assert page_files(vault) == ["a.md", "real/R.md", "s1/Shared.md", "s1/inner/Deep.md"]
    data = load_source(vault)
    assert keys(data) == {"a", "R", "Shared", "Deep"}
    assert edge_set(data) == {("a", "Shared", "link"), ("a", "Deep", "link"),
                              ("Shared", "a", "link")}


def test_tags_and_code_rules() -> None:
    page = parse_page("p.md", "\n".join([
        "#start of line, mid #tag, end #tail-",
        "not#glued, (#paren) ## Heading, `#code` and #x/y/z",
        "~~~",
        "#fenced [[fenced]]",
        "~~~",
        "- ```",
        "  [[in bullet fence]]",
        "  ```",
        "[[after|alias text]] [[Page#Heading|shown]] [[ ]] [[#only heading]]",
    ]))
    assert page.references == [
        ("start", "tag"), ("tag", "tag"), ("tail", "tag"), ("x/y/z", "tag"),
        ("after", "link"), ("Page", "link"),
    ]


def test_digits_are_no_tag_and_quoted_fences_are_code() -> None:
    # As in Obsidian's own help vault: "#1984 isn't a valid tag, but #y1984 is", and a CSS
    # example inside a callout holds a colour, not a tag.
    digits = "For example, #1984 isn't a valid tag, but #y1984 is (issue #12, #2024-review)."
    assert parse_page("p.md", digits, digit_tags=True).references == [  # as Logseq reads it
        ("1984", "tag"), ("y1984", "tag"), ("12", "tag"), ("2024-review", "tag")]
    page = parse_page("p.md", "\n".join([
        digits,
        "> [!example] CSS",
        "> ```css",
        ">    border-color: #ff0000; [[not a link]]",
        "> ```",
        "> after the fence #quoted",
        "> > ~~~",
        "> > #nested",
        "the quote ended without closing its fence: #outside [[Outside]]",
    ]))
    assert page.references == [
        ("y1984", "tag"), ("2024-review", "tag"), ("quoted", "tag"),
        ("outside", "tag"), ("Outside", "link"),
    ]


def test_front_matter_forms() -> None:
    lines = [
        "---",
        "title: 'It''s here'",
        'quoted: "a \\"b\\""',
        "list: [one, 'two, three', ]",
        "block:",
        "- x",
        "- y",
        "text: |",
        "  line one",
        "  line two",
        "nested:",
        "  inner: 1",
        "url: https://example.com/a#b",
        "# a comment",
        "empty:",
        "---",
        "body",
    ]
    values, start = front_matter("f.md", lines)
    assert start == 16
    assert values == {
        "title": "It's here",
        "quoted": 'a "b"',
        "list": ["one", "two, three"],
        "block": ["x", "y"],
        "text": "line one\nline two",
        "nested": "inner: 1",
        "url": "https://example.com/a#b",
        "empty": "",
    }
    assert front_matter("f.md", ["no front matter", "---"]) == ({}, 0)


def test_bad_front_matter_is_ignored_and_named(tmp_path: Path) -> None:
    """Obsidian and Logseq show a note whose front matter they cannot read, without its
    properties: so does graphwire, and it says which line it could not read."""
    write(tmp_path, {"notes/a.md": "---\ntitle: ok\njust words\n---\nsee [[b]]\n",
                     "b.md": "[[a]]", "c.md": "---\n- a list\n---\n[[b]]",
                     "d.md": "---\n\ttitle: tab\n---\n"})
    message = (
        f"{tmp_path / 'notes' / 'a.md'}, line 3: front matter is not valid YAML-like 'key: value'"
    )
    with pytest.raises(SourceError) as info:
        front_matter(tmp_path / "notes" / "a.md", ["---", "title: ok", "just words", "---"])
    assert str(info.value) == message and info.value.line == 3
    page = read_page(tmp_path, "notes/a.md")
    assert page.problem == message + " (its properties are ignored; the page is kept)"
    assert page.metadata == {} and page.references == [("b", "link")]
    data = load_source(tmp_path)
    assert data.skipped == [] and len(data.warnings) == 3
    assert data.warnings[0].startswith(str(tmp_path / "c.md") + ", line 2: ")
    nodes = {n.key: n for n in data.nodes}
    assert sorted(nodes) == ["a", "b", "c", "d"]
    assert nodes["a"].metadata == {"path": "notes/a.md"} and nodes["a"].label == "a"
    assert sorted((e.source, e.target) for e in data.edges) == [("a", "b"), ("b", "a"),
                                                                ("c", "b")]


def test_a_list_may_span_lines_but_must_close() -> None:
    values, _ = front_matter("f.md", ["---", "tags: [a,", "  b, 'c, d'", "  ]", "title: t", "---"])
    assert values == {"tags": ["a", "b", "c, d"], "title": "t"}
    # a "[" never closed: the line where it opened is named, nothing of it becomes a value
    for lines in (["---", "aliases: [oops,", "tags: [astronomy", "---"],
                  ["---", "title: t", "aliases: [oops, b", "---"]):
        with pytest.raises(SourceError) as info:
            front_matter("f.md", lines)
        assert info.value.line == lines.index(next(x for x in lines if "[oops" in x)) + 1
        assert "never closed" in info.value.reason


def test_unclosed_front_matter_is_body(tmp_path: Path) -> None:
    write(tmp_path, {"ok.md": "fine", "open.md": "---\ntitle: never closed\n\n[[ok]]\n"})
    data = load_source(tmp_path)
    assert sorted(n.key for n in data.nodes) == ["ok", "open"]
    assert [(e.source, e.target) for e in data.edges] == [("open", "ok")]
    [problem] = data.warnings
    assert problem.startswith(f"{tmp_path / 'open.md'}, line 1: ") and "never closed" in problem


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"good.md": "[[bad]]", "bad.md": b"line one\nline \xff two\n"})
    [problem] = load_source(tmp_path).skipped
    assert problem.startswith(f"{tmp_path / 'bad.md'}, line 2, column 6: not valid UTF-8")


def test_a_vault_of_unreadable_pages_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"a.md": b"\xff", "b.md": b"ok\n\xfe"})
    with pytest.raises(SourceError, match="no readable Markdown pages") as info:
        load_source(tmp_path)
    assert "a.md" in str(info.value) and "UTF-8" in str(info.value)


def test_empty_vault_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"readme.txt": "no pages", ".obsidian/hidden.md": "[[x]]"})
    with pytest.raises(SourceError, match="no Markdown pages"):
        load_source(tmp_path)


def test_progress_bar_follows_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, {"a.md": "[[b]]", "b.md": ""})
    load_source(tmp_path, progress=False)
    load_source(tmp_path)  # not a terminal, and small: no bar
    assert capsys.readouterr().err == ""
    load_source(tmp_path, progress=True)
    assert "2/2" in capsys.readouterr().err


def test_a_folder_that_cannot_be_listed_is_left_out_and_named(tmp_path: Path) -> None:
    write(tmp_path, {"a.md": "[[b]]"})
    # a folder too deep to name (its path is past PATH_MAX): made one level at a time
    fd = os.open(tmp_path, os.O_RDONLY)
    for level in range(20):
        name = f"{level:02d}" + "d" * 240
        os.mkdir(name, dir_fd=fd)
        deeper = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(os.open("deep.md", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    data = load_source(tmp_path)
    assert [n.key for n in data.nodes] == ["a", "b"]
    [problem] = data.skipped
    assert "cannot be read" in problem and "too long" in problem
