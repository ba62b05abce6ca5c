"""Push a few moving agent nodes: add them over REST, then stream their positions.

    python examples/push_agents.py [URL] [--agents N] [--seconds S]

The agents are added as nodes of type ``agent`` linked to a knowledge node, then moved along
circles through the client's BatchQueue (batched, agents first, pinned where they are put).
Every batch is acknowledged by the server; the counters show it. The agents are removed again
at the end (``--keep`` leaves them in the graph).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from graphwire.client import BlockingClient, ClientError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8080")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="leave the agents in the graph")
    args = parser.parse_args()
    with BlockingClient(args.url, format="q") as client:
        anchor = client.mirror.key_of(int(client.mirror.live_ids[0]))
        stamp = int(time.time() * 1000)
        keys = [f"agent-{stamp}-{i}" for i in range(args.agents)]
        reply = client.post_json("/api/graph/nodes", {
            "nodes": [{"key": k, "type": "agent", "label": k} for k in keys],
            "edges": [{"source": k, "target": anchor} for k in keys],
        })
        ids = [n["id"] for n in reply["nodes"]]
        try:
            move_agents(client, ids, anchor, args.seconds)
        finally:  # also after an error or Ctrl-C: leave the graph as it was found
            if not args.keep:
                gone = remove_agents(client, {n["id"]: n["key"] for n in reply["nodes"]})
                print(f"removed {gone} agents")


def move_agents(client: BlockingClient, ids: list[int], anchor: str, seconds: float) -> None:
    """Move the agents along circles for ``seconds``, then print the BatchQueue's counters."""
    deadline = time.monotonic() + 10  # graph_changed brings them into the mirror
    while not all(client.mirror.is_known(i) for i in ids):
        if time.monotonic() > deadline:
            raise SystemExit("the new agents never reached the mirror")
        time.sleep(0.02)
    print(f"added {len(ids)} agents (ids {ids}) next to {anchor!r}")
    start = time.monotonic()
    while (t := time.monotonic() - start) < seconds:
        for k, nid in enumerate(ids):
            angle = t + 2 * math.pi * k / len(ids)
            why = client.move(nid, 200 * math.cos(angle), 200 * math.sin(angle), 50.0 * k,
                              mode="pin")
            if why is not None:
                print(f"agent {nid} refused: {why}")
        time.sleep(0.05)
    client.flush()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        c = client.counters()
        if c["acked"] + c["failed"] >= c["sent"]:
            break
        time.sleep(0.05)
    c = client.counters()
    print(f"queued {c['queued']}, sent {c['sent']} in {c['batches']} batches, acked "
          f"{c['acked']} (accepted {c['accepted']}), coalesced {c['replaced']}, "
          f"retried {c['retried']}, failed {c['failed']}")
    for nid in ids:
        x, y, z = client.positions[nid]
        print(f"agent {nid} at ({x:.1f}, {y:.1f}, {z:.1f})")


def remove_agents(client: BlockingClient, keys_by_id: dict[int, str]) -> int:
    """Delete the agents this script added, each only while its id still names it (a reload
    of the graph meanwhile may have given the id to another node)."""
    data = client.get_json("/api/graph/data")
    now = {n["id"]: n["key"] for n in data["nodes"]}
    gone = 0
    for nid, key in keys_by_id.items():
        if now.get(nid) == key:
            client.post_json(f"/api/graph/nodes/{nid}", None, method="DELETE")
            gone += 1
    return gone


if __name__ == "__main__":
    try:
        main()
    except ClientError as exc:  # no server there, a refused token: say so, no traceback
        sys.exit(f"{__file__}: {exc}")
