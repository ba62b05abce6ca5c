"""A vault written by the test while a real server serves it: edits stream in (issue 12)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphwire.graph.diff import Canonical, NodeState, canonical, edge_key
from graphwire.graph.model import NodeType
from graphwire.graph.sources import load_source
from graphwire.protocol import QDecoder
from graphwire.protocol.sssp import decode_sssp
from graphwire.server.keys import GRAPH_SERVICE

from .conftest import Client, Harness, ServerFactory


def vault_of(root: Path, pages: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def ring_vault(root: Path, n: int = 40) -> Path:
    """Pages p00 … p39, each linking to the next two: one connected graph."""
    return vault_of(root, {f"p{i:02d}.md": f"- [[p{(i + 1) % n:02d}]] and [[p{(i + 2) % n:02d}]]\n"
                           for i in range(n)})


class Viewer:
    """A q subscriber that keeps the positions it was sent and the graph_changed it got."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.dec = QDecoder()
        self.changes: list[dict[str, Any]] = []

    async def pump(self, until: Any, timeout: float = 10.0) -> None:
        """Read messages until ``until()`` holds (or fail after ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until():
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("timed out waiting")
            try:
                msg = await self.client.recv(left)
            except TimeoutError:
                raise AssertionError("timed out waiting") from None
            if isinstance(msg, str):
                doc = json.loads(msg)
                if doc.get("type") == "graph_changed":
                    self.changes.append(doc)
            elif msg[0] == 0x03:
                self.dec.apply(msg)

    async def next_change(self, timeout: float = 10.0) -> dict[str, Any]:
        seen = len(self.changes)
        await self.pump(lambda: len(self.changes) > seen, timeout)
        return self.changes[seen]

    def position(self, nid: int) -> np.ndarray:
        row = np.flatnonzero(self.dec.ids == nid)
        assert row.shape[0] == 1, f"node {nid} is not in the frame"
        return self.dec.positions()[row[0]]


async def watch(make_server: ServerFactory, source: Path, **options: Any) -> tuple[Harness,
                                                                                   Viewer]:
    h = await make_server(source=str(source), **options)
    client, _ = await h.subscribe("q", intervalMs=50)
    viewer = Viewer(client)
    await viewer.pump(lambda: viewer.dec.key_seq is not None)
    return h, viewer


async def ids_by_key(h: Harness) -> dict[str, int]:
    _, data = await h.get("/api/graph/data")
    return {n["key"]: n["id"] for n in data["nodes"]}


def canonical_of(data: dict[str, Any]) -> Canonical:
    """What a client knows from /api/graph/data, by key."""
    keys = {n["id"]: n["key"] for n in data["nodes"]}
    out = Canonical()
    for n in data["nodes"]:
        out.nodes[n["key"]] = NodeState(n["label"], NodeType(n["type"]), n["metadata"])
    for e in data["edges"]:
        out.edges[edge_key(keys[e["source"]], keys[e["target"]])] = (e["weight"], e["type"])
    return out


async def test_a_new_page_streams_in_near_its_neighbours(make_server: ServerFactory,
                                                         tmp_path: Path) -> None:
    vault = ring_vault(tmp_path / "vault")
    h, viewer = await watch(make_server, vault)
    before = await ids_by_key(h)
    written = time.monotonic()
    (vault / "new page.md").write_text("- links [[p03]] and [[p17]]\n", encoding="utf-8")
    change = await viewer.next_change(timeout=5)
    (node,) = change["added"]["nodes"]
    assert node["key"] == "new page" and node["id"] not in before.values()
    ends = {tuple(sorted((e["source"], e["target"]))) for e in change["added"]["edges"]}
    assert ends == {tuple(sorted((node["id"], before[k]))) for k in ("p03", "p17")}
    assert change["removed"] == {"nodes": [], "edges": []}
    await viewer.pump(lambda: bool(np.any(viewer.dec.ids == node["id"])), timeout=5)
    shown = time.monotonic() - written
    assert viewer.dec.key_seq == viewer.dec.seq  # the frame that first shows it: a keyframe
    assert shown < 1.0, f"the new page reached a frame {shown:.2f} s after it was written"
    rest = h.core[GRAPH_SERVICE].sim.params.rest_length
    centre = (viewer.position(before["p03"]) + viewer.position(before["p17"])) / 2
    assert np.linalg.norm(viewer.position(node["id"]) - centre) < 3 * rest
    _, state = await h.get("/api/graph/state")
    assert state["topologyVersion"] == change["topologyVersion"] == 1


async def test_edits_deletes_and_renames(make_server: ServerFactory, tmp_path: Path) -> None:
    vault = ring_vault(tmp_path / "vault")
    vault_of(vault, {"hub.md": "- [[p00]] [[p10]] [[p20]]\n", "leaf.md": "- [[p05]]\n",
                     "wanted.md": "- alone\n", "p30.md": "- [[wanted]] [[p31]]\n"})
    h, viewer = await watch(make_server, vault)
    ids = await ids_by_key(h)

    (vault / "hub.md").write_text("- [[p00]] [[p20]]\n")  # drop the link to p10
    change = await viewer.next_change()
    assert change["removed"]["edges"] == [sorted([ids["hub"], ids["p10"]])]
    assert not change["added"]["nodes"] and not change["removed"]["nodes"]

    (vault / "leaf.md").unlink()  # nobody links to it: it goes
    change = await viewer.next_change()
    assert change["removed"]["nodes"] == [ids["leaf"]]
    assert change["removed"]["edges"] == [sorted([ids["leaf"], ids["p05"]])]

    (vault / "wanted.md").unlink()  # p30 still links to it: it stays, as a placeholder
    change = await viewer.next_change()
    assert not change["removed"]["nodes"]
    (node,) = change["updated"]["nodes"]
    assert node["id"] == ids["wanted"] and node["metadata"] == {"placeholder": True}

    os.rename(vault / "hub.md", vault / "center.md")  # a rename keeps the neighbours
    change = await viewer.next_change()
    assert change["removed"]["nodes"] == [ids["hub"]]
    (node,) = change["added"]["nodes"]
    assert node["key"] == "center" and node["id"] > max(ids.values())  # ids never reused
    _, data = await h.get("/api/graph/data")
    around = {e["source"] + e["target"] - node["id"] for e in data["edges"]
              if node["id"] in (e["source"], e["target"])}
    assert around == {ids["p00"], ids["p20"]}
    assert canonical_of(data) == canonical(load_source(vault))


async def test_a_burst_of_500_files_is_a_handful_of_changes(make_server: ServerFactory,
                                                           tmp_path: Path) -> None:
    vault = ring_vault(tmp_path / "vault")
    h, viewer = await watch(make_server, vault)
    for i in range(500):  # as a `git checkout` would: new pages, linking old and new ones
        (vault / f"batch{i:03d}.md").write_text(
            f"- [[p{i % 40:02d}]] [[batch{(i * 7) % 500:03d}]] [[Topic {i % 9}]]\n")
    expected = canonical(load_source(vault))

    async def caught_up() -> bool:
        _, data = await h.get("/api/graph/data")
        return canonical_of(data) == expected

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await caught_up():
        assert loop.time() < deadline, "the graph never matched a fresh load of the vault"
        await viewer.next_change(timeout=max(0.1, deadline - loop.time()))
    with pytest.raises(AssertionError, match="timed out"):  # and nothing more comes
        await viewer.next_change(timeout=1.5)
    assert 1 <= len(viewer.changes) <= 5, len(viewer.changes)
    added = sum(len(c["added"]["nodes"]) for c in viewer.changes if not c.get("refetch"))
    assert added == 509 or any(c.get("refetch") for c in viewer.changes)


async def test_a_malformed_page_is_reported_and_changes_nothing(
        make_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vault = ring_vault(tmp_path / "vault")
    h, viewer = await watch(make_server, vault)
    _, before = await h.get("/api/graph/data")
    caplog.set_level(logging.WARNING, logger="graphwire.server")
    caplog.set_level(logging.INFO, logger="graphwire.server.source")
    (vault / "p01.md").write_bytes(b"- [[p02]] [[brand new]] \xff broken\n")

    async def reported() -> int:  # the source is watched where the simulation runs
        async with h.http.get(h.core_base + "/api/metrics") as resp:
            return int((await resp.json())["sourceErrors"])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await reported() == 0:
        assert loop.time() < deadline, "the malformed page was never reported"
        with pytest.raises(AssertionError, match="timed out"):  # no graph_changed meanwhile
            await viewer.next_change(timeout=0.2)
    [said] = [r.getMessage() for r in caplog.records if "p01.md" in r.getMessage()]
    assert "UTF-8" in said and "keeps its last good version" in said
    _, after = await h.get("/api/graph/data")
    assert after["topologyVersion"] == before["topologyVersion"]
    assert canonical_of(after) == canonical_of(before)
    async with h.http.get(h.core_base + "/metrics") as resp:
        assert "graphwire_source_errors_total 1" in await resp.text()
    (vault / "p01.md").write_text("- [[p02]] [[brand new]]\n")  # fixed: it counts now
    change = await viewer.next_change()
    assert [n["key"] for n in change["added"]["nodes"]] == ["brand new"]
    # and the log says what the edit did, by name (logged once the change is applied)
    deadline = loop.time() + 5
    while not any(r.getMessage().endswith("(added brand new)") for r in caplog.records):
        assert loop.time() < deadline, "the change was not logged by name"
        await asyncio.sleep(0.01)


async def test_a_page_unreadable_at_start_is_left_out_then_read_once_fixed(
        make_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vault = ring_vault(tmp_path / "vault")
    (vault / "binary.md").write_bytes(b"- [[p01]] \xff\xfe\n")
    caplog.set_level(logging.WARNING, logger="graphwire.server")
    h, viewer = await watch(make_server, vault)
    keys = await ids_by_key(h)
    assert "binary" not in keys and len(keys) == 40  # served without it
    assert any("binary.md" in r.getMessage() and "UTF-8" in r.getMessage()
               for r in caplog.records)
    async with h.http.get(h.core_base + "/api/metrics") as resp:
        assert (await resp.json())["sourceErrors"] == 1
    (vault / "binary.md").write_text("- [[p01]] fixed\n")
    change = await viewer.next_change()
    assert [n["key"] for n in change["added"]["nodes"]] == ["binary"]


async def test_a_json_source_is_diffed_by_key(make_server: ServerFactory,
                                              tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    doc: dict[str, Any] = {"nodes": [{"id": k} for k in "abcd"],
                           "links": [{"source": "a", "target": "b"},
                                     {"source": "b", "target": "c"},
                                     {"source": "c", "target": "d"}]}
    path.write_text(json.dumps(doc))
    h, viewer = await watch(make_server, path)
    ids = await ids_by_key(h)
    doc["nodes"] = [{"id": k} for k in "abce"]
    doc["links"] = [{"source": "a", "target": "b"}, {"source": "c", "target": "e"}]
    tmp = tmp_path / "g.json.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # as editors save: a new file renamed over the old one
    change = await viewer.next_change()
    assert change["removed"]["nodes"] == [ids["d"]]
    assert [n["key"] for n in change["added"]["nodes"]] == ["e"]
    assert sorted(change["removed"]["edges"]) == [sorted([ids["b"], ids["c"]]),
                                                  sorted([ids["c"], ids["d"]])]  # with d
    assert {n["id"] for n in (await h.get("/api/graph/data"))[1]["nodes"]} == {
        ids["a"], ids["b"], ids["c"], change["added"]["nodes"][0]["id"]}


async def test_no_watch_serves_the_source_as_read(make_server: ServerFactory,
                                                  tmp_path: Path) -> None:
    vault = ring_vault(tmp_path / "vault")
    h, viewer = await watch(make_server, vault, watch=False)
    (vault / "late.md").write_text("- [[p01]]\n")
    (vault / "p02.md").write_text("- changed\n")
    with pytest.raises(AssertionError, match="timed out"):
        await viewer.next_change(timeout=1.5)
    assert "late" not in await ids_by_key(h)


async def test_reload_is_a_new_epoch(make_server: ServerFactory, tmp_path: Path) -> None:
    vault = ring_vault(tmp_path / "vault")
    # the layout held still (physics off), so "kept their places" can be checked exactly
    h, viewer = await watch(make_server, vault, watch=False, admin_token="boss",
                            overrides={"visualisation.graphs.logseq.physics.enabled": False})
    ids = await ids_by_key(h)
    _, before = await h.get("/api/graph/state?positions=1")
    epoch = before["epoch"]
    (vault / "late.md").write_text("- [[p01]]\n")
    status, body = await h.send("POST", "/api/graph/reload", {})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await h.send("POST", "/api/graph/reload", {},
                                headers={"Authorization": "Bearer boss"})
    assert status == 200 and body["epoch"] == epoch + 1 and body["nodesCount"] == 41
    change = await viewer.next_change()
    assert change["refetch"] is True and change["epoch"] == epoch + 1
    await viewer.pump(lambda: viewer.dec.ids.shape[0] == 41)
    _, data = await h.get("/api/graph/data")
    assert data["epoch"] == epoch + 1 and canonical_of(data) == canonical(load_source(vault))
    new_ids = {n["key"]: n["id"] for n in data["nodes"]}
    old_pos = {p["id"]: (p["x"], p["y"], p["z"]) for p in before["positions"]}
    _, after = await h.get("/api/graph/state?positions=1")
    new_pos = {p["id"]: (p["x"], p["y"], p["z"]) for p in after["positions"]}
    assert all(new_pos[new_ids[k]] == old_pos[ids[k]] for k in ids)  # kept their places
    late = np.array(new_pos[new_ids["late"]])  # the newcomer starts next to its neighbour
    rest = h.core[GRAPH_SERVICE].sim.params.rest_length
    assert np.linalg.norm(late - old_pos[ids["p01"]]) < 3 * rest
    # a page that cannot be read is left out and named; the rest is served
    # and a page whose front matter cannot be read is kept without it, and named
    (vault / "broken.md").write_bytes(b"\xff")
    (vault / "odd.md").write_text("---\n- not key: value\n---\n[[p01]]\n")
    status, body = await h.send("POST", "/api/graph/reload", {},
                                headers={"Authorization": "Bearer boss"})
    assert status == 200 and body["epoch"] == epoch + 2 and body["nodesCount"] == 42
    assert len(body["skipped"]) == 1 and "broken.md" in body["skipped"][0]
    assert len(body["warnings"]) == 1 and "odd.md, line 2" in body["warnings"][0]
    # a source that cannot be read at all changes nothing
    for page in vault.iterdir():
        page.write_bytes(b"\xff")
    status, body = await h.send("POST", "/api/graph/reload", {},
                                headers={"Authorization": "Bearer boss"})
    assert status == 422 and "no readable Markdown pages" in body["error"]["message"]
    assert (await h.get("/api/graph/state"))[1]["epoch"] == epoch + 2


async def test_reload_keeps_the_shortest_path_source_by_key_or_clears_it_aloud(
        make_server: ServerFactory, tmp_path: Path) -> None:
    vault = vault_of(tmp_path / "vault", {"a.md": "- [[b]]\n", "b.md": "- [[c]]\n",
                                          "c.md": "- x\n"})
    h = await make_server(source=str(vault), watch=False, admin_token="boss")
    client, _ = await h.subscribe("q", intervalMs=1000)
    admin = {"Authorization": "Bearer boss"}

    async def after_reload() -> tuple[dict[str, Any], Any]:
        """Reload; the graph_changed, then the SSSP frame that must follow it."""
        status, _ = await h.send("POST", "/api/graph/reload", {}, headers=admin)
        assert status == 200
        change = await client.next_json("graph_changed")
        return change, decode_sssp(await client.next_frame(0x05))

    status, _ = await h.send("POST", "/api/graph/sssp", {"source": (await ids_by_key(h))["b"]})
    assert status == 200
    assert decode_sssp(await client.next_frame(0x05)).source is not None
    # a page added in front of a and b: "b" gets a new id in the new epoch, and stays the source
    (vault / "0.md").write_text("- [[a]]\n", encoding="utf-8")
    change, frame = await after_reload()
    ids = await ids_by_key(h)
    assert change["refetch"] is True and frame.source == ids["b"]
    assert frame.distance[ids["c"]] == 1 and frame.distance[ids["0"]] == 2
    # "b" gone (nothing links to it): the source is cleared, and the subscribers are told
    (vault / "b.md").unlink()
    (vault / "a.md").write_text("- [[c]]\n", encoding="utf-8")
    change, frame = await after_reload()
    assert "b" not in await ids_by_key(h)
    assert frame.source is None and np.isinf(frame.distance).all()
    assert (await h.get("/api/graph/state"))[1]["epoch"] == change["epoch"]
