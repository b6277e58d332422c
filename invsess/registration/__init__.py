"""Registration (RFC 3261 §10, RFC 5626), sans-IO: the client that keeps a binding at a
registrar (:class:`Registration`) and a small registrar that keeps bindings
(:class:`Registrar`). See ``docs/registration.md``."""

from invsess.registration.client import (
    REFRESH_MARGIN,
    RegInput,
    Registered,
    Registration,
    RegistrationEvent,
    RegistrationFailed,
    RegState,
    Unregistered,
    same_binding,
)
from invsess.registration.registrar import Binding, Registrar

__all__ = [
    "REFRESH_MARGIN",
    "Binding",
    "RegInput",
    "RegState",
    "Registered",
    "Registrar",
    "Registration",
    "RegistrationEvent",
    "RegistrationFailed",
    "Unregistered",
    "same_binding",
]
