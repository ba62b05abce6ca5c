"""The package as a user gets it: a wheel installed in a fresh venv, run outside the source
tree; and the metadata a user on a newer Python reads."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import venv
from pathlib import Path

import pytest

import graphwire
from graphwire.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"graphwire {graphwire.__version__}"


def test_requires_python_has_no_upper_cap() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = meta["requires-python"]
    assert spec.startswith(">=3.11") and "<" not in spec
    assert meta["version"] == graphwire.__version__


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a wheel build, then numba compiles the installed copy's kernels
def test_a_built_wheel_serves_outside_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--quiet", "-w", str(dist), str(ROOT)], check=True, timeout=300)
    wheel = next(dist.glob("graphwire-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    # The dependencies are borrowed from this interpreter's site-packages (a path appended
    # after the venv's own, so graphwire itself comes from the wheel, not the source tree).
    purelib = Path(subprocess.run(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "borrowed_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(bin_dir / "python"), "-c",
                            "import graphwire, sys; print(graphwire.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(env_dir)  # not the source tree
    version = subprocess.run([str(bin_dir / "graphwire"), "--version"], cwd=work, env=env,
                             check=True, capture_output=True, text=True)
    assert version.stdout.strip() == f"graphwire {graphwire.__version__}"
    proc = subprocess.Popen([str(bin_dir / "graphwire"), "serve", "--port", "0",
                             "--db", str(work / "settings.db")], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the server listens
        found = re.search(r"on (http://\S+)", line)
        assert found, line
        url = found.group(1)
        with urllib.request.urlopen(url + "healthz", timeout=30) as resp:
            assert json.loads(resp.read()) == {"status": "ok"}
        with urllib.request.urlopen(url + "api/graph/state", timeout=30) as resp:
            assert json.loads(resp.read())["nodesCount"] > 0  # the bundled demo graph
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert b"<html" in resp.read().lower()  # the client is in the wheel
        for path in ("app/main.js", "vendor/three/build/three.module.js",
                     "vendor/three/build/three.core.js",
                     "vendor/three/examples/jsm/controls/OrbitControls.js"):
            with urllib.request.urlopen(url + path, timeout=30) as resp:
                assert resp.status == 200 and resp.read(), path  # and three.js with it
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("script", sorted((Path(__file__).parents[1] / "scripts").glob("*.py")),
                         ids=lambda p: p.name)
def test_the_repository_scripts_import(script: Path) -> None:
    # `make screenshot` broke once on a renamed import and nothing noticed: each script's
    # imports and definitions run here (its main() only under __main__)
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None))
