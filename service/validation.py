"""One way to turn a pydantic ``ValidationError`` into messages that name the field.

Every reader of user input (build configs, front artifacts, device profiles, HTTP query parameters,
SDK responses) reports errors as ``field.path: message``, one per problem, so that a person reading
one line knows which field is wrong. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

__all__ = ["field_messages", "format_validation_error"]


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "missing field"
    if kind == "extra_forbidden":
        return "unknown key"
    return str(err.get("msg", "")).removeprefix("Value error, ")


def field_messages(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """``loc.path: message`` for each pydantic error dict (``ValidationError.errors()``)."""
    out = []
    for err in errors:
        field = ".".join(str(p) for p in err.get("loc", ()))
        msg = _message(err)
        out.append(f"{field}: {msg}" if field else msg)
    return out


def format_validation_error(exc: ValidationError, limit: int = 5, sep: str = "; ") -> str:
    """The first ``limit`` field messages of ``exc`` joined by ``sep``, with a count of the rest."""
    parts = field_messages(exc.errors()[:limit])
    extra = exc.error_count() - limit
    if extra > 0:
        parts.append(f"... and {extra} more")
    return sep.join(parts)
