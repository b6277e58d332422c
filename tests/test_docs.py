"""The documentation site: every page in the nav exists, every generated block is generated
from the real code (reports, state diagrams, ladders), and the tutorial pages show what their
programs really print. (``mkdocs build --strict`` itself runs in .ci/run after the tests.)"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHAPTERS = {
    "asterisk-release-order.md": "asterisk_release_order.py",
    "pjsip-2007-timer.md": "pjsip_2007_timer_after_release.py",
    "pjsip-4107-bye.md": "pjsip_4107_bye_after_disconnect.py",
    "pjsip-5241-destroy.md": "pjsip_5241_read_after_release.py",
    "kept-response.md": "kept_response.py",
}


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "tools" / "docs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return re.findall(r"([\w/.-]+\.md)\s*$", nav, flags=re.MULTILINE)


def test_the_nav_lists_exactly_the_pages_that_exist() -> None:
    listed = nav_pages()
    assert len(listed) == len(set(listed))
    for page in listed:
        assert (DOCS / page).is_file(), page
    present = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(listed) == present


def test_every_marker_expands(hooks: ModuleType) -> None:
    for page in sorted(DOCS.rglob("*.md")):
        rel = str(page.relative_to(DOCS))
        text = page.read_text()
        assert hooks.MARKER.search(hooks.expand(text, rel)) is None, rel


def test_run_markers_show_the_command_output_and_status(hooks: ModuleType) -> None:
    block = hooks.render_run("examples/tutorial/kept_response.py MALLOC_DEBUG")
    lines = block.splitlines()
    assert lines[0] == "```text"
    assert lines[1] == "$ INVSESS_MALLOC_DEBUG=1 python examples/tutorial/kept_response.py"
    assert lines[-2] == "(exit status 1)" and lines[-1] == "```"
    with pytest.raises(ValueError, match="no program"):
        hooks.render_run("examples/nope.py")


@pytest.mark.parametrize("page", sorted(CHAPTERS))
def test_each_chapter_page_shows_its_programs_real_output(hooks: ModuleType, page: str) -> None:
    program = f"examples/tutorial/{CHAPTERS[page]}"
    text = (DOCS / "tutorial" / page).read_text()
    assert re.search(r"\]\(https://github\.com/[\w-]+/[\w-]+/(issues|pull|commit)/\w+\)", text) or (
        page == "kept-response.md"  # ours: the project's own history, linked within the site
    )
    for marker in (
        f"<!-- invsess:run {program} -->",
        f"<!-- invsess:run {program} MALLOC_DEBUG -->",
        f"<!-- invsess:run {program} --fixed MALLOC_DEBUG -->",
        f'--8<-- "{program}:',
    ):
        assert marker in text, marker
    expanded = hooks.expand(text, f"tutorial/{page}")
    # An independent run of the program, in a process of its own, prints exactly what the page shows.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVSESS_")}
    env["INVSESS_MALLOC_DEBUG"] = "1"
    done = subprocess.run(
        [sys.executable, program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert done.stdout.rstrip("\n") in expanded
    assert "==invsess== ERROR: " in done.stdout


def test_the_state_diagrams_come_from_every_table(hooks: ModuleType) -> None:
    tables = dict(hooks.find_tables())
    for name in (
        "InviteSession",
        "SdpNegotiator",
        "ClientInviteTransaction",
        "ClientNonInviteTransaction",
        "ServerInviteTransaction",
        "ServerNonInviteTransaction",
    ):
        assert name in tables, sorted(tables)
    from invsess.inv import TRANSITIONS

    assert tables["InviteSession"] is TRANSITIONS
    text = hooks.render_diagrams()
    assert text.count("```mermaid") == len(tables)
    assert "s_CONNECTING --> s_CONFIRMED : send ACK, receive ACK" in text


def test_a_ladder_is_drawn_from_a_run_of_its_example(hooks: ModuleType) -> None:
    svg = hooks.ladder_svg("kept_response")
    assert svg.startswith("<svg") and "OPTIONS sip:bob@127.0.0.2:5060" in svg
    assert hooks.render_ladder("kept_response", "tutorial/kept-response.md") == (
        "![The ladder of examples/tutorial/kept_response.py](../assets/ladders/kept_response.svg)"
    )
    with pytest.raises(ValueError, match="unknown example"):
        hooks.render_ladder("nope", "index.md")


def test_the_known_doc_errors_stay_fixed() -> None:
    memory = (DOCS / "memory.md").read_text()
    assert "check_proxy_require" not in memory  # a leak report naming a function that never existed
    assert "sanity.py:120" not in memory
    syntax = (DOCS / "syntax.md").read_text()
    assert "`status_code`" in syntax and "(status," not in syntax
    endpoint = (DOCS / "endpoint.md").read_text()
    assert "comes with the INVITE session layer" not in endpoint


def test_the_guides_tests_pass_as_shown() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/guide/test_calls.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    gate = subprocess.run(
        [sys.executable, "examples/guide/left_ringing.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert gate.returncode == 0, gate.stdout + gate.stderr  # the gate failed the ringing test
    assert "(UAS) still INCOMING (never answered)" in gate.stdout


def test_every_snippet_include_names_a_file_and_section_that_exist() -> None:
    pattern = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"$')
    seen = 0
    for page in sorted(DOCS.rglob("*.md")):
        for line in page.read_text().splitlines():
            if "8<" not in line or line.startswith("<!--"):
                continue
            match = pattern.match(line)
            assert match, f"{page.name}: malformed snippet line {line!r} (a formatter may have touched it)"
            path, section = match.groups()
            text = (ROOT / path).read_text()
            if section:
                assert f"--8<-- [start:{section}]" in text and f"--8<-- [end:{section}]" in text, line
            seen += 1
    assert seen >= 12
