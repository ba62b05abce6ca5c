"""The generated parts of the docs stay equal to what generates them."""

from __future__ import annotations

from pathlib import Path

from graphwire.settings.schema import reference

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_settings_reference_is_the_schema() -> None:
    assert (DOCS / "settings.md").read_text() == reference(), (
        "docs/settings.md is stale: run `graphwire settings reference > docs/settings.md`")
