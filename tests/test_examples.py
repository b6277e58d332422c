"""Every example runs, exits 0 and ends leak-free (they are documentation: they must not rot).

The tutorial's programs (``examples/tutorial/``) re-enact bugs: here they run ``--fixed`` (clean
in both modes); ``tests/test_tutorial.py`` holds their buggy runs to their reports.
``examples/reports/`` programs print reports on purpose: their content is checked below.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TUTORIAL = sorted(p for p in (ROOT / "examples" / "tutorial").glob("*.py") if p.name != "chapter.py")


def run(path: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("example", EXAMPLES + TUTORIAL, ids=[e.name for e in EXAMPLES + TUTORIAL])
def test_example_runs_clean(example: Path) -> None:
    out = run(example, *(["--fixed"] if example in TUTORIAL else []))
    assert "0 leaked blocks" in out
    assert "leaked blocks" not in out.replace("0 leaked blocks", "")
    assert "warning" not in out


def test_the_leak_report_example_names_its_sites() -> None:
    out = run(ROOT / "examples" / "reports" / "leaky_app.py")
    lines = out.splitlines()
    assert lines[0] == "used_size 0 -> 216 (+216 bytes, +4 blocks) at 2 sites"
    assert "4 leaked blocks, 216 bytes, in 1 live pools: app-history" in lines
    assert any(
        line.startswith("  examples/reports/leaky_app.py:")
        and line.endswith("references held by stats-timer x1")
        for line in lines
    )
