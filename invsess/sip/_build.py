"""Which build of the hot modules runs: compiled (mypyc) or pure Python.

The compiled build is an extension module beside each compiled ``.py`` file, built from that same
file (``hatch_build.py``; docs/performance-parsing.md); Python's import system prefers it when
both are there. This module names the modules that build compiles, says which ones were loaded
compiled, and can turn the preference around for one process (``INVSESS_PURE_PYTHON=1``, or a
compiled module whose source changed since it was built). It needs the standard library only:
the build hook loads it on its own, before anything else of invsess can be imported.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from importlib.machinery import EXTENSION_SUFFIXES, SOURCE_SUFFIXES, FileFinder, SourceFileLoader
from pathlib import Path

#: The modules the compiled build compiles: where a received message spends its parsing time
#: (benchmarks/parse.py under a profiler). Never a module whose classes are pool blocks: MALLOC_DEBUG
#: poisons a freed block by swapping its class, which compiled (native) classes do not allow.
HOT_MODULES = (
    "invsess.sip.grammar",
    "invsess.sip.uri",
    "invsess.sip.headers",
    "invsess.sip.fields",
    "invsess.sip.scan",
)
#: mypyc puts the code of all of them in one shared library, this module beside them.
GROUP_NAME = "invsess.sip._hot"
#: Beside the compiled modules: the digest of each source as it was compiled.
MANIFEST = "_compiled.json"


def prefer_source(package_path: Iterable[str]) -> None:
    """Make this process import the ``.py`` files of the package, never extension modules.

    Must run before the package's submodules are imported (the package ``__init__`` calls it).
    """
    for directory in package_path:
        sys.path_importer_cache[directory] = FileFinder(directory, (SourceFileLoader, SOURCE_SUFFIXES))


def compiled_modules() -> tuple[str, ...]:
    """The hot modules that were loaded from extension modules (empty: pure Python)."""
    out = []
    for name in HOT_MODULES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) or ""
        if path.endswith(tuple(EXTENSION_SUFFIXES)):
            out.append(name)
    return tuple(out)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(package_dir: Path, sources: Mapping[str, Path]) -> Path:
    """Record the digest of each compiled module's source (the build hook calls this)."""
    path = package_dir / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: _digest(source) for name, source in sources.items()}, indent=1))
    return path


def stale_modules(package_dir: Path) -> list[str]:
    """Compiled modules whose source changed since they were built (none without a manifest)."""
    manifest = package_dir / MANIFEST
    if not manifest.is_file():
        return []
    recorded: dict[str, str] = json.loads(manifest.read_text())
    stale = []
    for name, digest in recorded.items():
        source = package_dir / (name.rsplit(".", 1)[-1] + ".py")
        if not source.is_file() or _digest(source) != digest:
            stale.append(name)
    return stale


def remove_compiled(package_dir: Path) -> None:
    """Delete the compiled modules, their shared library and the manifest from ``package_dir``."""
    stems = [name.rsplit(".", 1)[-1] for name in (*HOT_MODULES, GROUP_NAME + "__mypyc")]
    for stem in stems:
        for suffix in EXTENSION_SUFFIXES:
            (package_dir / (stem + suffix)).unlink(missing_ok=True)
    (package_dir / MANIFEST).unlink(missing_ok=True)
