"""`graphwire bench layout` on tiny graphs: every engine's rows, the same measures, pictures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphwire.bench import layout
from graphwire.cli import main


def test_rows_for_graphwire_and_the_peers(tmp_path: Path) -> None:
    rows = layout.run(["--small", "--graphs", "communities", "grid", "--budgets", "0.3", "1",
                       "--impls", "graphwire", "igraph-fr", "fa2", "--plots", str(tmp_path)])
    by = {(r["graph"], r["impl"], r["budgetS"]): r for r in rows}
    for graph in ("communities", "grid"):
        for key in [("graphwire", 0.3), ("graphwire", 1.0), ("graphwire", "rest"),
                    ("igraph-fr", 0.3), ("igraph-fr", 1.0), ("igraph-fr", "end"),
                    ("fa2", 0.3), ("fa2", 1.0)]:
            row = by[(graph, *key)]
            assert 0.0 <= row["neighbourShare"] <= 1.0 and row["steps"] >= 1
            assert (row["communityRatio"] is None) == (graph == "grid")
        assert (tmp_path / f"layout-{graph}.png").stat().st_size > 10_000
    gw = by[("communities", "graphwire", 1.0)]
    assert gw["seconds"] <= 1.5  # the budget is kept (one step of slack)
    assert gw["communityRatio"] < 0.3  # 4 blocks of 100, apart within a second
    rest = by[("grid", "graphwire", "rest")]
    assert rest["settled"] is True


def test_the_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "layout", "--json", "--small", "--graphs", "ba10k",
                 "--budgets", "0.2", "--impls", "graphwire"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bench"] == "layout" and {r["budgetS"] for r in doc["rows"]} == {0.2, "rest"}


@pytest.mark.parametrize(("option", "said"), [
    (["--impls", "igraph"], "invalid choice: 'igraph'"),
    (["--graphs", "nope"], "invalid choice: 'nope'"),
    (["--budgets", "-1"], "must be a number above 0"),
])
def test_an_unknown_engine_graph_or_budget_is_refused_in_one_line(
        option: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "layout", "--small", *option])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
