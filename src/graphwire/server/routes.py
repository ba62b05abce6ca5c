"""REST routes of docs/protocol.md §1 (graph, settings, metrics, health) and the static client.

Every handler is a module-level function that reads the parts it needs from the application
(``request.app[KEY]``, see ``server.keys``). Errors are raised, typed, and answered by the error
middleware from the one error table.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from graphwire.graph.model import EdgeSpec, GraphError
from graphwire.graph.sources import SourceError
from graphwire.protocol.errors import ErrorCode
from graphwire.settings import SettingsService

from .errors import ApiError
from .graph_service import GraphService
from .http import ADMIN, json_response, read_json
from .keys import (
    CLUSTER,
    CONFIG,
    GRAPH_SERVICE,
    HUB,
    METRICS,
    RUNNER,
    SETTINGS,
    SETTINGS_WRITES,
    SOURCE,
    STREAM_STATE,
    WEBSOCKETS,
)
from .metrics import cluster_prometheus

log = logging.getLogger("graphwire.routes")

MAX_POSITIONS = 100_000
MAX_TOPOLOGY_ITEMS = 100_000


def _list(body: Any, key: str, limit: int) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise ApiError(ErrorCode.MALFORMED_FRAME, "the body must be a JSON object")
    items = body.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError(ErrorCode.MALFORMED_FRAME, f"'{key}' must be a list of objects")
    if len(items) > limit:
        raise ApiError(ErrorCode.TOO_LARGE, f"at most {limit} {key} in one request")
    return items


# -- the graph ---------------------------------------------------------------------------------
async def graph_data(request: web.Request) -> web.Response:
    """``GET /api/graph/data`` (``?clientId=`` sends that client a keyframe, §7)."""
    service = request.app[GRAPH_SERVICE]
    body = await service.data_json(request.app[RUNNER].request_snapshot,
                                   request.app[SETTINGS].revision)
    client_id = request.query.get("clientId")
    if client_id:
        request.app[HUB].request_keyframe(client_id)
    return json_response(body)


async def graph_state(request: web.Request) -> web.Response:
    """``GET /api/graph/state`` (``?positions=1`` adds the exact positions)."""
    service = request.app[GRAPH_SERVICE]
    snap = await service.current_snapshot(request.app[RUNNER].request_snapshot)
    positions = request.query.get("positions") in ("1", "true")
    return json_response(service.state_json(snap, request.app[SETTINGS].revision, positions))


async def post_positions(request: web.Request) -> web.Response:
    """``POST /api/graph/positions``: as kind 0x20."""
    body = await read_json(request)
    items = _list(body, "positions", MAX_POSITIONS)
    pin, release = body.get("pin", False), body.get("release", False)
    if not isinstance(pin, bool) or not isinstance(release, bool) or (pin and release):
        raise ApiError(ErrorCode.MALFORMED_FRAME,
                       "'pin' and 'release' are booleans, not both true")
    ids, pos = [], []
    for item in items:
        nid = item.get("id")
        if isinstance(nid, bool) or not isinstance(nid, int):
            raise ApiError(ErrorCode.MALFORMED_FRAME, "every position needs an integer 'id'")
        coords = [item.get(a) for a in ("x", "y", "z")]
        if not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coords):
            raise ApiError(ErrorCode.MALFORMED_FRAME,
                           "every position needs numbers 'x', 'y' and 'z'")
        ids.append(nid)
        pos.append([float(c) if math.isfinite(float(c)) else math.nan  # type: ignore[arg-type]
                    for c in coords])
    result = await request.app[GRAPH_SERVICE].positions(np.asarray(ids, np.int64).reshape(-1),
                                                np.asarray(pos, np.float64).reshape(-1, 3),
                                                pin=pin, release=release)
    if result.accepted:
        request.app[RUNNER].interaction()
    return json_response({"accepted": result.accepted,
                          "rejected": [{"id": r.id, "reason": r.reason}
                                       for r in result.rejected]})


async def add_nodes(request: web.Request) -> web.Response:
    """``POST /api/graph/nodes``: nodes and edges in one topology change."""
    service = request.app[GRAPH_SERVICE]
    body = await read_json(request)
    nodes = [GraphService.node_spec(i) for i in _list(body, "nodes", MAX_TOPOLOGY_ITEMS)]
    edges = [GraphService.edge_spec(i) for i in _list(body, "edges", MAX_TOPOLOGY_ITEMS)]
    ids = await service.add(nodes, edges)
    return json_response({"nodes": [{"id": i, "key": n.key}
                                    for i, n in zip(ids, nodes, strict=True)]})


async def remove_node(request: web.Request) -> web.Response:
    """``DELETE /api/graph/nodes/{id}``."""
    text = request.match_info["id"]
    if not text.isdigit():
        raise ApiError(ErrorCode.MALFORMED_FRAME, "a node id is a non-negative integer")
    nid = int(text)
    await request.app[GRAPH_SERVICE].remove_node(nid)
    return json_response({"removed": nid})


async def _edge_specs(request: web.Request) -> list[EdgeSpec]:
    body = await read_json(request)
    return [GraphService.edge_spec(i) for i in _list(body, "edges", MAX_TOPOLOGY_ITEMS)]


async def add_edges(request: web.Request) -> web.Response:
    """``POST /api/graph/edges``."""
    service = request.app[GRAPH_SERVICE]
    written = await service.add_edges(await _edge_specs(request))
    mirror = service.graph
    return json_response({"edges": [mirror.edge_json(e) for e in written]})  # type: ignore[arg-type]


async def remove_edges(request: web.Request) -> web.Response:
    """``DELETE /api/graph/edges``."""
    gone = await request.app[GRAPH_SERVICE].remove_edges(await _edge_specs(request))
    return json_response({"removed": [[a, b] for a, b in gone]})


async def set_sssp(request: web.Request) -> web.Response:
    """``POST /api/graph/sssp``: as ``set_sssp_source``."""
    body = await read_json(request)
    if not isinstance(body, dict) or "source" not in body:
        raise ApiError(ErrorCode.MALFORMED_FRAME, "the body needs 'source' (an id or null)")
    source = body["source"]
    if source is not None and (isinstance(source, bool) or not isinstance(source, int)):
        raise ApiError(ErrorCode.MALFORMED_FRAME, "'source' is a node id or null")
    service = request.app[GRAPH_SERVICE]
    result = await service.set_sssp_source(source)
    return json_response({"source": result.source, "seq": service.sssp_seq})


# -- settings ----------------------------------------------------------------------------------
async def graph_reload(request: web.Request) -> web.Response:
    """``POST /api/graph/reload``: read the whole source again as a new epoch (admin)."""
    if request.app[CONFIG].admin_token is not None and not request[ADMIN]:
        raise ApiError(ErrorCode.FORBIDDEN, "reloading the source needs the admin token")
    try:
        body = await request.app[SOURCE].reload()
    except (SourceError, GraphError) as exc:
        raise ApiError(ErrorCode.INVALID_VALUE, f"{exc} (the graph was left as it was)") from None
    return json_response(body)


async def get_settings(request: web.Request) -> web.Response:
    """``GET /api/settings`` (``?schema=1`` adds the schema)."""
    settings = request.app[SETTINGS]
    revision, digest, _ = settings.snapshot()
    body: dict[str, Any] = {"revision": revision, "schemaVersion": settings.schema_version,
                            "digest": digest.hex(), "settings": settings.nested()}
    if request.query.get("schema") in ("1", "true"):
        body["schema"] = schema_json(settings)
    return json_response(body)


async def get_setting(request: web.Request) -> web.Response:
    """``GET /api/settings/{path}``."""
    settings = request.app[SETTINGS]
    path = request.match_info["path"]
    return json_response({"path": path, "value": settings.value(path),
                          "revision": settings.revision})


async def put_setting(request: web.Request) -> web.Response:
    """``PUT /api/settings/{path}``."""
    path = request.match_info["path"]
    body = await read_json(request)
    if not isinstance(body, dict) or "value" not in body:
        raise ApiError(ErrorCode.MALFORMED_FRAME, 'the body is {"value": ...}')
    revision, value, previous = await request.app[SETTINGS_WRITES].put(
        path, body["value"], admin=request[ADMIN])
    return json_response({"path": path, "value": value, "previousValue": previous,
                          "revision": revision})


async def patch_settings(request: web.Request) -> web.Response:
    """``PATCH /api/settings``: one atomic change."""
    settings = request.app[SETTINGS]
    body = await read_json(request)
    if not isinstance(body, dict) or not body:
        raise ApiError(ErrorCode.MALFORMED_FRAME, 'the body is {"path": value, ...}')
    revision, written = await request.app[SETTINGS_WRITES].apply_paths(body,
                                                                       admin=request[ADMIN])
    return json_response({"revision": revision,
                          "changed": [settings.path_of(pid) for pid, _ in written]})


def schema_json(settings: SettingsService) -> list[dict[str, Any]]:
    """Every setting as ``{path, id, type, default, min, max, choices, admin, help}``, in schema
    order: what a client needs to build its settings panel (``GET /api/settings?schema=1``)."""
    return [{"path": s.path, "id": settings.path_id(s.path), "type": s.tag.name.lower(),
             "default": s.default, "min": s.minimum, "max": s.maximum,
             "choices": list(s.choices) if s.choices is not None else None,
             "admin": s.admin, "help": s.help}
            for s in settings.schema]


# -- metrics, health, the WebSocket ----------------------------------------------------------------
async def metrics_json(request: web.Request) -> web.Response:
    """``GET /api/metrics`` (``?snapshots=1`` adds when each recent snapshot was published)."""
    metrics = request.app[METRICS]
    out = metrics.as_json()
    out.update(request.app[STREAM_STATE]())
    if request.query.get("snapshots") == "1":
        out["snapshotTimes"] = [list(pair) for pair in list(metrics.publish_times)]
    return json_response(out)


async def metrics_text(request: web.Request) -> web.Response:
    """``GET /metrics``: the same counters for Prometheus."""
    body = request.app[METRICS].prometheus()
    if CLUSTER in request.app:
        body += cluster_prometheus(request.app[CLUSTER]())
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: ok while the simulation thread runs."""
    if request.app[RUNNER].error is not None:
        raise ApiError(ErrorCode.INTERNAL, "the simulation thread stopped")
    if CLUSTER not in request.app:
        return json_response({"status": "ok"})
    # scale-out: Redis unreachable is reported (503, so a load balancer sends new clients
    # elsewhere) while the connected clients stay connected
    cluster = request.app[CLUSTER]()
    up = bool(cluster["redis"]["up"])
    return json_response({"status": "ok" if up else "redis_unreachable", **cluster},
                         status=200 if up else 503)


async def websocket(request: web.Request) -> web.StreamResponse:
    """``GET /ws``: the stream and the control channel."""
    return await request.app[WEBSOCKETS].handle(request)


def add_routes(app: web.Application, static: Path | None) -> None:
    """Register every route (and the browser client from ``static``)."""
    r = app.router
    r.add_get("/ws", websocket)
    r.add_get("/api/graph/data", graph_data)
    r.add_get("/api/graph/state", graph_state)
    r.add_post("/api/graph/positions", post_positions)
    r.add_post("/api/graph/nodes", add_nodes)
    r.add_delete("/api/graph/nodes/{id}", remove_node)
    r.add_post("/api/graph/edges", add_edges)
    r.add_delete("/api/graph/edges", remove_edges)
    r.add_post("/api/graph/sssp", set_sssp)
    r.add_post("/api/graph/reload", graph_reload)
    r.add_get("/api/settings", get_settings)
    r.add_patch("/api/settings", patch_settings)
    r.add_get("/api/settings/{path}", get_setting)
    r.add_put("/api/settings/{path}", put_setting)
    r.add_get("/api/metrics", metrics_json)
    r.add_get("/metrics", metrics_text)
    r.add_get("/healthz", healthz)
    if static is not None:
        add_client_routes(app, static)


def add_client_routes(app: web.Application, static: Path) -> None:
    """The browser client: ``/`` (index.html), its ES modules under ``/app/`` and three.js,
    as installed by ``npm ci`` in the client's folder, under ``/vendor/three/`` (the import map
    of index.html names that path). Nothing else of the folder (package files, tests, other
    installed packages) is served."""
    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    r = app.router
    r.add_get("/", index)
    if (static / "app").is_dir():
        r.add_static("/app/", static / "app", show_index=False)
    three = static / "node_modules" / "three"
    if three.is_dir():
        for part in ("build", "examples/jsm"):
            r.add_static(f"/vendor/three/{part}/", three / part, show_index=False)
    else:
        log.warning("three.js is not installed in %s (run `make setup`): the 3D client "
                    "cannot start", static / "node_modules")
