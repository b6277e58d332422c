"""Tutorial, chapter 2 (docs/tutorial/kamailio-sanity-leak.md): the page shows the program's real
output, every run, and names the lines the program really has."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = "examples/tutorial/kamailio_sanity_leak.py"
GATE_TEST = "examples/tutorial/test_kamailio_sanity_leak.py"
PAGE = ROOT / "docs" / "tutorial" / "kamailio-sanity-leak.md"


def run(*args: str, debug: bool = False) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVSESS_")}
    if debug:
        env["INVSESS_MALLOC_DEBUG"] = "1"
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode, done.stdout + done.stderr


def blocks(kind: str) -> list[str]:
    return [
        m.group(1)
        for m in re.finditer(rf"^```{kind}\n(.*?)^```$", PAGE.read_text(), re.MULTILINE | re.DOTALL)
    ]


def line_of(text: str) -> int:
    lines = [n for n, line in enumerate((ROOT / PROGRAM).read_text().splitlines(), 1) if text in line]
    assert len(lines) == 1, f"{text!r} is on lines {lines}"
    return lines[0]


def test_the_page_shows_the_programs_real_output() -> None:
    gate, leaky, fixed, first_fix = blocks("text")
    for debug in (False, True):  # a leak is no touch of freed memory: the same output either way
        assert run(PROGRAM, debug=debug) == (0, leaky)
        assert run(PROGRAM, "--fixed", debug=debug) == (0, fixed)
    assert run(PROGRAM, "--first-fix") == (0, fixed)  # it "works" without MALLOC_DEBUG
    assert run(PROGRAM, "--first-fix", debug=True) == (1, first_fix)

    status, output = run("-m", "pytest", GATE_TEST, "-p", "no:cacheprovider")
    assert status == 1
    assert "2 passed, 1 error" in output  # the leaky test body passes; its teardown does not
    assert "ERROR at teardown of test_three_bad_subscribes_are_refused[leaky]" in output
    start = output.index("invsess leak gate: memory still held after the test")
    end = output.index("\n---", start)
    assert output[start:end] + "\n" == gate


def test_the_page_shows_the_programs_code_and_lines() -> None:
    source = (ROOT / PROGRAM).read_text()
    section = source.split("# --8<-- [start:check]\n", 1)[1].split("# --8<-- [end:check]", 1)[0]
    (code,) = blocks("python")
    assert code.strip() == section.strip()
    page = PAGE.read_text()
    alloc = line_of("head = pool.alloc(StrList, tag, head)")
    assert f"line {alloc}" in page and f"kamailio_sanity_leak.py:{alloc} in parse_proxy_require" in page
    read = line_of('return 420, "Bad Proxy Require Extension", node.text')
    assert f"at line {read}, freed one line earlier (line {read - 1})" in page
    assert "pool.release" in source.splitlines()[read - 2]
    assert "https://github.com/kamailio/kamailio/issues/1990" in page
    for image in ("soak-leak.png", "soak-leak.svg", "soak-flat.png", "soak-flat.svg"):
        assert f"../img/{image}" in page
        assert (ROOT / "docs" / "img" / image).stat().st_size > 1000
