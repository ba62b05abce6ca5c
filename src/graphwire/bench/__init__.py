"""Benchmarks as commands: ``graphwire bench NAME [--json]`` (see docs/benchmarks.md).

Each bench prints one JSON object ``{"bench", "machine", "rows"}`` with ``--json``, or the same
rows as a table without it. Benches import lazily so ``graphwire --help`` stays fast.
"""
