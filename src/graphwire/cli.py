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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphwire`` command."""
    parser = argparse.ArgumentParser(
        prog="graphwire",
        description="Stream a living 3D knowledge-graph layout over one WebSocket.",
    )
    parser.add_argument("--version", action="version", version=f"graphwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
