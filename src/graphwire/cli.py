"""The ``graphwire`` command: serve, layout, settings, bench.

Each subcommand imports what it needs when it runs, so ``graphwire --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__

BENCHES = ("codec", "physics", "trace", "fanout", "settings")


def _bench(args: argparse.Namespace) -> int:
    from .bench import report

    name: str = args.name
    runner: Callable[[], list[report.Row]]
    if name == "codec":
        from .bench import codec

        runner = codec.run
    else:
        import importlib

        try:
            module = importlib.import_module(f"graphwire.bench.{name}")
        except ModuleNotFoundError:
            print(f"graphwire bench: {name!r} is not available yet", file=sys.stderr)
            return 2
        runner = module.run
    rows = runner()
    report.emit(name, rows, as_json=args.json)
    return 0


def _fail(message: str) -> int:
    print(f"graphwire: {message}", file=sys.stderr)
    return 2


def _layout(args: argparse.Namespace) -> int:
    import json
    import os

    from tqdm import tqdm

    from .graph.model import Graph, GraphError
    from .graph.sources import SourceError, load_source
    from .simulation import PhysicsParams, Simulation

    try:
        data = load_source(args.source, progress=None)
        graph = Graph.from_data(data)
    except (SourceError, GraphError) as exc:
        return _fail(str(exc))
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        return _fail(f"{args.out}: the folder {out_dir} does not exist")
    sim = Simulation(graph, PhysicsParams(), seed=args.seed)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(total=args.max_steps, unit="step", file=sys.stderr, disable=not show,
              desc=f"layout of {graph.node_count} nodes") as bar:
        steps = sim.run_until_settled(args.max_steps, progress=bar)
        bar.set_postfix(settled=sim.settled, energy=f"{sim.kinetic_energy:.4f}")
    live = graph.live_ids()
    doc = {
        "nodes": [
            {"id": int(i), "key": graph.keys[i], "x": float(graph.pos[i, 0]),
             "y": float(graph.pos[i, 1]), "z": float(graph.pos[i, 2])}
            for i in live
        ],
        "steps": steps,
        "settled": sim.settled,
    }
    tmp = f"{args.out}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, args.out)
    except OSError as exc:
        return _fail(f"{args.out}: cannot write ({exc.strerror})")
    if not sim.settled:
        print(f"graphwire: not settled after {steps} steps (kinetic energy per node "
              f"{sim.kinetic_energy:.4f}); raise --max-steps to run longer", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphwire`` command."""
    parser = argparse.ArgumentParser(
        prog="graphwire",
        description="Stream a living 3D knowledge-graph layout over one WebSocket.",
    )
    parser.add_argument("--version", action="version", version=f"graphwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    layout = sub.add_parser("layout", help="lay a graph out to rest and write the positions")
    layout.add_argument("source", help="a Markdown vault folder, .json, .graphml, .gexf or .csv")
    layout.add_argument("--out", required=True, help="where to write the layout (JSON)")
    layout.add_argument("--max-steps", type=int, default=30_000,
                        help="stop after this many physics steps if not settled (default 30000)")
    layout.add_argument("--seed", type=int, default=1, help="seed of the start (default 1)")
    layout.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal)")
    layout.set_defaults(func=_layout)

    bench = sub.add_parser("bench", help="run a benchmark and print its table (or --json)")
    bench.add_argument("name", choices=BENCHES, help="which benchmark")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphwire`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
