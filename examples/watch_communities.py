"""Watch a graph and print the centre of each of its communities as the layout moves.

    python examples/watch_communities.py [URL] [--seconds S]

Communities are found once from the edges (Louvain, networkx); their centres are means of the
live positions in the client's numpy mirror, read from the main thread while the client's loop
runs in the background.
"""

from __future__ import annotations

import argparse
import sys
import time

import networkx as nx
import numpy as np

from graphwire.client import BlockingClient, ClientError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8080")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to watch")
    args = parser.parse_args()
    with BlockingClient(args.url, format="q") as client:
        mirror = client.mirror
        g = nx.Graph(list(mirror.edges))
        g.add_nodes_from(mirror.nodes)
        communities = sorted(nx.community.louvain_communities(g, seed=1), key=len, reverse=True)
        members = [np.fromiter(c, np.int64) for c in communities[:5]]
        print(f"{len(mirror.nodes)} nodes, {len(mirror.edges)} edges, "
              f"{len(communities)} communities; the largest five:")
        end = time.monotonic() + args.seconds
        while True:
            positions = client.positions  # a copy, indexed by node id
            print(f"seq {client.seq}:")
            for i, ids in enumerate(members):
                centre = np.nanmean(positions[ids], axis=0)
                hub = max(ids.tolist(), key=g.degree)
                print(f"  community {i} ({len(ids)} nodes, around {mirror.key_of(hub)!r}): "
                      f"centre ({centre[0]:8.1f}, {centre[1]:8.1f}, {centre[2]:8.1f})")
            if time.monotonic() >= end:
                break
            time.sleep(1.0)


if __name__ == "__main__":
    try:
        main()
    except ClientError as exc:  # no server there, a refused token: say so, no traceback
        sys.exit(f"{__file__}: {exc}")
