"""The Redis keys and channels of one graphwire cluster, in one place.

Every name starts with the cluster's namespace (``--redis-namespace``, default ``graphwire``),
so several clusters can share one Redis. The names are part of the operator's contract
(``docs/deploy.md`` lists them for monitoring).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "graphwire"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names under one namespace."""

    namespace: str = DEFAULT_NAMESPACE

    def _k(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    @property
    def lease(self) -> str:
        """The simulation lease: ``"<token>:<holder>"`` with an expiry."""
        return self._k("lease")

    @property
    def fence(self) -> str:
        """The fencing counter: each lease taken gets the next token."""
        return self._k("fence")

    @property
    def epoch(self) -> str:
        """The cluster's epoch counter (§7): raised by every simulation that takes the lease."""
        return self._k("epoch")

    @property
    def stream(self) -> str:
        """The pub/sub channel of envelopes (frames, graph_changed, SSSP), in publish order."""
        return self._k("stream")

    @property
    def last_frames(self) -> str:
        """The last FRAMES envelope published: a joining gateway's first keyframes, and the
        positions a new lease holder resumes from."""
        return self._k("frames:last")

    @property
    def last_sssp(self) -> str:
        """The last SSSP envelope published (the current source, for joining gateways)."""
        return self._k("sssp:last")

    @property
    def graph(self) -> str:
        """The graph's nodes and edges as JSON (no positions), rewritten on topology changes."""
        return self._k("graph")

    @property
    def settings_log(self) -> str:
        """The stream of committed settings change sets, in revision order."""
        return self._k("settings:log")

    @property
    def settings_state(self) -> str:
        """Every setting's committed value (hash: path id → encoded value, plus revision)."""
        return self._k("settings:state")

    @property
    def settings_paths(self) -> str:
        """Path ids (hash: dotted path → id), so every process uses the writer's ids."""
        return self._k("settings:paths")

    @property
    def commands(self) -> str:
        """The stream of commands from gateways to the lease holder."""
        return self._k("commands")

    @property
    def formats(self) -> str:
        """The streams gateways use (JSON list, expiring): a new lease holder encodes them
        from its first frame."""
        return self._k("formats")

    def client(self, client_id: str) -> str:
        """A client id that may resume on any gateway (expires with the resume window)."""
        return self._k(f"client:{client_id}")

    def reply(self, gateway: str) -> str:
        """The channel where the lease holder answers one gateway's commands."""
        return self._k(f"reply:{gateway}")
