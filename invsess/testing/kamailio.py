"""A Kamailio test bed: the real ``kamailio`` binary, started by a test on loopback.

:class:`Kamailio` runs one Kamailio in the foreground (``-DD -E``) with a config file written the
way operators write theirs, with Kamailio's preprocessor. The runner picks free loopback ports and
hands them to the config as ``#!substdef`` values on the command line, so the same file serves the
test bed and a deployment (which gets the defaults written in the file)::

    SIP_ADDR   the loopback address (default 127.0.0.1)   SIP_PORT   SIP over UDP and TCP
    HTTP_ADDR  the same address                           HTTP_PORT  JSON-RPC over HTTP (xhttp)
    RUN_DIR    the instance's private run directory

and defines ``TESTBED_MODE`` (``-A TESTBED_MODE``). Further ``defines`` become ``-A NAME[=VALUE]``
(tokens only: Kamailio does not expand a define inside a quoted string) and further ``substs``
become ``--substdef`` (expanded everywhere, strings included). See ``docs/testing.md`` and
``examples/kamailio/rpc-only.cfg``.

The runner waits until Kamailio really serves (a JSON-RPC ``core.version`` answer, then a response
to a SIP OPTIONS over UDP), and a start that fails raises :class:`KamailioStartError` with the tail
of Kamailio's own log.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

from invsess.errors import InvsessError

__all__ = [
    "DEFAULT_PKG_MB",
    "DEFAULT_SHM_MB",
    "Kamailio",
    "KamailioError",
    "KamailioModuleMissingError",
    "KamailioRPCError",
    "KamailioStartError",
    "find_kamailio",
]

#: Shared memory (``-m``, MB) of a test-bed instance: ample for functional tests; load runs of
#: stateful configs need more (PEERS.md: 64 MB ran out at 500 calls/s with ``tm``; use 512).
DEFAULT_SHM_MB = 64
#: Private memory per process (``-M``, MB): Kamailio's own default.
DEFAULT_PKG_MB = 8

#: The names the runner substitutes itself; a test cannot pass them in ``defines``/``substs``.
RESERVED = frozenset({"SIP_ADDR", "SIP_PORT", "HTTP_ADDR", "HTTP_PORT", "RUN_DIR", "TESTBED_MODE"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MISSING_MODULE = re.compile(r"could not find module <([^>]+)>")
_ADDRESS_IN_USE = "Address already in use"
#: How many times a start is retried when another process took a picked port in the meantime.
_PORT_RACE_ATTEMPTS = 3


class KamailioError(InvsessError):
    """Something went wrong with a Kamailio test-bed instance."""


class KamailioStartError(KamailioError):
    """Kamailio did not start, or did not serve in time; ``log_tail`` holds its last log lines."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- last lines of Kamailio's log ---\n{log_tail}")
        self.log_tail = log_tail


class KamailioModuleMissingError(KamailioStartError):
    """The config loads a module that is not installed (``module`` names it)."""

    def __init__(self, module: str, log_tail: str) -> None:
        super().__init__(f"Kamailio module {module!r} is not installed", log_tail)
        self.module = module


class KamailioRPCError(KamailioError):
    """A JSON-RPC error object in Kamailio's answer (Kamailio uses its own codes: an unknown
    method is ``500 "Method Not Found"``, not JSON-RPC's -32601)."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: JSON-RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


def find_kamailio() -> str | None:
    """The ``kamailio`` binary: ``$INVSESS_KAMAILIO``, the PATH, then ``/usr/sbin`` (Debian puts it
    there, and ``sbin`` is not on an ordinary user's PATH); None when it is not installed."""
    explicit = os.environ.get("INVSESS_KAMAILIO")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("kamailio")
    if found:
        return found
    for candidate in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port(host: str, *, udp_too: bool) -> int:
    """A port free on ``host`` for TCP (and UDP when ``udp_too``): the kernel picks it for one
    protocol, the other must take the same number. Another process can still take it before
    Kamailio binds; :meth:`Kamailio.start` retries then."""
    for _ in range(50):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp_too else socket.SOCK_STREAM)
            )
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            if not udp_too:
                return port
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                tcp.bind((host, port))
            except OSError:
                continue
            return port
    raise KamailioError(f"no port free for both UDP and TCP on {host}")


def _substdef(name: str, value: str) -> str:
    """``--substdef`` argument for ``name`` → ``value``, with a delimiter neither contains."""
    if "\\" in value or "\n" in value:
        raise ValueError(f"substitution {name}: a backslash or newline cannot be passed ({value!r})")
    for delimiter in "!#%@|~^":
        if delimiter not in value:
            return f"--substdef={delimiter}{name}{delimiter}{value}{delimiter}g"
    raise ValueError(f"substitution {name}: no delimiter free in {value!r}")


class Kamailio:
    """One Kamailio instance on loopback, in its own run directory.

    ``config``: the .cfg file. ``defines``: ``-A NAME`` (value None) or ``-A NAME=VALUE``.
    ``substs``: ``--substdef`` values (names and values substituted everywhere in the config).
    ``host``: an IPv4 loopback address. ``shm_mb``/``pkg_mb``: ``-m``/``-M``.
    ``probe_options``: also wait for a response to a SIP OPTIONS over UDP (any status: it proves
    the SIP side serves); turn it off for a config that drops OPTIONS.

    Use as a context manager, or :meth:`start` then :meth:`stop`.
    """

    def __init__(
        self,
        config: str | os.PathLike[str],
        *,
        defines: Mapping[str, str | int | None] | None = None,
        substs: Mapping[str, str | int] | None = None,
        host: str = "127.0.0.1",
        shm_mb: int = DEFAULT_SHM_MB,
        pkg_mb: int = DEFAULT_PKG_MB,
        binary: str | None = None,
        probe_options: bool = True,
        start_timeout: float = 20.0,
    ) -> None:
        if not ipaddress.IPv4Address(host).is_loopback:
            raise ValueError(f"the Kamailio test bed listens on loopback only, not on {host}")
        self.config = Path(config).resolve()
        if not self.config.is_file():
            raise FileNotFoundError(f"Kamailio config {self.config} does not exist")
        self.defines = dict(defines or {})
        self.substs = {name: str(value) for name, value in (substs or {}).items()}
        for name in (*self.defines, *self.substs):
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a preprocessor name")
            if name in RESERVED:
                raise ValueError(f"{name} is set by the test bed itself")
        for name, value in self.substs.items():
            _substdef(name, value)  # refuse what cannot be passed now, not at start()
        self.host = host
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.binary = binary or find_kamailio()
        self.probe_options = probe_options
        self.start_timeout = start_timeout
        self.sip_port = 0
        self.http_port = 0
        self.run_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        #: True once :meth:`stop` was called (a process that ended without it died on its own).
        self.stopped = False
        self._log_text: str | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def sip_address(self) -> tuple[str, int]:
        """Where Kamailio takes SIP, over UDP and TCP."""
        return (self.host, self.sip_port)

    @property
    def sip_uri(self) -> str:
        """``sip:HOST:PORT`` of the instance."""
        return f"sip:{self.host}:{self.sip_port}"

    @property
    def rpc_url(self) -> str:
        """The JSON-RPC URL (``http://HOST:HTTP_PORT/RPC``)."""
        return f"http://{self.host}:{self.http_port}/RPC"

    # -- life cycle --------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The command line for the current ports and run directory."""
        if self.binary is None:
            raise KamailioError("kamailio is not installed (apt-get install kamailio)")
        if self.run_dir is None:
            raise KamailioError("the command line needs a run directory: call start()")
        run = str(self.run_dir)
        args = [
            self.binary,
            "-DD",  # no daemon: the test owns the main process and its process group
            "-E",  # log to stderr (captured into RUN_DIR/kamailio.log)
            "-f", str(self.config),
            "-Y", run,  # jsonrpcs FIFO, ctl socket and friends land here, not in /run/kamailio
            "-P", str(self.run_dir / "kamailio.pid"),
            "-w", run,  # working directory (core files)
            "-m", str(self.shm_mb),
            "-M", str(self.pkg_mb),
            "-A", "TESTBED_MODE",
            _substdef("SIP_ADDR", self.host),
            _substdef("SIP_PORT", str(self.sip_port)),
            _substdef("HTTP_ADDR", self.host),
            _substdef("HTTP_PORT", str(self.http_port)),
            _substdef("RUN_DIR", run),
        ]  # fmt: skip
        for name, value in self.defines.items():
            args += ["-A", name if value is None else f"{name}={value}"]
        args += [_substdef(name, value) for name, value in self.substs.items()]
        return args

    def start(self) -> Self:
        """Start Kamailio and wait until it serves; raise :class:`KamailioStartError` if not."""
        if self.process is not None:
            raise KamailioError("this Kamailio instance was already started")
        if self.binary is None:
            raise KamailioError("kamailio is not installed (apt-get install kamailio)")
        self.run_dir = Path(tempfile.mkdtemp(prefix="invsess-kamailio-"))
        began = time.monotonic()
        for attempt in range(_PORT_RACE_ATTEMPTS):
            self.sip_port = _free_port(self.host, udp_too=True)
            self.http_port = _free_port(self.host, udp_too=False)
            while self.http_port == self.sip_port:
                self.http_port = _free_port(self.host, udp_too=False)
            try:
                process = self._launch(self.run_dir)
                self._wait_until_serving(process, began + self.start_timeout)
            except KamailioStartError as error:
                self._terminate()
                raced = _ADDRESS_IN_USE in error.log_tail and attempt + 1 < _PORT_RACE_ATTEMPTS
                if not raced:
                    self.stopped = True  # ended by the runner, not died on its own
                    self._discard_run_dir()
                    raise
                continue
            except BaseException:
                self.stopped = True
                self._terminate()
                self._discard_run_dir()
                raise
            self.startup_seconds = time.monotonic() - began
            return self
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _launch(self, run_dir: Path) -> subprocess.Popen[bytes]:
        self._log_text = None
        with open(run_dir / "kamailio.log", "wb") as log:
            self.process = subprocess.Popen(  # noqa: S603  # our own argument list, no shell
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group, so stop() can sweep the workers
            )
        return self.process

    def _wait_until_serving(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        rpc_ok = False
        last_error = "no answer yet"
        while True:
            if process.poll() is not None:
                self._raise_start_error(f"Kamailio exited with status {process.returncode}")
            if time.monotonic() >= deadline:
                self._raise_start_error(
                    f"Kamailio did not serve within {self.start_timeout:g} s ({last_error})"
                )
            try:
                if not rpc_ok:
                    self.rpc("core.version", timeout=1.0)
                    rpc_ok = True
                if not self.probe_options or self.options(timeout=0.5) is not None:
                    return
                last_error = f"no response to OPTIONS at {self.host}:{self.sip_port}/udp"
            except KamailioRPCError as error:
                self._raise_start_error(f"core.version failed: {error}")
            except (OSError, ValueError) as error:  # not listening yet; an empty or partial reply
                last_error = f"JSON-RPC at {self.rpc_url}: {error}"
                time.sleep(0.05)

    def _raise_start_error(self, message: str) -> NoReturn:
        if self.process is not None and self.process.poll() is None:
            self._terminate()
        tail = self.log_tail()
        missing = _MISSING_MODULE.search(tail)
        if missing:
            raise KamailioModuleMissingError(missing.group(1), tail)
        raise KamailioStartError(f"{message}\ncommand: {' '.join(self.command())}", tail)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; remove the run directory (the log stays
        readable through :attr:`log`). Returns the main process's exit status (None if never
        started). Safe to call twice."""
        if self.process is None:
            return None
        self.stopped = True
        self._terminate(timeout)
        self._discard_run_dir()
        return self.process.returncode

    def _terminate(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # Kamailio's main process stops its workers
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Workers a killed (or crashed) main process left behind share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def _discard_run_dir(self) -> None:
        if self.run_dir is not None and self.run_dir.exists():
            self._log_text = self._read_log()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the main process lives."""
        return self.process is not None and self.process.poll() is None

    # -- the log -----------------------------------------------------------------------------

    def _read_log(self) -> str:
        if self.run_dir is None:
            return ""
        try:
            return (self.run_dir / "kamailio.log").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def log(self) -> str:
        """Everything Kamailio wrote to stderr (also after :meth:`stop`)."""
        return self._log_text if self._log_text is not None else self._read_log()

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log.rstrip("\n").splitlines()[-lines:])

    # -- talking to it -----------------------------------------------------------------------

    def rpc(self, method: str, *params: Any, timeout: float = 5.0) -> Any:
        """Call ``method`` over JSON-RPC 2.0 and return its ``result``; a JSON-RPC error object
        raises :class:`KamailioRPCError`. Kamailio answers errors with an HTTP error status
        *and* the error object; both are read."""
        if self.http_port == 0:
            raise KamailioError("Kamailio has not been started")
        payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": secrets.randbelow(1 << 31)}
        if params:
            payload["params"] = list(params)
        request = urllib.request.Request(  # noqa: S310  # an http:// URL we built on loopback
            self.rpc_url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310  # ditto
                body = reply.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            if not body:
                raise
        answer = json.loads(body)
        if not isinstance(answer, dict) or answer.get("id") != payload["id"]:
            raise KamailioError(f"{method}: not a JSON-RPC answer to our request: {body[:200]!r}")
        if "error" in answer:
            err = answer["error"]
            if not isinstance(err, dict) or not isinstance(err.get("code"), int):
                raise KamailioError(f"{method}: malformed JSON-RPC error object: {err!r}")
            raise KamailioRPCError(method, err["code"], str(err.get("message", "")), err.get("data"))
        return answer.get("result")

    def options(self, timeout: float = 2.0) -> int | None:
        """Send one SIP OPTIONS over UDP and return the status code of the final response
        (None when nothing final came within ``timeout``): the start-up probe, and a quick check
        for tests."""
        call_id = f"invsess-testbed-{secrets.token_hex(8)}"
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.host, 0))
            port = sock.getsockname()[1]
            request = (
                f"OPTIONS {self.sip_uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.host}:{port};branch={branch};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:testbed@{self.host}>;tag={secrets.token_hex(4)}\r\n"
                f"To: <{self.sip_uri}>\r\n"
                f"Call-ID: {call_id}\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), self.sip_address)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    return None
                status = _final_status(data, call_id)
                if status is not None:
                    return status
        return None


def _final_status(data: bytes, call_id: str) -> int | None:
    """The status code of a final response to our probe (matched by Call-ID), else None."""
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    ours = any(
        line.split(":", 1)[0].strip().lower() in ("call-id", "i") and line.split(":", 1)[1].strip() == call_id
        for line in head[1:]
        if ":" in line
    )
    status = int(parts[1])
    return status if ours and status >= 200 else None
