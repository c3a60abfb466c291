"""The /policy fast path: what it accepts, that it is taken, and that it answers byte for byte like FastAPI."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from paretoctl.service.app import create_app, get_state
from paretoctl.service.fastpath import PolicyQuery, parse_policy_query
from paretoctl.service.schema import load_front
from tests.fronts import make_front, write_front
from tests.service.test_live_server import LiveServer, live_app, make_settings


@pytest.mark.parametrize(("qs", "expected"), [
    (b"snr=7.5&latency=20", PolicyQuery(7.5, 20.0)),
    (b"latency=1e3&snr=-5", PolicyQuery(-5.0, 1000.0)),
    (b"snr=0&latency=0.5&min_accuracy=0.8&device=mcu-class&channel=awgn",
     PolicyQuery(0.0, 0.5, 0.8, "mcu-class", "awgn")),
    (b"snr=100&latency=1000000", PolicyQuery(100.0, 1e6)),
])
def test_parse_accepts_plain_queries(qs: bytes, expected: PolicyQuery) -> None:
    assert parse_policy_query(qs) == expected


@pytest.mark.parametrize("qs", [
    b"", b"latency=10", b"snr=5", b"snr=5&latency=10&snr=6", b"snr=5&latency=10&foo=1", b"snr=&latency=10",
    b"snr=nan&latency=10", b"snr=inf&latency=10", b"snr=.5&latency=10", b"snr=1_0&latency=10",
    b"snr=5&latency=0", b"snr=5&latency=-1", b"snr=-50.5&latency=10", b"snr=5&latency=1e999",
    b"snr=5&latency=10&min_accuracy=1.01", b"snr=%35&latency=10", b"snr=5&latency=10&device=a+b",
    b"snr=5&latency=10&device=" + b"x" * 65, b"snr=5&latency=10&channel=" + b"x" * 33, b"snr=5&latency",
    "snr=5&latency=10&device=caf\u00e9".encode(),
])
def test_parse_defers_anything_unusual_to_fastapi(qs: bytes) -> None:
    assert parse_policy_query(qs) is None


@pytest.fixture(scope="module")
def front_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_front(tmp_path_factory.mktemp("fp") / "front.json",
                       make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=25, n_thresholds=10, seed=21))


@pytest.fixture(scope="module")
def servers(front_file: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    with live_app(front_file) as fast, live_app(front_file, fast_path=False) as slow:
        yield fast, slow


def _queries() -> list[str]:
    rng = random.Random(1)
    out = []
    for _ in range(150):
        q: dict[str, object] = {"snr": rng.choice([round(rng.uniform(-60, 110), 3), -5, 0, 20, 1e2]),
                                "latency": rng.choice([round(rng.uniform(0.01, 40), 4), 1e5, 0, -1, 2e6])}
        if rng.random() < 0.3:
            q["min_accuracy"] = rng.choice([0.2, 0.5, 0.9, 1.5])
        if rng.random() < 0.3:
            q["device"] = rng.choice(["default", "mcu-class", "jetson-nano-class", "nope"])
        if rng.random() < 0.3:
            q["channel"] = rng.choice(["awgn", "rayleigh", "rician"])
        out.append(urlencode(q))
    return [*out, "snr=1e1&latency=5e1", "snr=5&latency=10&snr=6", "snr=nan&latency=1", "latency=3", ""]


def test_fast_and_fastapi_paths_answer_identically(servers: tuple[LiveServer, LiveServer], front_file: Path) -> None:
    fast, slow = servers
    statuses, kinds = set(), set()
    # every configuration's own latency as the budget: the policy picks fixed and threshold ones
    budgets = [urlencode({"snr": 20, "latency": c.latency.total_ms}) for c in load_front(front_file).configs]
    with httpx.Client(base_url=fast.url) as f, httpx.Client(base_url=slow.url) as s:
        for qs in [*_queries(), *budgets]:
            a, b = f.get("/policy?" + qs), s.get("/policy?" + qs)
            assert (a.status_code, a.content) == (b.status_code, b.content), qs
            assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
            statuses.add(a.status_code)
            if a.status_code == 200:
                kinds.add(a.json()["merging"])
    assert statuses == {200, 404, 409, 422}  # the comparison covered every kind of answer
    assert kinds == {"proportions", "thresholds"}  # and decisions of both merging kinds


def test_fast_path_is_taken_and_fastapi_handles_the_rest(front_file: Path) -> None:
    app = create_app(make_settings(front_file))

    def broken_state() -> None:
        raise RuntimeError("FastAPI route reached")

    app.dependency_overrides[get_state] = broken_state
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get("/policy", params={"snr": 5, "latency": 1e5}).status_code == 200  # never reached FastAPI
        # a duplicate key goes the FastAPI way, where the broken dependency turns it into a 500
        assert c.get("/policy?snr=5&latency=1e5&snr=4").status_code == 500
