"""The one error a front reader raises, with a machine-readable reason."""

from __future__ import annotations

from typing import Literal

FrontLoadReason = Literal["malformed", "version", "checksum"]


class FrontLoadError(ValueError):
    """A front document was refused.

    Attributes:
        reason: ``"malformed"`` (not JSON, wrong structure or a broken invariant), ``"version"``
            (a schema version this code does not know) or ``"checksum"`` (content does not match
            the recorded checksum: corrupted or edited by hand).
        message: what is wrong, naming the field where there is one.
    """

    def __init__(self, reason: FrontLoadReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: FrontLoadReason = reason
        self.message = message
