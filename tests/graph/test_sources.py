"""Node-link JSON, GraphML, GEXF and CSV sources, the dispatch by path, and bad sources."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import networkx as nx
import pytest

from graphwire.graph import EdgeSpec, Graph, GraphData, NodeType
from graphwire.graph.sources import SourceError, load_source
from graphwire.graph.sources.progress import LARGE_LINE_COUNT, show_progress

from .helpers import edge_set, keys, node, write


def small_graph() -> nx.Graph:
    g = nx.Graph(name="small")
    g.add_node("a", label="Alpha", color="red", size=3)
    g.add_node("b", name="Beta")
    g.add_node("c", type="agent")
    g.add_node("d", type="person")
    g.add_edge("a", "b", weight=2.5, type="cites")
    g.add_edge("b", "c")
    g.add_edge("c", "a", weight=1)
    return g


def assert_small(data: GraphData) -> None:
    assert keys(data) == {"a", "b", "c", "d"}
    assert node(data, "a").label == "Alpha"
    assert dict(node(data, "a").metadata) == {"color": "red", "size": 3}
    assert node(data, "c").type is NodeType.AGENT
    assert node(data, "d").type is NodeType.KNOWLEDGE
    weights = {frozenset((e.source, e.target)): e.weight for e in data.edges}
    assert weights == {
        frozenset("ab"): 2.5, frozenset("bc"): 1.0, frozenset("ac"): 1.0,
    }
    graph = Graph.from_data(data)
    assert graph.keys == ["a", "b", "c", "d"]
    assert graph.id_of("d") == 3
    assert graph.edge_count == 3


def test_node_link_json_from_networkx(tmp_path: Path) -> None:
    path = tmp_path / "small.json"
    path.write_text(json.dumps(nx.node_link_data(small_graph())))
    data = load_source(path)
    assert_small(data)
    assert node(data, "b").label == "Beta"
    assert dict(node(data, "d").metadata) == {"type": "person"}
    assert ("a", "b", "cites") in edge_set(data) or ("b", "a", "cites") in edge_set(data)
    assert data.name == "small"


def test_node_link_json_by_hand_with_links(tmp_path: Path) -> None:
    doc = {
        "directed": True,
        "multigraph": False,
        "graph": {},
        "nodes": [
            {"id": 1, "name": "One", "score": float("nan"), "tags": ["x"]},
            {"id": "two"},
            {"id": 3, "type": "agent"},
        ],
        "links": [
            {"source": 1, "target": "two", "weight": 2},
            {"source": "two", "target": 1},
            {"source": 3, "target": 1, "weight": 0.25, "type": "owns", "extra": True},
        ],
    }
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(doc))  # NaN is written as a bare NaN, which JSON readers accept
    data = load_source(path)
    assert keys(data) == {"1", "two", "3"}
    assert node(data, "1").label == "One"
    assert dict(node(data, "1").metadata) == {"score": None, "tags": ["x"]}
    assert node(data, "3").type is NodeType.AGENT
    assert data.edges == [
        EdgeSpec("1", "two", 2.0, None),
        EdgeSpec("two", "1", 1.0, None),
        EdgeSpec("3", "1", 0.25, "owns"),
    ]
    graph = Graph.from_data(data)
    assert graph.keys == ["1", "3", "two"]
    assert {(e.source, e.target): e.weight for e in graph.edges()} == {
        (0, 2): 3.0, (0, 1): 0.25,  # the two directed links 1↔two add up
    }


def test_graphml(tmp_path: Path) -> None:
    path = tmp_path / "small.graphml"
    nx.write_graphml(small_graph(), path)
    assert_small(load_source(path))


def test_gexf(tmp_path: Path) -> None:
    path = tmp_path / "small.GEXF"
    nx.write_gexf(small_graph(), path)
    data = load_source(path)
    assert keys(data) == {"a", "b", "c", "d"}
    assert node(data, "a").label == "Alpha"
    assert node(data, "a").metadata["color"] == "red"
    assert node(data, "c").type is NodeType.AGENT
    # networkx writes an edge's "type" as GEXF's own edge type (directedness): it is not kept
    assert edge_set(data) == {("a", "b", None), ("b", "c", None), ("a", "c", None)}
    weights = {frozenset((e.source, e.target)): e.weight for e in data.edges}
    assert weights[frozenset("ab")] == 2.5
    assert Graph.from_data(data).keys == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("text", "weights"),
    [
        ("a,b\nb,c\n", {("a", "b"): 1.0, ("b", "c"): 1.0}),
        ("Source,Target\n a , b \nb,c\n", {("a", "b"): 1.0, ("b", "c"): 1.0}),
        ("source,target,weight\na,b,2\n\nb,c,0.5\n", {("a", "b"): 2.0, ("b", "c"): 0.5}),
        ("from,to,strength\na,b,3\nb,c,\n", {("a", "b"): 3.0, ("b", "c"): 1.0}),
        ("a,b,4\nb,c,1e-1,ignored\n", {("a", "b"): 4.0, ("b", "c"): 0.1}),
        ('"x, y",b\r\nb,c\r\n', {("x, y", "b"): 1.0, ("b", "c"): 1.0}),
    ],
)
def test_csv(tmp_path: Path, text: str, weights: dict[tuple[str, str], float]) -> None:
    path = tmp_path / "edges.csv"
    path.write_bytes(text.encode())
    data = load_source(path)
    assert {(e.source, e.target): e.weight for e in data.edges} == weights
    assert keys(data) == {k for pair in weights for k in pair}
    graph = Graph.from_data(data)
    assert graph.keys == sorted(keys(data))
    assert graph.edge_count == len(weights)


def test_csv_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edges.csv"
    path.write_text("a,b\nb,c\nc,d\n")
    load_source(path, progress=True)
    assert "3/3" in capsys.readouterr().err


def test_progress_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    assert not show_progress(None, LARGE_LINE_COUNT + 1, LARGE_LINE_COUNT)  # pytest's stderr
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert show_progress(None, LARGE_LINE_COUNT + 1, LARGE_LINE_COUNT)
    assert not show_progress(None, LARGE_LINE_COUNT, LARGE_LINE_COUNT)
    assert not show_progress(False, LARGE_LINE_COUNT + 1, LARGE_LINE_COUNT)
    assert show_progress(True, 1, LARGE_LINE_COUNT)


# -- bad sources ------------------------------------------------------------------------------


def error_of(path: Path | str) -> SourceError:
    with pytest.raises(SourceError) as info:
        load_source(path)
    return info.value


def test_missing_path(tmp_path: Path) -> None:
    err = error_of(tmp_path / "nope.json")
    assert str(err) == f"{tmp_path / 'nope.json'}: no such file or folder"


def test_unsupported_extension(tmp_path: Path) -> None:
    write(tmp_path, {"graph.txt": "a b"})
    assert "unsupported source .txt" in str(error_of(tmp_path / "graph.txt"))


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, {"data.json": '{\n  "nodes": [\n    {"id": 1},\n  ]\n}\n'})
    err = error_of(tmp_path / "data.json")
    assert str(err).startswith(f"{tmp_path / 'data.json'}, line 4, column 3: not valid JSON")
    assert (err.line, err.column) == (4, 3)


def test_json_link_to_unknown_node(tmp_path: Path) -> None:
    doc = {"nodes": [{"id": "a"}, {"id": "b"}], "links": [
        {"source": "a", "target": "b"}, {"source": "b", "target": "x"},
    ]}
    write(tmp_path, {"data.json": json.dumps(doc)})
    assert str(error_of(tmp_path / "data.json")) == (
        f"{tmp_path / 'data.json'}: link 1 refers to unknown node 'x'"
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "the top level is not an object"),
        ({"links": []}, "no 'nodes' list"),
        ({"nodes": []}, "has no nodes"),
        ({"nodes": [{"id": 1}, {"id": "1"}]}, "node 1: the id '1' appears twice"),
        ({"nodes": [{"name": "x"}]}, "node 0 is not an object with an 'id'"),
        ({"nodes": [{"id": 1}], "edges": [{"source": 1, "target": 1, "weight": 0}]},
         "edge 0 has weight 0"),
        ({"nodes": [{"id": 1}], "edges": [{"source": 1, "target": 1, "weight": "x"}]},
         "edge 0 has weight 'x'"),
    ],
)
def test_bad_node_link(tmp_path: Path, doc: object, message: str) -> None:
    write(tmp_path, {"data.json": json.dumps(doc)})
    assert message in str(error_of(tmp_path / "data.json"))


def test_csv_bad_weight_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, {"e.csv": "source,target,weight\na,b,1\n\nb,c,-2\n"})
    err = error_of(tmp_path / "e.csv")
    assert str(err) == f"{tmp_path / 'e.csv'}, line 4: weight '-2' is not a positive number"
    assert err.line == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\nlonely\n", "line 2: a row needs two columns"),
        ("a,b\n ,c\n", "line 2: empty source key"),
        ('a,b\n"multi\nline",c\nd,e,nan\n', "line 4: weight 'nan'"),
        ("source,target\n", "has no edges"),
        ('a,b\nc,"d\ne,f\n', "line 2: not valid CSV: unexpected end of data"),
        ('a,"b"c\n', "line 1: not valid CSV"),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, {"e.csv": text})
    assert message in str(error_of(tmp_path / "e.csv"))


def test_malformed_graphml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, {"g.graphml": '<?xml version="1.0"?>\n<graphml>\n<graph>\n</graphml>\n'})
    err = error_of(tmp_path / "g.graphml")
    assert str(err).startswith(f"{tmp_path / 'g.graphml'}, line 4, ")
    assert "not valid GraphML: mismatched tag" in str(err)


def test_graphml_that_networkx_rejects(tmp_path: Path) -> None:
    write(tmp_path, {"g.graphml": '<?xml version="1.0"?>\n<graphml/>\n', "g.gexf": "<gexf/>"})
    assert "not valid GraphML" in str(error_of(tmp_path / "g.graphml"))
    assert "not valid GEXF" in str(error_of(tmp_path / "g.gexf"))


def test_graphml_bad_weight(tmp_path: Path) -> None:
    g = nx.Graph()
    g.add_edge("a", "b", weight=-1.0)
    nx.write_graphml(g, tmp_path / "g.graphml")
    assert "edge 'a'–'b' has weight -1.0" in str(error_of(tmp_path / "g.graphml"))


def test_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "data.json"
    folder.mkdir()  # a folder named like a file is a vault without pages
    assert "no Markdown pages" in str(error_of(folder))
    assert str(error_of("bad\x00path.csv")).startswith("bad\x00path.csv: ")


def test_source_error_pickles() -> None:
    err = SourceError("a.md", "broken", 3, 4)
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.path, copy.line, copy.column) == (
        "a.md, line 3, column 4: broken", "a.md", 3, 4,
    )
