"""MkDocs hooks: every report, diagram and ladder on the site is generated from the code, at
build time, so none of them can go stale.

Markers in the Markdown (HTML comments, invisible where the page is read unbuilt) are replaced:

``<!-- invsess:run examples/tutorial/x.py [ARGS...] [MALLOC_DEBUG] -->``
    runs the program (from the repository root, with ``INVSESS_MALLOC_DEBUG=1`` when the marker
    ends with ``MALLOC_DEBUG``, without it otherwise) and shows the command and what it printed.
``<!-- invsess:diagrams -->``
    a state diagram (Mermaid) and the table of every transition table found in the sans-IO
    core (:func:`find_tables`): a table added or changed is drawn at the next build.
``<!-- invsess:ladder NAME -->``
    the ladder SVG of ``examples/NAME.py`` (or ``examples/tutorial/NAME.py``), run with
    ``--trace``; the SVGs are generated files of the site (``assets/ladders/NAME.svg``).

The same functions serve ``tests/test_docs.py``, which checks that each tutorial page's
generated report is the program's real output and that a reader can follow it to the line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from invsess.trace import Trace, render_svg
from invsess.trace.machines import markdown_table, mermaid

ROOT = Path(__file__).resolve().parent.parent
#: The sans-IO packages whose machines are drawn.
CORE = ("invsess.transaction", "invsess.dialog", "invsess.inv", "invsess.sdp", "invsess.endpoint")
MARKER = re.compile(r"<!--\s*invsess:(\w+)\s*(.*?)\s*-->")
#: Examples drawn as ladders (each takes ``--trace FILE``).
LADDERS = {
    "call_and_answer": "examples/call_and_answer.py",
    "session_timer_half_hour": "examples/session_timer_half_hour.py",
    "asterisk_release_order": "examples/tutorial/asterisk_release_order.py",
    "pjsip_2007_timer_after_release": "examples/tutorial/pjsip_2007_timer_after_release.py",
    "pjsip_4107_bye_after_disconnect": "examples/tutorial/pjsip_4107_bye_after_disconnect.py",
    "pjsip_5241_read_after_release": "examples/tutorial/pjsip_5241_read_after_release.py",
    "kept_response": "examples/tutorial/kept_response.py",
}

_runs: dict[tuple[str, ...], tuple[int, str]] = {}


# -- running the programs ----------------------------------------------------------------------


def run_program(path: str, *args: str, malloc_debug: bool = False) -> tuple[int, str]:
    """Run ``python path args`` from the repository root; (exit status, stdout + stderr).

    The environment is fixed (MALLOC_DEBUG on or off, no colour, hash seed 0) so the output is
    the same on every build; results are kept for the rest of the build.
    """
    key = (path, *args, "debug" if malloc_debug else "normal")
    if key not in _runs:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVSESS_")}
        env.update(PYTHONHASHSEED="0", NO_COLOR="1", PYTHONIOENCODING="utf-8")
        if malloc_debug:
            env["INVSESS_MALLOC_DEBUG"] = "1"
        done = subprocess.run(  # noqa: S603 - our own example programs, with our interpreter
            [sys.executable, path, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        _runs[key] = (done.returncode, done.stdout + done.stderr)
    return _runs[key]


def command_line(path: str, args: list[str], malloc_debug: bool) -> str:
    """The shell command a reader types to see the same thing."""
    env = "INVSESS_MALLOC_DEBUG=1 " if malloc_debug else ""
    return f"$ {env}python {shlex.join([path, *args])}"


def render_run(spec: str) -> str:
    """The replacement of an ``invsess:run`` marker: the command, the output, the exit status."""
    words = shlex.split(spec)
    malloc_debug = bool(words) and words[-1] == "MALLOC_DEBUG"
    if malloc_debug:
        words = words[:-1]
    if not words:
        raise ValueError("invsess:run needs a program")
    path, args = words[0], words[1:]
    if not (ROOT / path).is_file():
        raise ValueError(f"invsess:run: no program {path}")
    status, output = run_program(path, *args, malloc_debug=malloc_debug)
    lines = [command_line(path, args, malloc_debug), output.rstrip("\n")]
    if status:
        lines.append(f"(exit status {status})")
    return "```text\n" + "\n".join(lines) + "\n```"


# -- state diagrams ----------------------------------------------------------------------------


def find_tables() -> Iterator[tuple[str, Mapping[Any, Any]]]:
    """Every transition table of the sans-IO core: module-level ``TRANSITIONS`` and classes'
    own ``TRANSITIONS``, each once (a class that reuses its module's table is named for it)."""
    seen: dict[int, str] = {}
    found: dict[int, Mapping[Any, Any]] = {}
    where: dict[int, int] = {}  # the package's rank in DRAW_ORDER: sessions before transactions
    for name in _core_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == name:
                table = vars(value).get("TRANSITIONS")
                if isinstance(table, Mapping):
                    seen[id(table)] = value.__qualname__
                    found[id(table)] = table
                    where[id(table)] = _rank(name)
            elif attr == "TRANSITIONS" and isinstance(value, Mapping) and id(value) not in seen:
                seen[id(value)] = f"{name}.TRANSITIONS"
                found[id(value)] = value
                where[id(value)] = _rank(name)
    for ident, title in sorted(seen.items(), key=lambda item: (where[item[0]], item[1])):
        yield title, found[ident]


#: The order the machines are drawn in: the INVITE session first, transactions last.
DRAW_ORDER = ("invsess.inv", "invsess.dialog", "invsess.sdp", "invsess.endpoint", "invsess.transaction")


def _rank(module: str) -> int:
    return next((i for i, p in enumerate(DRAW_ORDER) if module.startswith(p)), len(DRAW_ORDER))


def _core_modules() -> list[str]:
    names = []
    for package in CORE:
        module = importlib.import_module(package)
        names.append(package)
        if hasattr(module, "__path__"):
            names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return sorted(set(names))


def render_diagrams() -> str:
    """The replacement of ``invsess:diagrams``: a section per table."""
    parts = []
    for title, table in find_tables():
        parts.append(
            f"### {title}\n\n```mermaid\n{mermaid(table)}\n```\n\n"
            f'??? note "The {len(table)} transitions of {title}"\n\n'
            + "\n".join("    " + line for line in markdown_table(table).splitlines())
        )
    return "\n\n".join(parts)


# -- ladders -----------------------------------------------------------------------------------


def ladder_svg(name: str) -> str:
    """Run the example with ``--trace`` and draw its trace as SVG."""
    path = LADDERS[name]
    with tempfile.TemporaryDirectory() as tmp:
        trace_file = Path(tmp) / f"{name}.jsonl"
        status, output = run_program(path, "--trace", str(trace_file))
        if not trace_file.exists():
            raise RuntimeError(f"{path} --trace wrote no trace (exit {status}):\n{output}")
        return render_svg(Trace.read(trace_file))


def render_ladder(spec: str, page_path: str) -> str:
    """The replacement of ``invsess:ladder NAME``: the image, linked relative to the page's
    source file (``tutorial/x.md`` links ``../assets/ladders/NAME.svg``)."""
    name = spec.strip()
    if name not in LADDERS:
        raise ValueError(f"invsess:ladder: unknown example {name!r} (known: {', '.join(LADDERS)})")
    prefix = "../" * page_path.count("/")
    return f"![The ladder of {LADDERS[name]}]({prefix}assets/ladders/{name}.svg)"


# -- the hooks ---------------------------------------------------------------------------------


def expand(markdown: str, page_path: str = "index.md") -> str:
    """Replace every marker of ``markdown`` with what it stands for."""

    def one(match: re.Match[str]) -> str:
        kind, spec = match.group(1), match.group(2)
        if kind == "run":
            return render_run(spec)
        if kind == "diagrams":
            return render_diagrams()
        if kind == "ladder":
            return render_ladder(spec, page_path)
        raise ValueError(f"unknown marker invsess:{kind}")

    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs: expand the markers of each page."""
    return expand(markdown, page.file.src_uri)


def on_files(files: Any, config: Any) -> Any:
    """MkDocs: add the ladder SVGs as generated files of the site."""
    from mkdocs.structure.files import File  # noqa: PLC0415 - the tests import this module without mkdocs

    for name in LADDERS:
        files.append(File.generated(config, f"assets/ladders/{name}.svg", content=ladder_svg(name)))
    return files
