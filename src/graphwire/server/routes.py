"""REST routes of PROTOCOL.md §1 (graph, settings, metrics, health) and the static client."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from graphwire.graph.model import EdgeSpec, GraphError
from graphwire.graph.sources import SourceError
from graphwire.protocol.errors import ErrorCode
from graphwire.settings import SettingsError, SettingsService

from .http import ADMIN, ApiError, json_response, read_json

if TYPE_CHECKING:
    from .app import GraphwireServer

log = logging.getLogger("graphwire.routes")

MAX_POSITIONS = 100_000
MAX_TOPOLOGY_ITEMS = 100_000

_SETTINGS_ERRORS = {1: (ErrorCode.UNKNOWN_PATH, 404), 2: (ErrorCode.INVALID_VALUE, 422),
                    3: (ErrorCode.INVALID_VALUE, 422), 4: (ErrorCode.MALFORMED_FRAME, 400),
                    5: (ErrorCode.RATE_LIMITED, 429), 6: (ErrorCode.FORBIDDEN, 403),
                    7: (ErrorCode.INTERNAL, 500)}


def _settings_error(exc: SettingsError) -> ApiError:
    code, status = _SETTINGS_ERRORS[int(exc.code)]
    return ApiError(code, exc.message, status=status)


def _list(body: Any, key: str, limit: int) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise ApiError(ErrorCode.MALFORMED_FRAME, "the body must be a JSON object")
    items = body.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError(ErrorCode.MALFORMED_FRAME, f"'{key}' must be a list of objects")
    if len(items) > limit:
        raise ApiError(ErrorCode.TOO_LARGE, f"at most {limit} {key} in one request")
    return items


def _graph_error(exc: GraphError) -> ApiError:
    message = str(exc)
    code = ErrorCode.UNKNOWN_NODE if "unknown node" in message else ErrorCode.INVALID_VALUE
    return ApiError(code, message)


def add_routes(app: web.Application, server: GraphwireServer) -> None:
    """Register every route on the app."""
    graph = server.graph
    settings = server.settings

    async def data(request: web.Request) -> web.Response:
        snap = await graph.current_snapshot(server.runner.request_snapshot)
        body = await graph.data_json(snap, settings.revision)
        client_id = request.query.get("clientId")
        if client_id:
            server.hub.request_keyframe(client_id)
        return json_response(body)

    async def state(request: web.Request) -> web.Response:
        snap = await graph.current_snapshot(server.runner.request_snapshot)
        positions = request.query.get("positions") in ("1", "true")
        return json_response(graph.state_json(snap, settings.revision, positions))

    async def positions(request: web.Request) -> web.Response:
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
        result = await graph.positions(np.asarray(ids, np.int64).reshape(-1),
                                       np.asarray(pos, np.float64).reshape(-1, 3),
                                       pin=pin, release=release)
        if result.accepted:
            server.runner.interaction()
        return json_response({"accepted": result.accepted,
                              "rejected": [{"id": r.id, "reason": r.reason}
                                           for r in result.rejected]})

    async def add_nodes(request: web.Request) -> web.Response:
        body = await read_json(request)
        try:
            nodes = [graph.node_spec(i) for i in _list(body, "nodes", MAX_TOPOLOGY_ITEMS)]
            edges = [graph.edge_spec(i) for i in _list(body, "edges", MAX_TOPOLOGY_ITEMS)]
            ids = await graph.add(nodes, edges)
        except GraphError as exc:
            raise _graph_error(exc) from None
        return json_response({"nodes": [{"id": i, "key": n.key}
                                        for i, n in zip(ids, nodes, strict=True)]})

    async def remove_node(request: web.Request) -> web.Response:
        text = request.match_info["id"]
        if not text.isdigit():
            raise ApiError(ErrorCode.MALFORMED_FRAME, "a node id is a non-negative integer")
        nid = int(text)
        try:
            await graph.remove_node(nid)
        except GraphError as exc:
            raise _graph_error(exc) from None
        return json_response({"removed": nid})

    async def edge_specs(request: web.Request) -> list[EdgeSpec]:
        body = await read_json(request)
        try:
            return [graph.edge_spec(i) for i in _list(body, "edges", MAX_TOPOLOGY_ITEMS)]
        except GraphError as exc:
            raise _graph_error(exc) from None

    async def add_edges(request: web.Request) -> web.Response:
        edges = await edge_specs(request)
        try:
            written = await graph.add_edges(edges)
        except GraphError as exc:
            raise _graph_error(exc) from None
        return json_response({"edges": [graph.graph.edge_json(e) for e in written]})

    async def remove_edges(request: web.Request) -> web.Response:
        edges = await edge_specs(request)
        try:
            gone = await graph.remove_edges(edges)
        except GraphError as exc:
            raise _graph_error(exc) from None
        return json_response({"removed": [[a, b] for a, b in gone]})

    async def sssp(request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or "source" not in body:
            raise ApiError(ErrorCode.MALFORMED_FRAME, "the body needs 'source' (an id or null)")
        source = body["source"]
        if source is not None and (isinstance(source, bool) or not isinstance(source, int)):
            raise ApiError(ErrorCode.MALFORMED_FRAME, "'source' is a node id or null")
        try:
            result = await graph.set_sssp_source(source)
        except GraphError as exc:
            raise _graph_error(exc) from None
        return json_response({"source": result.source, "seq": graph.sssp_seq})

    async def reload(request: web.Request) -> web.Response:
        if server.config.admin_token is not None and not request[ADMIN]:
            raise ApiError(ErrorCode.FORBIDDEN, "reloading the source needs the admin token")
        try:
            body = await server.reload_source()
        except (SourceError, GraphError) as exc:
            raise ApiError(ErrorCode.INVALID_VALUE,
                           f"{exc} (the graph was left as it was)") from None
        return json_response(body)

    async def get_settings(request: web.Request) -> web.Response:
        revision, digest, _ = settings.snapshot()
        body: dict[str, Any] = {"revision": revision, "schemaVersion": settings.schema_version,
                                "digest": digest.hex(), "settings": settings.nested()}
        if request.query.get("schema") in ("1", "true"):
            body["schema"] = schema_json(settings)
        return json_response(body)

    async def get_setting(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        try:
            value = settings.value(path)
        except SettingsError as exc:
            raise _settings_error(exc) from None
        return json_response({"path": path, "value": value, "revision": settings.revision})

    async def put_setting(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await read_json(request)
        if not isinstance(body, dict) or "value" not in body:
            raise ApiError(ErrorCode.MALFORMED_FRAME, 'the body is {"value": ...}')
        try:
            previous = settings.value(path)
            revision, _ = settings.apply_paths({path: body["value"]}, admin=request[ADMIN])
            value = settings.value(path)
        except SettingsError as exc:
            raise _settings_error(exc) from None
        return json_response({"path": path, "value": value, "previousValue": previous,
                              "revision": revision})

    async def patch_settings(request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or not body:
            raise ApiError(ErrorCode.MALFORMED_FRAME, 'the body is {"path": value, ...}')
        try:
            revision, written = settings.apply_paths(body, admin=request[ADMIN])
        except SettingsError as exc:
            raise _settings_error(exc) from None
        return json_response({"revision": revision,
                              "changed": [settings.path_of(pid) for pid, _ in written]})

    async def metrics_json(request: web.Request) -> web.Response:
        return json_response(server.metrics_json(request.query.get("snapshots") == "1"))

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(text=server.metrics.prometheus(),
                            content_type="text/plain", charset="utf-8")

    async def healthz(request: web.Request) -> web.Response:
        if server.runner.error is not None:
            raise ApiError(ErrorCode.INTERNAL, "the simulation thread stopped")
        return json_response({"status": "ok"})

    r = app.router
    r.add_get("/ws", server.websocket)
    r.add_get("/api/graph/data", data)
    r.add_get("/api/graph/state", state)
    r.add_post("/api/graph/positions", positions)
    r.add_post("/api/graph/nodes", add_nodes)
    r.add_delete("/api/graph/nodes/{id}", remove_node)
    r.add_post("/api/graph/edges", add_edges)
    r.add_delete("/api/graph/edges", remove_edges)
    r.add_post("/api/graph/sssp", sssp)
    r.add_post("/api/graph/reload", reload)
    r.add_get("/api/settings", get_settings)
    r.add_patch("/api/settings", patch_settings)
    r.add_get("/api/settings/{path}", get_setting)
    r.add_put("/api/settings/{path}", put_setting)
    r.add_get("/api/metrics", metrics_json)
    r.add_get("/metrics", metrics_text)
    r.add_get("/healthz", healthz)
    static = server.config.static_dir
    if static is not None:
        add_client_routes(app, static)


def schema_json(settings: SettingsService) -> list[dict[str, Any]]:
    """Every setting as ``{path, id, type, default, min, max, choices, admin, help}``, in schema
    order: what a client needs to build its settings panel (``GET /api/settings?schema=1``)."""
    out = []
    for s in settings.schema:
        out.append({"path": s.path, "id": settings.path_id(s.path), "type": s.tag.name.lower(),
                    "default": s.default, "min": s.minimum, "max": s.maximum,
                    "choices": list(s.choices) if s.choices is not None else None,
                    "admin": s.admin, "help": s.help})
    return out


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
