"""docs/protocol.md is the contract a client author reads: its worked example is the encoder's
bytes, and the README points at it and at nothing outside the repository."""

from __future__ import annotations

import re

import numpy as np

from graphwire.protocol.quantized import QDecoder, QStreamEncoder

from .conftest import ROOT

DOC = (ROOT / "docs" / "protocol.md").read_text()


def _example_blocks() -> list[bytes]:
    section = DOC[DOC.index("### 4.6 Worked example"):DOC.index("### 4.7")]
    blocks = []
    for block in re.findall(r"```\n(.*?)```", section, re.S):
        hex_text = ""
        for line in block.splitlines():
            head = re.split(r"\s{3,}", line.strip())[0].replace("|", " ")
            if head and re.fullmatch(r"[0-9a-f ]+", head):
                hex_text += head.replace(" ", "")
        blocks.append(bytes.fromhex(hex_text))
    return blocks


def test_the_worked_example_is_what_the_encoder_writes_and_decodes() -> None:
    keyframe, delta = _example_blocks()
    ids = np.array([0, 1, 2, 5], np.uint32)
    pos = np.array([[0, 0, 0], [10, -5, 2], [65.535, 5, -2], [1, 1, 1]], np.float32)
    enc = QStreamEncoder()
    assert enc.encode(100, ids, pos, epoch=0x00010002).frame == keyframe
    moved = pos.copy()
    moved[1] += [0.003, 0, -0.002]
    moved[3] += [0, 0.01, 0]
    assert enc.encode(101, ids, moved, epoch=0x00010002).frame == delta
    dec = QDecoder()
    dec.apply(keyframe)
    assert dec.q[:, 2].tolist() == [32768, 65535, 0, 49151]  # the z row as documented
    dec.apply(delta)
    assert np.all(np.abs(dec.positions() - moved) <= dec.grid.step / 2 + 1e-12)  # type: ignore[union-attr]


def test_the_readme_links_the_contract_and_nothing_outside_the_repo() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/protocol.md)" in readme
    for target in re.findall(r"\]\(([^)]+)\)", readme):
        assert not target.startswith(("/", "..", "http")), target
        assert (ROOT / target).exists(), target
