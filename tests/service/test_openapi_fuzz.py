"""Schemathesis against the live service: no 5xx, and every response conforms to /openapi.json.

The schema is loaded from the running server's ``/openapi.json`` and each operation is driven with
schemathesis' Hypothesis strategies directly (schemathesis 4's lazy pytest fixture integration does
not work with the installed pytest). Bounded: at most 50 generated requests per operation and mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from paretoctl.service.app import create_app
from paretoctl.service.settings import Settings
from tests.fronts import make_front, write_front
from tests.service.test_live_server import LiveServer, live_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
MAX_EXAMPLES = 50

_PATHS = create_app(Settings()).openapi()["paths"]
OPERATIONS = sorted((method.upper(), path) for path, item in _PATHS.items() for method in item)
CASES = [(m, p, mode) for m, p in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         # negative data needs an input to break: operations without parameters or body get positive only
         if mode is GenerationMode.POSITIVE or {"parameters", "requestBody"} & set(_PATHS[p][m.lower()])]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    path: Path = write_front(tmp_path_factory.mktemp("fuzz") / "front.json",
                             make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=12, seed=5))
    with live_app(path) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    ops = [r.ok() for r in api_schema.get_all_operations()]  # type: ignore[union-attr]  # Err raises here
    live_ops = sorted((op.method.upper(), op.path) for op in ops)
    assert live_ops == OPERATIONS
    assert ("GET", "/policy") in live_ops and ("POST", "/admin/reload") in live_ops


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_conforms_to_the_contract(api_schema: schemathesis.BaseSchema, live: LiveServer, method: str,
                                            path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    calls = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        calls.append(case.call_and_validate(base_url=live.url, checks=checks, timeout=5).status_code)

    run()
    assert calls and all(status < 500 for status in calls)
