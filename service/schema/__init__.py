"""The front artifact (``front.json``): models, checksum and I/O, re-exported from one place.

The artifact is the one thing that travels from the (torch) build to the (torch-free) service and
edge devices, so its reader is strict: a document that is malformed, of a schema version this code
does not know, or whose checksum does not match its content is refused with a
:class:`FrontLoadError` whose ``reason`` says which, and whose message names the offending field.
See ``docs/internals.md`` for the layout.

* :mod:`.models`: the pydantic models and their invariants;
* :mod:`.consistency`: ``r``, ``proportions``, ``tokens_per_layer`` and ``tokens_sent`` agree;
* :mod:`.checksum`: canonical JSON and its SHA-256;
* :mod:`.io`: atomic :func:`dump_front`, strict :func:`load_front`;
* :mod:`.errors`: :class:`FrontLoadError`.

Example:
    >>> art = load_front("runs/build/front.json")  # doctest: +SKIP
    >>> art.provenance.snr_grid_db                   # doctest: +SKIP
    [-5.0, 0.0, 5.0, 10.0, 20.0]
"""

from paretoctl.service.schema.checksum import CHECKSUM_PREFIX, artifact_document, canonical_json, compute_checksum
from paretoctl.service.schema.errors import FrontLoadError, FrontLoadReason
from paretoctl.service.schema.io import (
    dump_front,
    front_from_document,
    load_front,
    parse_front_document,
    read_front_bytes,
)
from paretoctl.service.schema.models import (
    KNOWN_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    AccuracyAtSnr,
    ChannelSpec,
    ConfigSource,
    ConfigTiming,
    CostDistribution,
    CostSummary,
    DeviceProfile,
    FrontArtifact,
    FrontConfig,
    Gflops,
    LatencyRecord,
    LatencySource,
    LatencyStatistic,
    Measurements,
    MergingKind,
    ModelIdentity,
    ParetoSet,
    PartTiming,
    Provenance,
    SplitSizes,
    TimingMachine,
)

__all__ = [
    "CHECKSUM_PREFIX",
    "KNOWN_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
    "AccuracyAtSnr",
    "ChannelSpec",
    "ConfigSource",
    "ConfigTiming",
    "CostDistribution",
    "CostSummary",
    "DeviceProfile",
    "FrontArtifact",
    "FrontConfig",
    "FrontLoadError",
    "FrontLoadReason",
    "Gflops",
    "LatencyRecord",
    "LatencySource",
    "LatencyStatistic",
    "Measurements",
    "MergingKind",
    "ModelIdentity",
    "ParetoSet",
    "PartTiming",
    "Provenance",
    "SplitSizes",
    "TimingMachine",
    "artifact_document",
    "canonical_json",
    "compute_checksum",
    "dump_front",
    "front_from_document",
    "load_front",
    "parse_front_document",
    "read_front_bytes",
]
