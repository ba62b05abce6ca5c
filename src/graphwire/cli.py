"""The ``graphwire`` command: serve, watch, layout, settings, bench.

Each subcommand imports what it needs when it runs, so ``graphwire --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .bench.report import positive as _positive

BENCHES = ("codec", "physics", "trace", "fanout", "settings", "layout", "browser", "client",
           "live")


def _bench(args: argparse.Namespace) -> int:
    import importlib
    import inspect

    from .bench import report

    name: str = args.name
    options = list(args.options or [])
    as_json = args.json or "--json" in options
    options = [o for o in options if o != "--json"]
    module = importlib.import_module(f"graphwire.bench.{name}")
    runner: Callable[..., list[report.Row]] = module.run
    if inspect.signature(runner).parameters:
        rows = runner(options)
    elif options in (["--help"], ["-h"]):
        print(f"usage: graphwire bench {name} [--json]\n\n{inspect.getdoc(module)}")
        return 0
    elif options:
        return _fail(f"bench {name} takes no options (got {' '.join(options)})")
    else:
        rows = runner()
    report.emit(name, rows, as_json=as_json)
    return 0


def _count(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more (got {text})")
    return value


def _fail(message: str) -> int:
    print(f"graphwire: {message}", file=sys.stderr)
    return 2


def _layout(args: argparse.Namespace) -> int:
    import os

    from tqdm import tqdm

    from .graph.layout_file import Layout, write_layout
    from .graph.model import Graph, GraphError
    from .graph.sources import SourceError, load_source
    from .simulation import PhysicsParams, Simulation

    try:
        data = load_source(args.source, progress=None)
        graph = Graph.from_data(data)
    except (SourceError, GraphError) as exc:
        return _fail(str(exc))
    for problem in data.skipped:
        print(f"graphwire: {problem} (left out)", file=sys.stderr)
    for warning in data.warnings:
        print(f"graphwire: {warning}", file=sys.stderr)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        return _fail(f"{args.out}: the folder {out_dir} does not exist")
    sim = Simulation(graph, PhysicsParams(), seed=args.seed)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(total=args.max_steps, unit="step", file=sys.stderr, disable=not show,
              desc=f"layout of {graph.node_count} nodes") as bar:
        steps = sim.run_until_settled(args.max_steps, progress=bar)
        bar.total = steps  # it settled early: the bar ends full, not at the share it reached
        bar.set_postfix(settled=sim.settled, energy=f"{sim.kinetic_energy:.4f}")
    layout = Layout.of_graph(graph, settled=sim.settled)
    try:
        write_layout(args.out, layout, graph.live_ids().tolist(), steps=steps)
    except OSError as exc:
        return _fail(f"{args.out}: cannot write ({exc.strerror})")
    except ValueError as exc:
        return _fail(f"{args.out}: not written ({exc})")
    if not sim.settled:
        print(f"graphwire: not settled after {steps} steps (kinetic energy per node "
              f"{sim.kinetic_energy:.4f}); raise --max-steps to run longer", file=sys.stderr)
    print(f"wrote {graph.node_count} positions to {args.out} "
          f"({'settled' if sim.settled else 'still moving'} after {steps} steps)")
    return 0


def _setting_value(text: str) -> object:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _serve(args: argparse.Namespace) -> int:
    import logging
    import os

    from .cluster.link import RedisConfigError
    from .graph.sources import SourceError
    from .server.app import run, serve
    from .server.config import ServerConfig
    from .settings import SettingsError, StoreError

    logging.basicConfig(level=logging.WARNING,
                        format="graphwire: %(asctime)s %(levelname)s %(message)s")
    # what a watched source's edits did ("source changed: +1 -0 ~0 nodes … (added X)"): the
    # feedback a person editing notes looks for in the terminal
    logging.getLogger("graphwire.server.source").setLevel(logging.INFO)
    overrides: dict[str, object] = {}
    for item in args.set or []:
        path, sep, value = item.partition("=")
        if not sep:
            return _fail(f"--set {item!r}: expected PATH=VALUE")
        overrides[path] = _setting_value(value)
    config = ServerConfig(
        source=args.source, host=args.host, port=args.port, db=args.db, token=args.token,
        admin_token=args.admin_token, allow_origins=args.allow_origin or [],
        server_names=args.server_name or [],
        trusted_proxy=args.trusted_proxy, physics_hz=args.physics_hz, seed=args.seed,
        overrides=overrides, watch=args.watch, layout=args.layout, redis=args.redis,
        role=args.role, redis_namespace=args.redis_namespace, lease_ttl=args.lease_ttl,
        node_id=args.node_id)
    if args.role != "all" and not args.redis:
        return _fail(f"--role {args.role} needs --redis URL (docs/deploy.md)")
    if args.redis and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        return _fail(f"--redis {args.redis}: a Redis URL starts with redis://, rediss:// or "
                     f"unix:// (redis://{args.redis.split('://')[-1]}, say)")
    if args.lease_ttl <= 0:
        return _fail("--lease-ttl must be positive")
    if not 0 <= args.port <= 65535:
        return _fail(f"--port {args.port}: a port is 0 to 65535")
    if args.db and args.db != ":memory:":
        folder = os.path.dirname(os.path.abspath(args.db))
        if not os.path.isdir(folder):  # a typo must not create a tree of folders
            return _fail(f"--db {args.db}: the folder {folder} does not exist")
    try:
        run(serve(config))
    except (SourceError, StoreError, SettingsError, RedisConfigError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot serve on {args.host}:{args.port} ({exc.strerror or exc})")
    return 0


def _settings_reference(args: argparse.Namespace) -> int:
    from .settings.schema import reference

    sys.stdout.write(reference())
    return 0


def _settings_cli(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from .client.connection import endpoints

    try:
        server, _ = endpoints(args.url)  # as graphwire watch reads it: host:port will do
    except ValueError as exc:
        return _fail(str(exc))
    base = server + "/api/settings/" + urllib.parse.quote(args.path, safe=".")
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    if args.action == "get":
        req = urllib.request.Request(base, headers=headers)
    else:
        body = json.dumps({"value": _setting_value(args.value)}).encode()
        req = urllib.request.Request(base, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            return _fail(f"{err['code']}: {err['message']}")
        except (ValueError, KeyError):
            return _fail(f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        return _fail(f"cannot reach {args.url} ({getattr(exc, 'reason', exc)})")
    if args.action == "get":
        print(json.dumps(doc["value"]))
    else:
        was = json.dumps(doc["previousValue"])
        print(f"{doc['path']} = {json.dumps(doc['value'])} (was {was}, "
              f"revision {doc['revision']})")
    return 0


def _watch(args: argparse.Namespace) -> int:
    import asyncio

    from .client.watch import watch

    if args.duration is not None and args.duration <= 0:
        return _fail("--duration must be a positive number of seconds")
    return asyncio.run(watch(args.url, as_json=args.json, duration=args.duration,
                             fmt=args.format, token=args.token))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphwire`` command."""
    parser = argparse.ArgumentParser(
        prog="graphwire",
        description="Stream a living 3D knowledge-graph layout over one WebSocket.",
    )
    parser.add_argument("--version", action="version", version=f"graphwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve a graph (the demo without SOURCE)")
    serve.add_argument("source", nargs="?", help="a Markdown vault, .json, .graphml, .gexf or "
                       ".csv (default: the bundled demo)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (8080)")
    serve.add_argument("--db", help="settings database (default: in the user data folder)")
    serve.add_argument("--token", help="require this token on /ws and /api")
    serve.add_argument("--admin-token", help="only this token may write system.* settings")
    serve.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                       help="a web origin allowed to connect besides the server's own "
                       "(repeatable)")
    serve.add_argument("--server-name", action="append", metavar="NAME",
                       help="a host name clients reach the server by, for the Host and "
                       "Origin checks (repeatable; the bound address and, on a loopback or "
                       "wildcard bind, this machine's names are always accepted)")
    serve.add_argument("--trusted-proxy", action="store_true",
                       help="the peer is a reverse proxy: identify clients by the address "
                       "it saw (the right-most X-Forwarded-For entry)")
    serve.add_argument("--physics-hz", type=_positive, help="cap physics steps per second "
                       "(default: real time, 1/dt)")
    serve.add_argument("--seed", type=int, default=1, help="seed of the start layout")
    serve.add_argument("--set", action="append", metavar="PATH=VALUE",
                       help="set a setting at start (stored; repeatable)")
    serve.add_argument("--watch", action=argparse.BooleanOptionalAction, default=True,
                       help="follow changes of the source's files (default: on)")
    serve.add_argument("--layout", metavar="FILE",
                       help="start from the positions in FILE (written by `graphwire layout "
                       "--out`) instead of the remembered layout")
    serve.add_argument("--redis", metavar="URL", help="join a cluster through this Redis "
                       "(redis://host:6379/0); see docs/deploy.md")
    serve.add_argument("--role", choices=("all", "simulation", "gateway"), default="all",
                       help="all: one process (default); simulation: run the layout and "
                       "publish it; gateway: serve clients from what a simulation publishes")
    serve.add_argument("--redis-namespace", default="graphwire",
                       help="prefix of this cluster's Redis keys (graphwire)")
    serve.add_argument("--lease-ttl", type=float, default=2.5, metavar="SECONDS",
                       help="simulation lease lifetime: a standby takes over this long after "
                       "the holder stops renewing (2.5)")
    serve.add_argument("--node-id", help="this process's name in the cluster (default: random)")
    serve.set_defaults(func=_serve)

    settings = sub.add_parser("settings", help="read or write a setting of a running server")
    settings_sub = settings.add_subparsers(dest="action", required=True)
    ref = settings_sub.add_parser("reference", help="print every setting as a Markdown table")
    ref.set_defaults(func=_settings_reference)
    for action in ("get", "set"):
        sp = settings_sub.add_parser(action, help=f"{action} one setting")
        sp.add_argument("path", help="dotted path, e.g. "
                        "visualisation.graphs.logseq.physics.damping")
        if action == "set":
            sp.add_argument("value", help="JSON value (a bare word is a string)")
        sp.add_argument("--url", default="http://127.0.0.1:8080", help="the server")
        sp.add_argument("--token", help="bearer token")
        sp.set_defaults(func=_settings_cli)

    watch = sub.add_parser("watch", help="watch a server's stream live (terminal or --json)")
    watch.add_argument("url", nargs="?", default="http://127.0.0.1:8080",
                       help="the server (default http://127.0.0.1:8080)")
    watch.add_argument("--json", action="store_true",
                       help="print one JSON object per line (events, stats each second, summary)")
    watch.add_argument("--duration", type=float, metavar="S",
                       help="stop after S seconds (default: until Ctrl-C)")
    watch.add_argument("--format", choices=("v1", "v2", "q"), default="q",
                       help="position format to subscribe to (default q)")
    watch.add_argument("--token", help="bearer token")
    watch.set_defaults(func=_watch)

    layout = sub.add_parser("layout", help="lay a graph out to rest and write the positions")
    layout.add_argument("source", help="a Markdown vault folder, .json, .graphml, .gexf or .csv")
    layout.add_argument("--out", required=True, help="where to write the positions file (JSON, "
                        "read by `graphwire serve --layout`)")
    layout.add_argument("--max-steps", type=_count, default=30_000,
                        help="stop after this many physics steps if not settled (default 30000)")
    layout.add_argument("--seed", type=int, default=1, help="seed of the start (default 1)")
    layout.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal)")
    layout.set_defaults(func=_layout)

    bench = sub.add_parser("bench", help="run a benchmark and print its table (or --json)")
    bench.add_argument("name", choices=BENCHES, help="which benchmark")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("options", nargs=argparse.REMAINDER,
                       help="options of the benchmark (graphwire bench layout --help)")
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
