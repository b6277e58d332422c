"""A small JSON-RPC 2.0 client over HTTP (the standard library's urllib): what ``invsess stats``
uses to read a running invsess — or a Kamailio, whose ``jsonrpcs`` speaks the same methods."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any

from invsess.errors import InvsessError


class RpcClientError(InvsessError):
    """The server could not be reached, or did not answer with JSON-RPC."""


class RpcCallError(RpcClientError):
    """The server answered with a JSON-RPC error object (``code``, ``message``, ``data``)."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data

    @property
    def method_missing(self) -> bool:
        """The method does not exist there (JSON-RPC's -32601; Kamailio says 500 "Method Not Found")."""
        return self.code == -32601 or (self.code == 500 and self.message == "Method Not Found")


class RpcClient:
    """Calls methods at ``url`` (``http://127.0.0.1:5071/RPC``), with a bearer ``token`` if given."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise RpcClientError(f"the RPC URL must be http:// or https://, not {url!r}")
        self.url = url
        self.token = token
        self.timeout = timeout
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        """The ``result`` of ``method(*params)``; :class:`RpcCallError` for an error object."""
        rid = next(self._ids)
        payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params:
            payload["params"] = list(params)
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked in __init__
            self.url, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310 - ditto
                body = reply.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            if error.code == 401:
                raise RpcClientError(f"{self.url}: 401, a token is required (--token)") from None
            if not body:
                raise RpcClientError(f"{self.url}: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RpcClientError(f"cannot reach {self.url}: {reason}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise RpcClientError(f"{self.url}: not JSON: {body[:120]!r}") from None
        if not isinstance(answer, dict) or answer.get("id") != rid:
            raise RpcClientError(f"{method}: not an answer to our request: {body[:200]!r}")
        if "error" in answer:
            err = answer["error"]
            if not isinstance(err, dict) or not isinstance(err.get("code"), int):
                raise RpcClientError(f"{method}: malformed error object {err!r}")
            raise RpcCallError(method, err["code"], str(err.get("message", "")), err.get("data"))
        return answer.get("result")


__all__ = ["RpcCallError", "RpcClient", "RpcClientError"]
