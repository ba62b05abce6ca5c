"""Physics behaviour: structure, pins, parameters, settling, determinism, topology changes."""

from __future__ import annotations

import numpy as np
import pytest

from graphwire.bench.graphs import barabasi_albert
from graphwire.graph.model import EdgeSpec, Graph, GraphData, GraphError, NodeSpec, NodeType
from graphwire.simulation import PhysicsParams, Simulation, kernels


def ring_of_cliques(cliques: int = 6, size: int = 8) -> Graph:
    nodes = [NodeSpec(f"c{c}-{i}") for c in range(cliques) for i in range(size)]
    edges = [EdgeSpec(f"c{c}-{i}", f"c{c}-{j}") for c in range(cliques)
             for i in range(size) for j in range(i + 1, size)]
    edges += [EdgeSpec(f"c{c}-0", f"c{(c + 1) % cliques}-0") for c in range(cliques)]
    return Graph.from_data(GraphData(nodes, edges))


def test_connected_nodes_end_closer_than_unconnected() -> None:
    g = ring_of_cliques()
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    assert sim.settled
    pos = g.pos[g.live_ids()].astype(np.float64)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=2)
    adj = np.zeros(d.shape, bool)
    src, dst, _ = g.edge_arrays()
    adj[src, dst] = adj[dst, src] = True
    off = ~np.eye(len(pos), dtype=bool)
    assert d[adj].mean() < 0.75 * d[~adj & off].mean()


def test_the_run_settles_stops_and_wakes_on_a_parameter_change() -> None:
    sim = Simulation(barabasi_albert(300))
    steps = sim.run_until_settled(20_000)
    assert sim.settled and steps < 20_000
    assert sim.kinetic_energy < sim.params.settle_energy
    before = sim.graph.pos.copy()
    assert sim.step(10) == 0  # settled: no step runs, nothing moves
    np.testing.assert_array_equal(sim.graph.pos, before)
    assert not sim.wait_awake(0)
    sim.set_params(spring_k=0.2)
    assert sim.wait_awake(0) and not sim.settled
    assert sim.step(5) == 5
    assert not np.array_equal(sim.graph.pos, before)


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


def test_a_drag_moves_a_node_and_the_physics_continues_from_there() -> None:
    g = barabasi_albert(200)
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    sim.move([3], [[300.0, 0.0, 0.0]])
    assert not sim.settled
    sim.step(1)
    assert g.pos[3, 0] < 300.0  # pulled back by its springs and the centre
    assert g.pos[3, 0] > 250.0


def test_parameters_change_the_result() -> None:
    a = Simulation(ring_of_cliques())
    b = Simulation(ring_of_cliques(), PhysicsParams(rest_length=80.0))
    a.step(3000)
    b.step(3000)
    src, dst, _ = a.graph.edge_arrays()
    la = np.linalg.norm(a.graph.pos[src] - a.graph.pos[dst], axis=1).mean()
    lb = np.linalg.norm(b.graph.pos[src] - b.graph.pos[dst], axis=1).mean()
    assert lb > la * 1.3


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


def test_bad_parameters_are_refused_and_nothing_changes() -> None:
    sim = Simulation(barabasi_albert(50))
    with pytest.raises(ValueError, match="damping"):
        sim.set_params(damping=1.5)
    with pytest.raises(ValueError, match="unknown"):
        sim.set_params(dampening=0.5)
    assert sim.params == PhysicsParams()


def test_the_same_seed_gives_the_same_layout() -> None:
    a, b, c = (Simulation(barabasi_albert(500), seed=s) for s in (7, 7, 8))
    for sim in (a, b, c):
        sim.step(400)
    np.testing.assert_array_equal(a.graph.pos, b.graph.pos)
    assert not np.array_equal(a.graph.pos, c.graph.pos)


def brute_force_repulsion(pos: np.ndarray, p: PhysicsParams) -> np.ndarray:
    """The repulsion of the model, every pair evaluated (switched off from rc/2 to rc)."""
    d = pos[:, None, :].astype(np.float64) - pos[None, :, :]
    r2 = (d**2).sum(axis=2)
    cut2, on2 = p.repulsion_cutoff**2, 0.25 * p.repulsion_cutoff**2
    switch = np.where(r2 <= on2, 1.0, (cut2 - r2) ** 2 * (cut2 + 2 * r2 - 3 * on2)
                      / (cut2 - on2) ** 3)
    inside = (r2 < cut2) & (r2 > 0)
    mag = np.where(inside, p.repel_k / (r2 + p.repulsion_softening_epsilon) * switch, 0.0)
    return (d * (mag / np.sqrt(np.where(r2 > 0, r2, 1.0)))[:, :, None]).sum(axis=1)


def test_barnes_hut_repulsion_matches_brute_force_for_every_node() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    pos = (rng.normal(0, 60, (n, 3))).astype(np.float32)
    p = PhysicsParams(center_gravity_k=0, gravity=0, temperature=0, warmup_iterations=0,
                      max_force=1e9)
    want = brute_force_repulsion(pos, p)
    has_neighbours = np.linalg.norm(want, axis=1) > 0
    assert has_neighbours.sum() > 0.99 * n

    def force(theta: float) -> np.ndarray:
        g = Graph.from_data(GraphData([NodeSpec(f"{i:05d}", position=tuple(q))
                                       for i, q in enumerate(pos.tolist())], []))
        sim = Simulation(g, p.replace(theta=theta))
        sim.step(1)
        return sim._force[:n].astype(np.float64)

    exact = force(0.0)
    assert np.abs(exact - want).max() < 1e-4 * np.abs(want).max()
    approx = force(0.8)
    assert np.all(np.linalg.norm(approx[has_neighbours], axis=1) > 0)  # every such node
    # Inside a dense cloud the net repulsion is a small residue of many cancelling terms, so
    # the error is measured against the typical net force, not node by node.
    err = np.linalg.norm(approx - want, axis=1)
    typical = np.median(np.linalg.norm(want, axis=1))
    assert np.median(err) < 0.06 * typical and np.percentile(err, 99) < 0.4 * typical


def test_topology_changes_use_fresh_ids_and_wake() -> None:
    g = barabasi_albert(100)
    sim = Simulation(g)
    sim.run_until_settled(20_000)
    v0 = g.topology_version
    ids, edges = sim.add([NodeSpec("agent-1", type=NodeType.AGENT)],
                         [EdgeSpec("agent-1", g.keys[5])])
    assert ids == [100] and g.topology_version > v0 and not sim.settled
    assert [(e.source, e.target) for e in edges] == [(5, 100)]
    assert np.all(np.isfinite(g.pos[100])) and np.linalg.norm(g.pos[100] - g.pos[5]) < 100
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


def test_kernel_morton_tree_covers_every_point() -> None:
    rng = np.random.default_rng(1)
    pos = rng.normal(0, 10, (5000, 3)).astype(np.float32)
    live = np.arange(5000, dtype=np.int64)
    lo = pos.min(axis=0).astype(np.float64)
    cube = float((pos.max(axis=0) - pos.min(axis=0)).max()) * 1.000001
    codes = kernels.morton_codes(pos, live, lo, float((1 << 21) / cube))
    order = np.argsort(codes)
    sp = pos[order]
    tree = kernels.build_octree(codes[order], sp[:, 0].copy(), sp[:, 1].copy(), sp[:, 2].copy(),
                                lo, cube, 20000)
    count, start, end, first, _nchild, _com, mass, box, _parent = tree
    assert mass[0] == 5000
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
        g = ring_of_cliques()
        sim = Simulation(g, agent_params=agent_params)
        sim.add([NodeSpec(f"agent-{i}", type=NodeType.AGENT) for i in range(4)],
                [EdgeSpec(f"agent-{i}", f"c{i}-1") for i in range(4)])
        sim.step(1500)
        agents = np.flatnonzero(g.agent[: g.id_limit])
        src, dst, _ = g.edge_arrays()
        touch = g.agent[src] | g.agent[dst]
        length = np.linalg.norm(g.pos[src] - g.pos[dst], axis=1)
        return float(length[touch].mean()), float(np.abs(g.vel[agents]).max())

    same = run(None)
    long_springs = run(PhysicsParams(rest_length=120.0))
    frozen = run(PhysicsParams(max_velocity=1e-6))
    assert long_springs[0] > 1.5 * same[0]  # springs touching an agent take its rest length
    assert frozen[1] <= 1e-6 * 1.001  # agents integrate with their own max_velocity
    sim = Simulation(ring_of_cliques())
    sim.set_params(agent=True, damping=0.5)
    assert sim.agent_params.damping == 0.5 and sim.params.damping == 0.92
