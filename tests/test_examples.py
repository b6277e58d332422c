"""Every example runs, exits 0 and ends leak-free (they are documentation: they must not rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(
    p for p in (Path(__file__).resolve().parent.parent / "examples").glob("*.py") if p.name != "__init__.py"
)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_runs_clean(example: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 leaked blocks" in done.stdout + done.stderr
    assert "leaked blocks" not in (done.stdout + done.stderr).replace("0 leaked blocks", "")
