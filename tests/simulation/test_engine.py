"""Physics behaviour: structure, pins, parameters, settling, determinism, topology changes."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from graphwire.bench.graphs import _graph, barabasi_albert, planted_communities
from graphwire.bench.quality import community_ratio, neighbour_share
from graphwire.graph.model import EdgeSpec, Graph, GraphData, GraphError, NodeSpec, NodeType
from graphwire.simulation import PhysicsParams, Simulation, kernels


def two_cliques(size: int = 12) -> Graph:
    """Two cliques joined by one edge (a0 - b0)."""
    nodes = [NodeSpec(f"{c}{i:02d}") for c in "ab" for i in range(size)]
    edges = [EdgeSpec(f"{c}{i:02d}", f"{c}{j:02d}") for c in "ab"
             for i in range(size) for j in range(i + 1, size)]
    edges.append(EdgeSpec("a00", "b00"))
    return Graph.from_data(GraphData(nodes, edges))


def path(n: int) -> Graph:
    """A path of n nodes; node i is id i."""
    return _graph(nx.path_graph(n), f"path{n}")


def straightness(pos: np.ndarray) -> float:
    """End-to-end distance over the length along the path (1: a straight line)."""
    p = pos.astype(np.float64)
    return float(np.linalg.norm(p[-1] - p[0]) / np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def test_two_cliques_joined_by_an_edge_end_apart() -> None:
    g = two_cliques()
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    assert sim.settled
    pos = g.pos[g.live_ids()].astype(np.float64)
    a, b = pos[:12], pos[12:]
    radius = max(np.linalg.norm(a - a.mean(axis=0), axis=1).max(),
                 np.linalg.norm(b - b.mean(axis=0), axis=1).max())
    assert np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)) > 4 * radius
    # every node's nearest other node is in its own clique
    d = np.linalg.norm(pos[:, None] - pos[None], axis=2) + np.eye(24) * 1e9
    assert np.all(d.argmin(axis=1) // 12 == np.arange(24) // 12)


@pytest.mark.parametrize("n", [30, 100])
def test_a_path_graph_ends_nearly_straight(n: int) -> None:
    g = path(n)
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    assert sim.settled
    assert straightness(g.pos[:n]) > 0.9


def spread(pos: np.ndarray) -> np.ndarray:
    """The layout's extent along its three principal axes, over the longest (1, a, b)."""
    p = pos.astype(np.float64)
    s = np.linalg.svd(p - p.mean(axis=0), compute_uv=False)
    return s / s[0]


def angle(at: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """The angle at ``at`` of the triangle (at, b, c), in degrees."""
    u, v = b - at, c - at
    cos = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def test_a_small_graph_keeps_its_triangle_and_uses_three_dimensions() -> None:
    # A triangle with a tail, weighted as in a user's CSV, came to rest on one line, its
    # triangle's edges on top of each other; the karate club lay almost flat (third axis 4 %
    # of the first)
    for shape, fat in ((None, True), (0.0, False)):
        g = Graph.from_data(GraphData([NodeSpec(k) for k in "abcdef"], [
            EdgeSpec("a", "b"), EdgeSpec("b", "c", 2.5), EdgeSpec("c", "a"), EdgeSpec("c", "d"),
            EdgeSpec("d", "e", 0.5), EdgeSpec("e", "f")]))
        sim = Simulation(g, PhysicsParams() if shape is None
                         else PhysicsParams(shape_gravity=shape))
        sim.run_until_settled(20_000)
        assert sim.settled
        a, b, c = g.pos[:3].astype(np.float64)
        assert (min(angle(a, b, c), angle(b, c, a), angle(c, a, b)) > 15) is fat
    karate = _graph(nx.karate_club_graph(), "karate")
    sim = Simulation(karate)
    sim.run_until_settled(20_000)
    assert spread(karate.pos[karate.live_ids()])[2] > 0.1
    # without the shape pull it is the flat layout of before
    flat = _graph(nx.karate_club_graph(), "karate")
    sim = Simulation(flat, PhysicsParams(shape_gravity=0.0))
    sim.run_until_settled(20_000)
    assert spread(flat.pos[flat.live_ids()])[2] < 0.06


def test_a_layout_at_rest_stays_at_rest() -> None:
    sim = Simulation(barabasi_albert(300))
    steps = sim.run_until_settled(20_000)
    assert sim.settled and steps < 20_000
    assert sim.kinetic_energy < sim.params.settle_energy
    before = sim.graph.pos.copy()
    assert sim.step(200) == 0  # settled: no step runs, nothing moves
    np.testing.assert_array_equal(sim.graph.pos, before)
    assert not sim.wait_awake(0)
    snap = sim.publish()
    assert snap.settled
    np.testing.assert_array_equal(snap.pos, before[snap.ids])


def test_quality_at_four_times_the_steps_is_no_worse() -> None:
    g, block = planted_communities(blocks=6)
    indptr, nbr, _ = g.csr()
    sim = Simulation(g)
    sim.step(150)
    share1 = neighbour_share(g.pos[:600], indptr, nbr)
    ratio1 = community_ratio(g.pos[:600], block)
    sim.step(450)
    share4 = neighbour_share(g.pos[:600], indptr, nbr)
    ratio4 = community_ratio(g.pos[:600], block)
    assert share1 > 0.3 and ratio1 < 0.15  # the blocks are already apart
    assert share4 >= share1 - 0.01 and ratio4 <= ratio1 + 0.01


def test_the_run_wakes_on_a_parameter_change_and_settles_again() -> None:
    sim = Simulation(barabasi_albert(300))
    sim.run_until_settled(20_000)
    before = sim.graph.pos.copy()
    sim.set_params(spring_k=2.0)
    assert sim.wait_awake(0) and not sim.settled
    assert sim.step(5) == 5
    assert not np.array_equal(sim.graph.pos, before)
    sim.run_until_settled(20_000)
    assert sim.settled


def test_a_huge_repulsion_put_back_leaves_the_layout_as_it_was() -> None:
    # A user dragged "spread" to 600,000 and back: the layout, blown up against the bounds,
    # came back 7 times too large and had lost its neighbourhoods. A change of what sets the
    # size scales the layout there at once (the shape kept), both ways.
    g, block = planted_communities(blocks=6)
    sim = Simulation(g)
    sim.run_until_settled(30_000)
    n = g.id_limit
    indptr, nbr, _ = g.csr()

    def size() -> float:
        p = g.pos[:n].astype(np.float64)
        return float(np.median(np.linalg.norm(p - np.median(p, axis=0), axis=1)))

    rest, share = size(), neighbour_share(g.pos[:n], indptr, nbr)
    sim.set_params(repel_k=600_000.0)
    assert size() > 10 * rest  # answered at once, not over minutes
    sim.step(300)
    sim.set_params(repel_k=3.0)
    sim.run_until_settled(30_000)
    assert sim.settled
    assert 0.7 * rest < size() < 1.4 * rest
    assert neighbour_share(g.pos[:n], indptr, nbr) > share - 0.05
    assert community_ratio(g.pos[:n], block) < 0.15
    # a small change of an unrelated knob moves nothing at once
    before = g.pos.copy()
    sim.set_params(damping=0.9)
    np.testing.assert_array_equal(g.pos, before)
    # nor does any change while the physics is off
    sim.set_params(enabled=False)
    sim.set_params(repel_k=3000.0)
    np.testing.assert_array_equal(g.pos, before)


def test_the_size_change_ignores_pinned_and_unlinked_nodes() -> None:
    # Only free, linked knowledge nodes count and move: a pinned graph beside a few unlinked
    # nodes is no reason to fling anything (the factor of the pinned edges never changed)
    g = barabasi_albert(200)
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    sim.move(range(200), g.pos[:200].copy(), pin=True)
    sim.add([NodeSpec(f"lone{i}") for i in range(10)])
    sim.run_until_settled(20_000)
    before = g.pos.copy()
    sim.set_params(repel_k=30.0)
    np.testing.assert_array_equal(g.pos, before)
    assert np.abs(g.pos[: g.id_limit]).max() <= sim.params.bounds_size


def test_releasing_a_node_that_is_not_pinned_changes_nothing() -> None:
    sim = Simulation(barabasi_albert(100))
    sim.run_until_settled(20_000)
    assert sim.settled
    sim.release([3])
    assert sim.settled


def test_a_pinned_node_stays_exactly_where_it_was_put() -> None:
    g = barabasi_albert(200)
    sim = Simulation(g)
    sim.step(50)
    target = np.array([[12.5, -40.25, 3.0]], np.float32)
    sim.move([7], target, pin=True)
    sim.step(300)
    np.testing.assert_array_equal(g.pos[7], target[0])
    assert np.all(g.vel[7] == 0)
    sim.release([7])
    sim.step(50)
    assert not np.array_equal(g.pos[7], target[0])


def test_a_drag_disturbs_the_layout_locally() -> None:
    g = path(60)
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    assert sim.settled
    before = g.pos[:60].astype(np.float64)
    far_end = before[59] + 0.3 * (before[59] - before[30])
    # pull one end further out and hold it there, as a user's drag does (the page pins the
    # node it holds); a node let go mid-layout just falls back, which shows nothing local
    sim.move([59], [far_end], pin=True)
    assert not sim.settled
    sim.run_until_settled(20_000)
    np.testing.assert_allclose(g.pos[59], far_end, rtol=1e-6)
    shift = g.pos[:60] - before
    scale = np.linalg.norm(np.diff(before, axis=0), axis=1).mean()
    near = np.linalg.norm(shift[50:59], axis=1).max()
    assert near > 0.05 * scale  # the dragged end's neighbours answered
    # the far part keeps its shape: at most it drifts as a whole (gravity holds the component,
    # whose centre the drag moved), its nodes barely move against each other
    far = np.linalg.norm(shift[:40] - shift[:40].mean(axis=0), axis=1).max()
    assert far < 0.03 * scale and far < 0.1 * near


def test_a_parameter_takes_effect_on_the_next_step() -> None:
    sim = Simulation(barabasi_albert(100))
    sim.step(10)
    sim.set_params(enabled=False)
    before = sim.graph.pos.copy()
    assert sim.step(5) == 0
    np.testing.assert_array_equal(sim.graph.pos, before)
    sim.set_params(enabled=True, max_velocity=1e-3)
    sim.step(1)
    moved = np.linalg.norm(sim.graph.pos.astype(np.float64) - before, axis=1)
    ulp = float(np.spacing(np.abs(before).max()))  # float32 positions round each axis
    assert moved.max() <= 1e-3 * sim.params.dt + 2 * ulp


def test_rest_length_scales_the_layout_without_changing_its_shape() -> None:
    unlimited = PhysicsParams(max_velocity=1e7, bounds_size=1e7)  # caps are in wire units
    a = Simulation(barabasi_albert(200), unlimited)
    b = Simulation(barabasi_albert(200), unlimited.replace(rest_length=40.0))
    a.step(300)
    b.step(300)
    pa = a.graph.pos[:200].astype(np.float64)
    pb = b.graph.pos[:200].astype(np.float64)
    np.testing.assert_allclose(pb, 4 * pa, rtol=1e-3, atol=1e-2 * np.abs(pb).max())


def test_bad_parameters_are_refused_and_nothing_changes() -> None:
    sim = Simulation(barabasi_albert(50))
    with pytest.raises(ValueError, match="damping"):
        sim.set_params(damping=1.5)
    with pytest.raises(ValueError, match="unknown"):
        sim.set_params(dampening=0.5)
    with pytest.raises(ValueError, match="repel_k"):
        sim.set_params(repel_k=float("nan"))
    assert sim.params == PhysicsParams()


def test_the_same_seed_gives_the_same_layout() -> None:
    a, b, c = (Simulation(barabasi_albert(500), seed=s) for s in (7, 7, 8))
    for sim in (a, b, c):
        sim.step(400)
    np.testing.assert_array_equal(a.graph.pos, b.graph.pos)
    assert not np.array_equal(a.graph.pos, c.graph.pos)


def brute_force_field(pos: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """The repulsion field of the model, every pair evaluated: Σ w_j (p − p_j) / (d² + ε)."""
    d = pos[:, None, :].astype(np.float64) - pos[None, :, :]
    r2 = (d**2).sum(axis=2)
    return (d * (w[None, :] / (r2 + eps))[:, :, None]).sum(axis=1)


def test_barnes_hut_repulsion_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    pos = rng.normal(0, 6, (n, 3)).astype(np.float32)
    w = rng.integers(1, 20, n).astype(np.float32)
    want = brute_force_field(pos, w, 1e-4)

    def field(theta: float) -> np.ndarray:
        live = np.arange(n, dtype=np.int64)
        lo = pos.min(axis=0).astype(np.float64)
        cube = float((pos.max(axis=0) - pos.min(axis=0)).max()) * 1.000001
        codes = kernels.morton_codes(pos, live, lo, float((1 << 21) / cube))
        order = np.argsort(codes, kind="stable")
        sp = pos[order]
        xs, ys, zs = (np.ascontiguousarray(sp[:, k]) for k in range(3))
        tree = kernels.build_octree(codes[order], xs, ys, zs, w[order], lo, cube, 8 * n)
        count, start, end, first, nchild, com, mass, box, _parent = tree
        groups = np.flatnonzero(first[:count] < 0)  # every leaf its own group
        out = np.zeros((n, 3), np.float32)
        crowd = np.zeros((n, 3), np.float32)
        kernels.repulsion(xs, ys, zs, w[order], groups, start, end, first, nchild,
                          com.astype(np.float32), mass.astype(np.float32), box, 0.0, 1e-4,
                          theta, 0.0, out, crowd)
        back = np.empty_like(out)
        back[order] = out
        return back.astype(np.float64)

    exact = field(0.0)
    assert np.abs(exact - want).max() < 1e-3 * np.abs(want).max()
    approx = field(1.0)
    err = np.linalg.norm(approx - want, axis=1)
    typical = np.median(np.linalg.norm(want, axis=1))
    assert np.median(err) < 0.05 * typical and np.percentile(err, 99) < 0.3 * typical


def test_nodes_closer_than_one_unit_are_pushed_apart() -> None:
    nodes = [NodeSpec(f"n{i}", position=(0.5 * i, 0.0, 0.0)) for i in range(3)]
    g = Graph.from_data(GraphData(nodes, []))
    crowded = Simulation(g, PhysicsParams(repel_k=0.0, gravity=0.0, rest_length=1.0))
    crowded.step(200)
    gaps = np.diff(np.sort(g.pos[:3, 0]))
    assert gaps.min() > 0.9  # one layout unit apart, give or take the spring of the push
    g2 = Graph.from_data(GraphData(nodes, []))
    free = Simulation(g2, PhysicsParams(repel_k=0.0, gravity=0.0, rest_length=1.0,
                                        collision_k=0.0))
    free.step(200)
    np.testing.assert_allclose(np.diff(np.sort(g2.pos[:3, 0])), 0.5, atol=1e-6)


def test_components_are_held_in_view_without_being_bent() -> None:
    # a path and a lone node: gravity pulls each component as a whole
    nodes = [NodeSpec(f"p{i:02d}") for i in range(20)] + [NodeSpec("z")]
    edges = [EdgeSpec(f"p{i:02d}", f"p{i + 1:02d}") for i in range(19)]
    g = Graph.from_data(GraphData(nodes, edges))
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    assert sim.settled
    chain = g.pos[:20]
    assert straightness(chain) > 0.95
    span = np.linalg.norm(chain[-1] - chain[0])
    assert np.linalg.norm(g.pos[20] - chain.mean(axis=0)) < 5 * span


def test_topology_changes_use_fresh_ids_and_wake() -> None:
    g = barabasi_albert(100)
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    v0 = g.topology_version
    ids, edges = sim.add([NodeSpec("agent-1", type=NodeType.AGENT)],
                         [EdgeSpec("agent-1", g.keys[5])])
    assert ids == [100] and g.topology_version > v0 and not sim.settled
    assert [(e.source, e.target) for e in edges] == [(5, 100)]
    rest = sim.params.rest_length
    assert np.all(np.isfinite(g.pos[100])) and np.linalg.norm(g.pos[100] - g.pos[5]) < 3 * rest
    sim.remove_node(100)
    more, _ = sim.add([NodeSpec("agent-2", type=NodeType.AGENT)])
    assert more == [101]  # 100 is never used again
    with pytest.raises(GraphError):
        sim.add([NodeSpec("x")], [EdgeSpec("x", "no-such-node")])
    assert g.id_of("x") is None  # all or nothing
    sim.step(20)
    assert np.all(np.isfinite(g.pos[g.live_ids()]))
    snap = sim.publish()
    assert 100 not in snap.ids.tolist() and 101 in snap.ids.tolist()
    assert snap.seq == 1 and sim.publish().seq == 2


def test_kernel_morton_tree_covers_every_point_and_weighs_them() -> None:
    rng = np.random.default_rng(1)
    pos = rng.normal(0, 10, (5000, 3)).astype(np.float32)
    w = rng.uniform(1, 5, 5000).astype(np.float32)
    live = np.arange(5000, dtype=np.int64)
    lo = pos.min(axis=0).astype(np.float64)
    cube = float((pos.max(axis=0) - pos.min(axis=0)).max()) * 1.000001
    codes = kernels.morton_codes(pos, live, lo, float((1 << 21) / cube))
    order = np.argsort(codes)
    sp = pos[order]
    tree = kernels.build_octree(codes[order], sp[:, 0].copy(), sp[:, 1].copy(), sp[:, 2].copy(),
                                w[order], lo, cube, 20000)
    count, start, end, first, _nchild, com, mass, box, _parent = tree
    assert mass[0] == pytest.approx(float(w.sum()), rel=1e-6)
    np.testing.assert_allclose(com[0], (pos * w[:, None]).sum(axis=0) / w.sum(), rtol=1e-4,
                               atol=1e-4)
    leaves = np.flatnonzero(first[:count] < 0)
    covered = np.zeros(5000, int)
    for leaf in leaves:
        covered[start[leaf]:end[leaf]] += 1
    assert np.all(covered == 1)
    for leaf in leaves[:200]:
        pts = sp[start[leaf]:end[leaf]]
        assert np.all(pts >= box[leaf, :3] - 1e-3) and np.all(pts <= box[leaf, :3] + box[leaf, 3]
                                                               + 1e-3)


def test_agent_nodes_move_by_their_own_parameters() -> None:
    def run(agent_params: PhysicsParams | None) -> tuple[float, float]:
        g = two_cliques()
        sim = Simulation(g, agent_params=agent_params)
        sim.add([NodeSpec(f"agent-{i}", type=NodeType.AGENT) for i in range(4)],
                [EdgeSpec(f"agent-{i}", f"a{i + 1:02d}") for i in range(4)])
        sim.step(600)
        agents = np.flatnonzero(g.agent[: g.id_limit])
        src, dst, _ = g.edge_arrays()
        touch = g.agent[src] | g.agent[dst]
        length = np.linalg.norm(g.pos[src] - g.pos[dst], axis=1)
        return float(length[touch].mean()), float(np.abs(g.vel[agents]).max())

    same = run(None)
    weak_springs = run(PhysicsParams(spring_k=0.2))
    frozen = run(PhysicsParams(max_velocity=1e-6))
    assert weak_springs[0] > 1.5 * same[0]  # springs touching an agent take its strength
    assert frozen[1] <= 1e-6 * 1.001  # agents move with their own max_velocity
    sim = Simulation(two_cliques())
    sim.set_params(agent=True, damping=0.5)
    assert sim.agent_params.damping == 0.5 and sim.params.damping == PhysicsParams().damping
