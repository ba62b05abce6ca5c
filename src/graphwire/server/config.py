"""What ``graphwire serve`` is told on its command line (the settings live in the schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from graphwire.cluster.keys import DEFAULT_NAMESPACE
from graphwire.cluster.lease import DEFAULT_TTL
from graphwire.settings.store import LOG_REVISIONS

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""The browser client shipped with the package."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def default_db() -> Path:
    """Where the settings database lives by default: the user's data directory."""
    return Path(platformdirs.user_data_dir("graphwire")) / "settings.db"


@dataclass(slots=True)
class ServerConfig:
    """Everything ``graphwire serve`` takes on its command line."""

    source: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: str | None = None
    token: str | None = None
    admin_token: str | None = None
    allow_origins: list[str] = field(default_factory=list)  # added to the server's own origin
    server_names: list[str] = field(default_factory=list)  # host names it is reached by
    trusted_proxy: bool = False
    physics_hz: float | None = None
    seed: int = 1
    static_dir: Path | None = WEB_DIR
    overrides: dict[str, Any] = field(default_factory=dict)  # settings applied at start
    max_body: int = 16 * 1024 * 1024
    settings_log: int = LOG_REVISIONS  # revisions a Sync can catch up from
    watch: bool = True  # follow changes of the source's files
    layout: str | None = None  # a positions file to start from (else the remembered layout)
    # scale-out (docs/deploy.md): without redis, role "all" is the single process
    redis: str | None = None
    role: str = "all"  # all | simulation | gateway
    redis_namespace: str = DEFAULT_NAMESPACE
    lease_ttl: float = DEFAULT_TTL
    node_id: str | None = None  # this process's name in the cluster (default: random)
