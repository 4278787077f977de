"""The installed package keeps its promises: typed (mypy --strict passes, as its ``py.typed``
tells type checkers to trust it) and free of syntax or library calls newer than Python 3.9."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import embedrt

PACKAGE = Path(embedrt.__file__).parent


def run(tool: str, *arguments: str) -> subprocess.CompletedProcess:
    """Runs a console script of the venv this test runs in."""
    script = Path(sys.executable).parent / tool
    return subprocess.run([str(script), *arguments], capture_output=True, text=True, check=False)


def test_the_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()
    checked = run("mypy", "--strict", "--no-incremental", "-p", "embedrt")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_package_runs_on_python_3_9():
    checked = run(
        "vermin", "--no-tips", "--eval-annotations", "-t=3.9-", "--violations", str(PACKAGE)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
