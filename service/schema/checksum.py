"""The front's checksum: SHA-256 over the canonical JSON of the parsed document without ``checksum``.

Computed on the parsed JSON rather than on a pydantic re-dump, so that any writer and any reader
agree byte for byte (``sort_keys``, compact separators, ``ensure_ascii=False``, ``allow_nan=False``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paretoctl.service.schema.models import FrontArtifact

CHECKSUM_PREFIX = "sha256:"


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """The canonical UTF-8 JSON bytes that the checksum is computed over."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def compute_checksum(doc: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` over the canonical JSON of ``doc`` without its ``checksum`` key.

    Args:
        doc: the parsed JSON document (a plain dict, as ``json.loads`` returns it).
    """
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return CHECKSUM_PREFIX + hashlib.sha256(canonical_json(body)).hexdigest()


def artifact_document(artifact: FrontArtifact) -> dict[str, Any]:
    """The JSON document of ``artifact`` with its checksum computed (what ``dump_front`` writes).

    The checksum is computed on the round-tripped JSON so that it matches what a reader parses.
    """
    body = artifact.model_dump(mode="json", exclude={"checksum"})
    body = json.loads(json.dumps(body, allow_nan=False))
    return {"schema_version": body["schema_version"], "checksum": compute_checksum(body),
            **{k: v for k, v in body.items() if k != "schema_version"}}
