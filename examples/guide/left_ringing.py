"""A test that leaves a call ringing, and what the leak gate says about it.

Run: ``python examples/guide/left_ringing.py``: it runs the test below in a pytest process of its
own (as a user's suite would) and prints the leak gate's report.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

# --8<-- [start:test]
TEST = """
def test_left_ringing(ua_factory, call_driver):
    alice, bob = ua_factory(), ua_factory()
    alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=call_driver.now)
    call_driver.run(1.0)  # Bob is never told to answer
"""
# --8<-- [end:test]


def main() -> int:
    """Run the test, print the gate's report (from its first line to the ladder)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_left_ringing.py").write_text(TEST)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_left_ringing.py"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    out = done.stdout
    start = out.index("invsess leak gate")
    sections = re.search(r"\n-{5,} ", out[start:])  # the captured-output sections pytest adds after it
    end = start + sections.start() if sections else len(out)
    print(out[start:end].rstrip())
    return 0 if done.returncode == 1 else 1  # the gate must have failed the test


if __name__ == "__main__":
    sys.exit(main())
