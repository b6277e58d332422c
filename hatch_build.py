"""Build hook (hatchling): the optional compiled build of invsess's hot modules.

``INVSESS_COMPILE`` chooses (docs/performance-parsing.md):

* unset or ``0`` - nothing is compiled: the wheel is pure Python (``py3-none-any``), what ``pip
  install`` builds from the source distribution where no compiled wheel fits. An editable install
  also removes compiled modules an earlier compiled editable install left beside the sources, so
  that a plain ``pip install -e .`` always runs the ``.py`` files.
* ``1`` - the modules named in ``invsess/sip/_build.py`` (``HOT_MODULES``) are compiled with mypyc
  from the same source, and the wheel is tagged for this interpreter and platform; an editable
  install builds them beside the sources. If compiling fails (no C compiler...), the build warns
  and goes on pure Python.
* ``required`` - as ``1``, but a failure fails the build (CI uses it).

A manifest beside the compiled modules records a digest of each source compiled; at import,
``invsess.sip`` runs the pure-Python modules (with a warning) when a source no longer matches it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: What compiling needs besides the project's own run-time dependencies (mypy type-checks the
#: compiled modules and what they import, attrs included, before mypyc turns them into C).
COMPILE_REQUIRES = ["mypy>=1.16", "setuptools>=70"]


def _mode() -> str:
    value = os.environ.get("INVSESS_COMPILE", "").strip().lower()
    if value in ("", "0", "no", "false"):
        return ""
    if value == "required":
        return "required"
    return "1"


def _build_module(root: str) -> ModuleType:
    """``invsess/sip/_build.py`` loaded on its own (it needs the standard library only): the
    module list and the manifest format live there, once, for the build and the run time."""
    path = Path(root, "invsess", "sip", "_build.py")
    spec = importlib.util.spec_from_file_location("_invsess_build", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CompileHook(BuildHookInterface):
    """Compiles the hot modules when ``INVSESS_COMPILE`` asks for it (see the module docstring)."""

    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        """Build requirements, only when compiling (a pure build needs hatchling alone)."""
        if not _mode():
            return []
        return [*COMPILE_REQUIRES, *self.metadata.core.dependencies]

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile (or, for a pure editable install, clean up) before the wheel is assembled."""
        if self.target_name != "wheel":
            return
        build = _build_module(self.root)
        package = Path(self.root, "invsess", "sip")
        editable = version == "editable"
        if editable:
            build.remove_compiled(package)
        mode = _mode()
        if not mode:
            return
        self._out = Path(tempfile.mkdtemp(prefix="invsess-compile-"))
        try:
            artefacts = _compile(self.root, build, self._out, in_place=editable)
        except Exception as exc:
            if mode == "required":
                raise
            print(
                f"invsess: INVSESS_COMPILE=1 but compiling failed ({type(exc).__name__}: {exc}); "
                "building the pure-Python package instead",
                file=sys.stderr,
            )
            build.remove_compiled(package)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if not editable:
            for path in artefacts:
                build_data["force_include"][str(path)] = str(path.relative_to(self._out))

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the temporary build directory once the wheel holds what it needs."""
        out = getattr(self, "_out", None)
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)


def _compile(root: str, build: ModuleType, out: Path, *, in_place: bool) -> list[Path]:
    """Compile the hot modules; returns the files made (under ``out``, or beside the sources)."""
    # Imported here: they are build requirements only when compiling (dependencies() above).
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # noqa: PLC0415

    sources = [Path(root, *name.split(".")).with_suffix(".py") for name in build.HOT_MODULES]
    cwd = os.getcwd()
    os.chdir(root)  # mypy reads the project's configuration; setuptools maps modules to paths
    try:
        extensions = mypycify(
            [str(path.relative_to(root)) for path in sources],
            opt_level="3",
            target_dir=str(out / "c"),
            group_name=build.GROUP_NAME,
        )
        dist = Distribution({"name": "invsess", "ext_modules": extensions})
        command = dist.get_command_obj("build_ext")
        command.build_temp = str(out / "temp")
        command.build_lib = str(out / "lib")
        command.inplace = in_place
        command.ensure_finalized()
        command.run()
        made = [Path(path) for path in command.get_outputs()]
    finally:
        os.chdir(cwd)
    target = Path(root) if in_place else out / "lib"
    made = [path if path.is_absolute() else target / path for path in made]
    package = target / "invsess" / "sip"
    manifest = build.write_manifest(package, dict(zip(build.HOT_MODULES, sources, strict=True)))
    return [*made, manifest]
