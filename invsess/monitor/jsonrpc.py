"""A JSON-RPC 2.0 dispatcher: request bytes in, HTTP status and response bytes out. No I/O.

Follows https://www.jsonrpc.org/specification to the letter, whatever the body: malformed JSON is
``-32700``, anything that is not a request object ``-32600``, an unknown method ``-32601``,
parameters a method cannot take ``-32602``, a method's own failure ``-32603`` (logged, never
raised to the server). Batches are answered as batches; notifications (no ``id``) are run and not
answered. Methods are plain functions taking positional (array) or named (object) parameters.

Kamailio's ``jsonrpcs`` differs (docs/monitoring.md): an unknown method is its ``500 "Method Not
Found"``, a body without ``"jsonrpc": "2.0"`` or a method, and a batch, get ``{"result": {}}``, a
notification is answered, and a body that is not JSON gets no answer at all.

HTTP status: 200 for results and batches, 204 when only notifications came, and for a single
error 400 (parse error, invalid request, invalid params), 404 (method not found) or 500
(internal error), as the JSON-RPC-over-HTTP convention has it; the body is the JSON-RPC answer
either way.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import attrs

from invsess.logs import get_logger

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: Implementation-defined server errors are -32000 to -32099 (e.g. "no snapshot yet").
SERVER_ERROR = -32000

_HTTP_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, METHOD_NOT_FOUND: 404}
_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}

log = get_logger("invsess.monitor")


class RpcError(Exception):
    """A JSON-RPC error object: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    def as_object(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InvalidParamsError(RpcError):
    """A method was given parameters it cannot use (-32602); ``message`` says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMS, message)


@attrs.frozen
class Method:
    """A registered method: its name, the function, and its help text (``system.methodHelp``)."""

    name: str
    function: Callable[..., Any]
    help: str


class Dispatcher:
    """Methods by name, and :meth:`handle` to answer a request body.

    ``max_batch`` bounds the work one request can ask for; ``max_depth`` the nesting of the JSON
    it will read (deeper documents are a parse error, not a stack overflow).
    """

    def __init__(self, *, max_batch: int = 100, max_depth: int = 32) -> None:
        self._methods: dict[str, Method] = {}
        self.max_batch = max_batch
        self.max_depth = max_depth

    def add(self, name: str, function: Callable[..., Any], help_text: str | None = None) -> None:
        """Register ``function`` as ``name``; its help is the docstring's first line by default."""
        doc = help_text or (inspect.getdoc(function) or "undocumented").splitlines()[0]
        self._methods[name] = Method(name, function, doc)

    def names(self) -> list[str]:
        """The method names, sorted (``system.listMethods``)."""
        return sorted(self._methods)

    def method(self, name: str) -> Method | None:
        """The method registered as ``name``, if any."""
        return self._methods.get(name)

    def handle(self, body: bytes) -> tuple[int, bytes | None]:
        """Answer one HTTP request body: (HTTP status, response body or None for no content)."""
        try:
            document = json.loads(body)
            _check_depth(document, self.max_depth)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep
            return self._single(_error(None, RpcError(PARSE_ERROR, _MESSAGES[PARSE_ERROR])))
        if isinstance(document, list):
            if not document:
                return self._single(_error(None, RpcError(INVALID_REQUEST, "empty batch")))
            if len(document) > self.max_batch:
                error = RpcError(INVALID_REQUEST, f"batch of {len(document)}: at most {self.max_batch}")
                return self._single(_error(None, error))
            answers = [a for a in (self._one(item) for item in document) if a is not None]
            if not answers:
                return 204, None
            return 200, _encode(answers)
        answer = self._one(document)
        if answer is None:
            return 204, None
        return self._single(answer)

    def _single(self, answer: dict[str, Any]) -> tuple[int, bytes]:
        error = answer.get("error")
        status = 200 if error is None else _HTTP_STATUS.get(error["code"], 500)
        return status, _encode(answer)

    def _one(self, request: Any) -> dict[str, Any] | None:
        """The answer to one request object (None for a notification)."""
        if not isinstance(request, dict):
            return _error(None, RpcError(INVALID_REQUEST, "a request must be a JSON object"))
        has_id = "id" in request
        rid = request.get("id")
        if has_id and not _valid_id(rid):
            return _error(None, RpcError(INVALID_REQUEST, "id must be a string, a number or null"))
        problem = _invalid(request)
        if problem is not None:
            return _error(rid, RpcError(INVALID_REQUEST, problem))
        try:
            result = self.call(request["method"], request.get("params", []))
        except RpcError as exc:
            return _error(rid, exc) if has_id else None
        if not has_id:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": rid}

    def call(self, name: str, params: list[Any] | dict[str, Any]) -> Any:
        """Run method ``name`` with ``params``; raises :class:`RpcError` for anything wrong."""
        method = self._methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, _MESSAGES[METHOD_NOT_FOUND], {"method": name})
        signature = inspect.signature(method.function)
        try:
            bound = signature.bind(*params) if isinstance(params, list) else signature.bind(**params)
        except TypeError as exc:
            raise InvalidParamsError(f"{name}: {exc}") from None
        try:
            result = method.function(*bound.args, **bound.kwargs)
            json.dumps(result, allow_nan=False)  # an answer that cannot be encoded is our bug
        except RpcError:
            raise
        except Exception as exc:  # a method's bug must not take the server down
            log.error("JSON-RPC method failed", method=name, error=repr(exc))  # noqa: TRY400 - the facade has no exception()
            raise RpcError(
                INTERNAL_ERROR, _MESSAGES[INTERNAL_ERROR], {"exception": type(exc).__name__}
            ) from None
        return result


def _check_depth(document: Any, limit: int) -> None:
    stack = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise ValueError("nested too deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _valid_id(rid: Any) -> bool:
    # bool is an int in Python, not a number in JSON-RPC.
    return rid is None or (isinstance(rid, str | int | float) and not isinstance(rid, bool))


def _invalid(request: dict[str, Any]) -> str | None:
    if request.get("jsonrpc") != "2.0":
        return 'the "jsonrpc" member must be exactly "2.0"'
    if not isinstance(request.get("method"), str):
        return 'the "method" member must be a string'
    if "params" in request and not isinstance(request["params"], list | dict):
        return 'the "params" member must be an array or an object'
    return None


def _error(rid: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.as_object(), "id": rid}


def _encode(answer: Any) -> bytes:
    return json.dumps(answer, separators=(",", ":"), allow_nan=False).encode()


__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "Dispatcher",
    "InvalidParamsError",
    "Method",
    "RpcError",
]
