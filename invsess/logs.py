"""Logging: structlog, silent until the application configures it.

A library must not print: invsess logs through structlog only once the application has
called ``structlog.configure`` (or configured it through :func:`configure`, as the command line
does). Until then every log call returns at once, and so does a call below the configured
level: the context is built only for a line that will really be written, so per-message
logging costs nothing when it is off.

Library code gets its loggers from :func:`get_logger`; sessions and dialogs bind their
context (``call_id``, tags, ``state``) with :meth:`Logger.bind` or lazily with
:meth:`Logger.bind_lazy`, so the context is read at the moment of logging, not before.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

import structlog

Context = Mapping[str, Any]


#: structlog's configuration object, read for its wrapper class without get_config() building
#: a dict on every log call (None if a structlog release renames it: get_config() then).
_STRUCTLOG_CONFIG = getattr(getattr(structlog, "_config", None), "_CONFIG", None)
#: (wrapper class, its threshold) of the last look-up: the threshold is a constant per class.
_level_cache: list[Any] = [None, None]


def _wrapper_class() -> Any:
    if _STRUCTLOG_CONFIG is not None:
        return getattr(_STRUCTLOG_CONFIG, "default_wrapper_class", None)
    return structlog.get_config()["wrapper_class"]


def _lowest_level() -> int | None:
    """The configured threshold (None while the application has configured nothing).

    Called on every log call, so it must be cheap when the answer is "off": one flag, one
    attribute and one comparison; the threshold itself is worked out once per configuration."""
    if not structlog.is_configured():
        return None
    wrapper = _wrapper_class()
    if wrapper is _level_cache[0]:
        cached: int = _level_cache[1]
        return cached
    effective = getattr(wrapper, "get_effective_level", None)
    level = 0  # a wrapper without a level (stdlib integration): its processors filter
    if effective is not None:
        try:
            level = effective(None)  # make_filtering_bound_logger's: a constant per class
        except TypeError:
            level = 0
    _level_cache[:] = [wrapper, level]
    return level


class Logger:
    """A structlog logger that writes nothing until structlog is configured; see the module."""

    __slots__ = ("_context", "_lazy", "_name")

    def __init__(
        self, name: str, context: Context | None = None, lazy: Callable[[], Context] | None = None
    ) -> None:
        self._name = name
        self._context: Context = context or {}
        self._lazy = lazy

    def bind(self, **context: Any) -> Logger:
        """A logger with more context."""
        return Logger(self._name, {**self._context, **context}, self._lazy)

    def bind_lazy(self, provider: Callable[[], Context]) -> Logger:
        """A logger whose context is ``provider()``, called only when a line is written."""
        return Logger(self._name, self._context, provider)

    def is_enabled_for(self, level: int) -> bool:
        """True when a line at ``level`` (``logging.DEBUG``...) would be written."""
        lowest = _lowest_level()
        return lowest is not None and level >= lowest

    def debug(self, event: str, **values: Any) -> None:
        """Log at DEBUG."""
        self._log(logging.DEBUG, "debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        """Log at INFO."""
        self._log(logging.INFO, "info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        """Log at WARNING."""
        self._log(logging.WARNING, "warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        """Log at ERROR."""
        self._log(logging.ERROR, "error", event, values)

    def _log(self, level: int, method: str, event: str, values: dict[str, Any]) -> None:
        lowest = _lowest_level()
        if lowest is None or level < lowest:
            return
        context = {**self._context, **(self._lazy() if self._lazy is not None else {}), **values}
        getattr(structlog.get_logger(self._name), method)(event, **context)


def get_logger(name: str) -> Logger:
    """The library's logger for ``name`` (``invsess.inv``, ``invsess.endpoint``, ...)."""
    return Logger(name)


def configure(level: str = "info") -> None:
    """For the command line: structlog key=value lines on stderr, ``level`` and above."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


__all__ = ["Logger", "configure", "get_logger"]
