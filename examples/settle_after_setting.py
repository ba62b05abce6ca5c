"""Change a physics setting and wait for the layout to settle again.

    python examples/settle_after_setting.py [URL] [--path P] [--value V] [--timeout S]

The write goes through the binary settings protocol (the Response carries the new revision);
every other client sees it as a Delta. The script then waits for a frame with the settled flag,
and puts the setting back as it was (settings are durable and shared: ``--keep`` leaves the
new value for everyone).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from graphwire.client import BlockingClient, ClientError, SettingsError

DEFAULT_PATH = "visualisation.graphs.logseq.physics.repel_k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8080")
    parser.add_argument("--path", default=DEFAULT_PATH)
    parser.add_argument("--value", type=json.loads, default=None,
                        help="JSON value (default: the current value × 1.5)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true",
                        help="leave the new value (default: put the old one back at the end)")
    args = parser.parse_args()
    with BlockingClient(args.url, format="q") as client:
        before = client.setting(args.path)
        value = args.value if args.value is not None else before * 1.5
        try:
            revision = client.set(args.path, value)
        except SettingsError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        print(f"{args.path}: {before} -> {client.setting(args.path)} (revision {revision})")
        start = time.monotonic()
        seq = client.seq
        client.wait_for("frame", lambda e: e.seq > seq and not e.settled, timeout=args.timeout)
        print("the layout moves")
        settled_at = client.wait_settled(timeout=args.timeout)
        print(f"settled at seq {settled_at} after {time.monotonic() - start:.1f} s")
        if not args.keep:
            client.set(args.path, before)
            print(f"{args.path}: put back to {before} (--keep leaves the new value)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ClientError as exc:  # no server there, a refused token: say so, no traceback
        sys.exit(f"{__file__}: {exc}")
