"""Shared test helpers: paths to the golden vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "data" / "vectors"
SHARED_VECTORS = ROOT.parent / "shared" / "vectors"


def load_vector(name: str) -> Any:
    """One golden vector file, parsed."""
    return json.loads((VECTORS / name).read_text())


@pytest.fixture
def vectors() -> Path:
    """The folder of golden vectors kept in the repo."""
    return VECTORS
