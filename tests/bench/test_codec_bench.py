"""The codec bench runs and reports what its rows claim (bytes, not speed: speed is the bench's)."""

from __future__ import annotations

import io
import json

from graphwire.bench import codec, report
from graphwire.cli import main


def test_codec_rows_have_the_named_figures() -> None:
    rows = codec.rows_for(3000, repeat=2)
    formats = [r["format"] for r in rows]
    assert formats == ["v1", "v2", "q-key", "q-delta", "json"]
    by = {r["format"]: r for r in rows}
    assert by["v1"]["bytesPerNode"] == round((34 * 3000 + 8) / 3000, 3)
    assert by["v2"]["bytesPerNode"] == round((36 * 3000 + 8) / 3000, 3)
    assert by["q-key"]["bytesPerNode"] <= 6.5
    assert by["q-delta"]["bytesPerNode"] < by["q-key"]["bytesPerNode"]
    assert "motion" in by["q-delta"]
    assert by["json"]["bytesPerNode"] > 100
    for r in rows:
        assert r["encodeMs"] > 0 and r["decodeMs"] > 0


def test_v1_row_only_where_ids_fit() -> None:
    assert all(r["format"] != "v1" for r in codec.rows_for(20_000, repeat=1))


def test_emit_prints_one_json_object() -> None:
    out = io.StringIO()
    report.emit("codec", [{"nodes": 1, "format": "v2", "bytesPerNode": 44.0}], as_json=True,
                out=out)
    doc = json.loads(out.getvalue())
    assert doc["bench"] == "codec" and doc["rows"][0]["format"] == "v2"
    assert doc["machine"]["cores"] >= 1
    table = report.format_table(doc["rows"])
    assert table.splitlines()[0] == "| nodes | format | bytesPerNode |"


def test_cli_without_command_prints_help(capsys: object) -> None:
    assert main([]) == 0
