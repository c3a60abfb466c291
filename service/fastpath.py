"""A fast path for well-formed ``GET /policy`` requests.

FastAPI's per-request parameter and dependency machinery costs roughly ten times what the policy
itself does (about 200 us against 15 us on the reference machine), and ``/policy`` is the route
edge devices hit in a loop. This ASGI middleware answers the requests whose query string is
*plainly* valid (known keys, each once, numbers in a simple decimal form and inside the documented
bounds, no percent-encoding) by calling the very same answer function as the FastAPI route, so the
bytes on the wire are identical. Anything else (a missing or malformed parameter, an unusual
number format, no front loaded) falls through to the FastAPI route, which produces the documented
422/503 answers. The FastAPI route stays the contract: it is what ``/openapi.json`` describes, and
a test checks that both paths answer the same requests with the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from paretoctl.service.settings import LATENCY_MAX_MS, SNR_MAX_DB, SNR_MIN_DB

_NUMBER = re.compile(r"-?\d{1,12}(?:\.\d{1,17})?(?:[eE][-+]?\d{1,3})?")
"""Numbers the fast path parses itself; other spellings (``inf``, ``.5``, ``1_0``) go to FastAPI."""

_KEYS = frozenset({"snr", "latency", "min_accuracy", "device", "channel"})
_MAX_LEN = {"device": 64, "channel": 32}


@dataclass(frozen=True)
class PolicyQuery:
    """The parameters of ``GET /policy``, already validated against the documented bounds."""

    snr: float
    latency: float
    min_accuracy: float | None = None
    device: str | None = None
    channel: str | None = None


Answer = Callable[[PolicyQuery], Awaitable[tuple[int, bytes] | None]]
"""Produces ``(status, JSON body)``, or None to let the FastAPI route answer (e.g. no front loaded)."""


def parse_policy_query(query_string: bytes) -> PolicyQuery | None:
    """The query if it is plainly valid, else None (the caller then defers to FastAPI).

    Plainly valid: ASCII, no ``%``/``+`` encoding, only known keys, each at most once, ``snr`` and
    ``latency`` present, numbers matching a plain decimal form and inside the bounds that the
    FastAPI route declares, strings within their declared lengths.
    """
    if not query_string or b"%" in query_string or b"+" in query_string:
        return None
    try:
        text = query_string.decode("ascii")
    except UnicodeDecodeError:
        return None
    values: dict[str, str] = {}
    for part in text.split("&"):
        key, sep, value = part.partition("=")
        if not sep or not value or key not in _KEYS or key in values:
            return None
        values[key] = value
    if "snr" not in values or "latency" not in values:
        return None
    snr = _number(values["snr"])
    latency = _number(values["latency"])
    if snr is None or latency is None or not SNR_MIN_DB <= snr <= SNR_MAX_DB or not 0 < latency <= LATENCY_MAX_MS:
        return None
    min_accuracy = None
    if "min_accuracy" in values:
        min_accuracy = _number(values["min_accuracy"])
        if min_accuracy is None or not 0.0 <= min_accuracy <= 1.0:
            return None
    for key, limit in _MAX_LEN.items():
        if key in values and len(values[key]) > limit:
            return None
    return PolicyQuery(snr=snr, latency=latency, min_accuracy=min_accuracy, device=values.get("device"),
                       channel=values.get("channel"))


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


class PolicyFastPath:
    """ASGI middleware: answer plainly valid ``GET /policy`` directly, pass everything else on.

    Args:
        app: the FastAPI app (everything not handled here).
        answer: the shared answer function (the FastAPI route calls it too).
        route: the FastAPI route object for ``/policy``, put in ``scope["route"]`` so that the
            metrics middleware labels fast-path requests exactly like routed ones.
    """

    def __init__(self, app: ASGIApp, answer: Answer, route: Any = None) -> None:
        self.app = app
        self.answer = answer
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/policy" and scope["method"] == "GET":
            query = parse_policy_query(scope["query_string"])
            if query is not None:
                result = await self.answer(query)
                if result is not None:
                    status, body = result
                    if self.route is not None:
                        scope["route"] = self.route
                    await send({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
