"""What the server serves for the browser client; the schema its settings panel is built from."""

from __future__ import annotations

import pytest

from graphwire.server.config import WEB_DIR
from graphwire.server.keys import SETTINGS

from .conftest import Served

needs_three = pytest.mark.skipif(not (WEB_DIR / "node_modules" / "three").is_dir(),
                                 reason="needs the client's npm packages (make setup)")


@needs_three
async def test_the_client_and_three_are_served_and_nothing_else(serve) -> None:
    served: Served = await serve()
    for path, kind in (("/", "text/html"), ("/app/main.js", "javascript"),
                       ("/app/decode_worker.js", "javascript"),
                       ("/vendor/three/build/three.module.js", "javascript"),
                       ("/vendor/three/build/three.core.js", "javascript"),
                       ("/vendor/three/examples/jsm/controls/OrbitControls.js", "javascript")):
        async with served.http.get(served.base + path) as resp:
            assert resp.status == 200, path
            assert kind in resp.headers["Content-Type"], (path, resp.headers["Content-Type"])
    for path in ("/package.json", "/package-lock.json", "/node_modules/three/package.json",
                 "/test/vectors.test.js", "/eslint.config.js", "/vendor/three/package.json"):
        async with served.http.get(served.base + path) as resp:
            assert resp.status == 404, path


async def test_settings_schema_names_every_path_with_its_range(serve) -> None:
    served: Served = await serve()
    doc = await served.get("/api/settings?schema=1")
    plain = await served.get("/api/settings")
    assert "schema" not in plain
    rows = {r["path"]: r for r in doc["schema"]}
    schema = served.server[SETTINGS].schema
    assert list(rows) == [s.path for s in schema]
    path = "visualisation.graphs.logseq.physics.damping"
    setting = schema.get(path)
    assert setting is not None
    assert rows[path] == {"path": path, "id": 1, "type": "f64", "default": setting.default,
                          "min": setting.minimum, "max": setting.maximum, "choices": None,
                          "admin": False, "help": setting.help}
    assert rows["visualisation.graphs.logseq.physics.iterations"]["type"] == "i64"
    assert rows["visualisation.graphs.logseq.physics.enabled"]["type"] == "bool"
    assert rows["system.websocket.maxUpdateRate"]["admin"] is True
    ids = [r["id"] for r in doc["schema"]]
    assert len(set(ids)) == len(ids)
