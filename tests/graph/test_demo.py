"""The bundled demo: the standard library as a graph, built with ast, cached on disk."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import platformdirs
import pytest

from graphwire.graph import Graph, GraphData
from graphwire.graph.sources import SourceError, build_demo, demo, load_demo, load_source

from .helpers import edge_set, keys


@pytest.fixture(scope="module")
def built() -> GraphData:
    return build_demo()


def test_size_and_shape(built: GraphData) -> None:
    assert 2_500 <= len(built.nodes) <= 6_000
    assert len(keys(built)) == len(built.nodes)
    packages = {n.metadata["package"] for n in built.nodes}
    assert len(packages) >= 25
    assert {"email", "xml", "asyncio", "http", "json", "logging", "unittest"} <= packages
    for e in built.edges:
        assert e.source in keys(built) and e.target in keys(built)
    kinds = Counter(e.type for e in built.edges)
    assert set(kinds) == {"defines", "imports", "contains", "inherits"}
    assert all(e.weight == (0.5 if e.type == "imports" else 1.0) for e in built.edges)
    per_module = Counter(n.metadata.get("module") for n in built.nodes)
    del per_module[None]
    assert max(per_module.values()) <= demo.NAMES_PER_MODULE


def test_real_structure(built: GraphData) -> None:
    edges = edge_set(built)
    assert ("json", "json.decoder", "contains") in edges
    assert ("json.decoder", "json.decoder.JSONDecoder", "defines") in edges
    assert ("email.message", "email", "imports") in edges or (
        "email.message", "email.utils", "imports") in edges
    assert ("logging.handlers", "logging", "imports") in edges
    # defined under a top-level try/else and added by __all__.append(...)
    assert ("http.client.HTTPSConnection", "http.client.HTTPConnection", "inherits") in edges
    # xml.sax.ContentHandler is a re-export of xml.sax.handler.ContentHandler
    assert ("xml.dom.pulldom.PullDOM", "xml.sax.handler.ContentHandler", "inherits") in edges
    nodes = {n.key: n for n in built.nodes}
    assert dict(nodes["json"].metadata) == {"kind": "module", "package": "json"}
    assert dict(nodes["json.decoder.JSONDecoder"].metadata) == {
        "kind": "class", "module": "json.decoder", "package": "json",
    }
    assert nodes["json.decoder.JSONDecoder"].label == "JSONDecoder"
    # skipped parts of the library, and private names
    assert not any(k.startswith(("test.", "idlelib", "lib2to3", "turtledemo")) for k in nodes)
    assert not any(part.startswith("_") for k in nodes for part in k.split("."))
    assert "antigravity" in nodes  # read with ast, never imported


def test_deterministic(built: GraphData) -> None:
    again = build_demo()
    assert [n.key for n in again.nodes] == [n.key for n in built.nodes]
    assert again.edges == built.edges
    graph = Graph.from_data(again)
    assert graph.keys == sorted(keys(again))
    assert graph.node_count == len(again.nodes)


def test_cache_is_written_then_used(
    built: GraphData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: str(tmp_path / "c"))
    builds: list[int] = []

    def counting_build(**kwargs: object) -> GraphData:
        builds.append(1)
        return built

    monkeypatch.setattr(demo, "build_demo", counting_build)
    first = load_source(None)
    assert builds == [1]
    [cache] = (tmp_path / "c").iterdir()
    assert cache.name.endswith(".json.gz") and cache == demo.demo_cache_path()
    second = load_demo()
    assert builds == [1]  # read from the cache
    for data in (first, second):
        assert data.nodes == built.nodes
        assert data.edges == built.edges
        assert data.name == built.name

    cache.write_bytes(gzip.compress(b"{not json"))  # unreadable: rebuilt and rewritten
    assert load_demo().edges == built.edges
    assert builds == [1, 1]
    assert load_demo(cache_dir=tmp_path / "c").nodes == built.nodes
    assert builds == [1, 1]


def test_cache_write_failure_does_not_fail(
    built: GraphData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "build_demo", lambda **kwargs: built)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    assert load_demo(cache_dir=blocker / "cache").nodes == built.nodes
    assert blocker.read_text().startswith("a file")


def test_missing_stdlib_is_a_source_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "stdlib_path", lambda: tmp_path)
    with pytest.raises(SourceError, match="not installed"):
        build_demo()
