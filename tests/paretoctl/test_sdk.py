"""The SDK's failure behaviour against real misbehaving servers on 127.0.0.1, and its I/O-free core.

Servers here: one that accepts connections and never answers, one that answers garbage with 200 or
409, and the real service with an unwritable cache directory on the device side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from paretoctl.client import (
    AsyncPolicyClient,
    FrontCache,
    MalformedResponseError,
    PolicyClient,
    PolicyRequestError,
    RetryPolicy,
    ServiceUnavailableError,
)
from paretoctl.sdk_core import ClientCore, HttpGet, Sleep
from paretoctl.service.policy import select
from paretoctl.service.schema import load_front
from tests.fronts import make_front, write_front
from tests.paretoctl.test_client import count, serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def front_file(tmp_path: Path) -> Path:
    return write_front(tmp_path / "srv" / "front.json", make_front(depth=6, n_configs=8, seed=5))


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def seed_cache(cache_dir: Path, url: str, front_file: Path) -> None:
    """Put ``front_file`` in the SDK's cache for ``url``, as an earlier online call would have."""
    FrontCache(cache_dir, url).store(front_file.read_bytes(), None)


# ------------------------------------------------------------------------------------- deadline


def test_silent_server_cached_answer_within_the_deadline(front_file: Path, tmp_path: Path) -> None:
    """Old behaviour: 4 tries x 2 s timeout + backoff, ~8.7 s. Now one deadline bounds the call."""
    front = load_front(front_file)
    with silent_server() as url:
        seed_cache(tmp_path / "c", url, front_file)
        with PolicyClient(url, cache_dir=tmp_path / "c", deadline_s=0.4) as client:
            t0 = time.monotonic()
            d = client.get_policy(5.0, 1e5)
            elapsed = time.monotonic() - t0
            assert d.source == "cache" and d.config_id == select(front, 5.0, 1e5).config_id
            assert any("ReadTimeout" in w for w in d.warnings)
            assert 0.35 <= elapsed < 0.9, elapsed
            t0 = time.monotonic()  # a per-call deadline (a device with a 150 ms budget)
            assert client.get_policy(5.0, 1e5, deadline_s=0.15).source == "cache"
            assert 0.1 <= time.monotonic() - t0 < 0.6


def test_silent_server_async_cached_answer_within_the_deadline(front_file: Path, tmp_path: Path) -> None:
    async def scenario(url: str) -> float:
        async with AsyncPolicyClient(url, cache_dir=tmp_path / "c", deadline_s=0.3) as client:
            t0 = time.monotonic()
            d = await client.get_policy(5.0, 1e5)
            assert d.source == "cache"
            return time.monotonic() - t0

    with silent_server() as url:
        seed_cache(tmp_path / "c", url, front_file)
        elapsed = asyncio.run(scenario(url))
    assert 0.25 <= elapsed < 0.8, elapsed


def test_silent_server_without_cache_raises_within_the_deadline(tmp_path: Path) -> None:
    with silent_server() as url, PolicyClient(url, cache_dir=tmp_path / "none", deadline_s=0.2) as client:
        t0 = time.monotonic()
        with pytest.raises(ServiceUnavailableError, match="no cached front"):
            client.get_policy(5.0, 1e5)
        assert time.monotonic() - t0 < 0.7


# ------------------------------------------------------------------------------- garbage answers


def garbage_server(status: int, body: bytes) -> ThreadingHTTPServer:
    """A real HTTP server on 127.0.0.1 answering every GET with ``status`` and ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.mark.parametrize(("status", "body", "message"), [
    (200, b"<html>captive portal</html>", "is not JSON"),
    (200, b'{"feasible": true}', "channel: missing field"),
    (200, b'[1, 2]', "is not a decision"),
    (200, b'{"feasible": "maybe", "channel": "awgn"}', "feasible"),
    (409, b'{"detail": "nothing fits"}', "decision: missing field"),
    (409, b'{"decision": {"feasible": false}}', "is not a decision: channel: missing field"),
    (409, b"\xff\xfe", "is not JSON"),
])
def test_malformed_answer_is_a_clear_sdk_error(tmp_path: Path, status: int, body: bytes, message: str) -> None:
    srv = garbage_server(status, body)
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with PolicyClient(url, cache_dir=tmp_path / "c") as client, \
                pytest.raises(MalformedResponseError, match=message) as info:
            client.get_policy(5.0, 10.0)
        assert f"HTTP {status}" in str(info.value) and "\n" not in str(info.value)

        async def twin() -> None:
            async with AsyncPolicyClient(url, cache_dir=tmp_path / "c") as client:
                await client.get_policy(5.0, 10.0)

        with pytest.raises(MalformedResponseError, match=message):
            asyncio.run(twin())
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_threshold_decision_without_its_thresholds_is_malformed(tmp_path: Path) -> None:
    """A device must never apply a threshold configuration's rounded-mean r as if it were the schedule."""
    front = make_front(depth=6, n_configs=6, n_thresholds=5, seed=5)
    good = next(d for d in (select(front, 20.0, c.latency.total_ms) for c in front.configs)
                if d.merging == "thresholds")
    assert good.thresholds is not None
    body = json.dumps({**good.model_dump(mode="json"), "thresholds": None}).encode()
    srv = garbage_server(200, body)
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with PolicyClient(url, cache_dir=tmp_path / "c") as client, \
                pytest.raises(MalformedResponseError, match="thresholds must be given exactly when merging"):
            client.get_policy(5.0, 10.0)
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------------------- unwritable cache


def test_unwritable_cache_keeps_the_front_in_memory(front_file: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")  # unwritable even for root
    with caplog.at_level(logging.WARNING, logger="paretoctl.client"), serve(front_file) as srv:
        client = PolicyClient(srv.url, cache_dir=blocker / "cache")
        for snr in (0.0, 5.0, 10.0, 15.0):
            assert client.get_policy(snr, 1e5).source == "server"
        assert count(srv, "/front", "200") == 1  # old code: one full download per call
        client.fetch_front()
        assert count(srv, "/front", "304") == 1 and count(srv, "/front", "200") == 1  # ETag kept too
        assert client.cache.memory_only
    writes = [r for r in caplog.records if "cannot write the front cache" in r.getMessage()]
    assert len(writes) == 1  # warned once
    assert not blocker.with_name("cache").exists()
    # the server is gone: the in-memory front still answers
    with caplog.at_level(logging.WARNING, logger="paretoctl.client"):
        d = client.get_policy(5.0, 1e5)
    client.close()
    assert d.source == "cache" and d.config_id == select(load_front(front_file), 5.0, 1e5).config_id


# ------------------------------------------------------------------------------ offline = online


def test_offline_refuses_what_the_server_refuses(front_file: Path, tmp_path: Path) -> None:
    with serve(front_file) as srv:
        client = PolicyClient(srv.url, cache_dir=tmp_path / "c", retry=RetryPolicy(attempts=1))
        assert client.get_policy(5.0, 1e5).source == "server"  # caches the front
        online = []
        for kw in ({"snr_db": 500.0}, {"snr_db": 5.0, "channel": "rician"}):
            with pytest.raises(PolicyRequestError) as info:
                client.get_policy(**{"latency_ms": 10.0, **kw})  # type: ignore[arg-type]
            online.append(info.value.status)
    offline = []
    for kw in ({"snr_db": 500.0}, {"snr_db": 5.0, "channel": "rician"}):
        with pytest.raises(PolicyRequestError) as info:
            client.get_policy(**{"latency_ms": 10.0, **kw})  # type: ignore[arg-type]
        offline.append(info.value.status)
    client.close()
    assert online == offline == [422, 404]


# ------------------------------------------------------------------------------- the core alone


def response(status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers,
                          request=httpx.Request("GET", "http://policy.test/policy"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_core_gives_up_when_the_backoff_would_pass_the_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    core = ClientCore("http://policy.test", tmp_path, RetryPolicy(attempts=5, backoff_s=0.3, jitter=0.0),
                      None, deadline_s=1.0, timeout_s=None, auto_sync=False, seed=0, clock=clock)
    op = core.get_policy(5.0, 10.0, None, None, None, None, None)
    first = next(op)
    assert isinstance(first, HttpGet) and first.path == "/policy" and first.timeout_s == pytest.approx(1.0)
    assert first.params == {"snr": "5.0", "latency": "10.0"}
    clock.now += 0.2
    backoff = op.send(response(503))
    assert isinstance(backoff, Sleep) and backoff.seconds == pytest.approx(0.3)
    clock.now += 0.3
    second = op.send(None)
    assert isinstance(second, HttpGet) and second.timeout_s == pytest.approx(0.5)  # what is left
    clock.now += 0.3  # 0.2 s left; the next backoff (0.6 s) would pass the deadline: no sleep, fall back
    with pytest.raises(ServiceUnavailableError, match="would pass the 1 s deadline"):
        op.send(httpx.ConnectError("refused"))


def test_core_caps_each_try_at_timeout(tmp_path: Path) -> None:
    core = ClientCore("http://policy.test", tmp_path, None, None, deadline_s=5.0, timeout_s=0.5,
                      auto_sync=False, seed=0, clock=FakeClock())
    action = next(core.fetch_front(True, None))
    assert isinstance(action, HttpGet) and action.path == "/front" and action.timeout_s == 0.5


def test_core_retries_nothing_once_the_deadline_is_spent(tmp_path: Path) -> None:
    clock = FakeClock()
    core = ClientCore("http://policy.test", tmp_path, RetryPolicy(backoff_s=0.0, jitter=0.0), None,
                      deadline_s=1.0, timeout_s=None, auto_sync=False, seed=0, clock=clock)
    op = core.get_policy(5.0, 10.0, None, None, None, None, None)
    next(op)
    clock.now += 1.0  # the first try took the whole deadline
    with pytest.raises(ServiceUnavailableError, match=r"ReadTimeout: slow; .*1 s deadline"):
        op.send(httpx.ReadTimeout("slow"))


def test_bad_deadlines_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="deadline_s"):
        PolicyClient("http://policy.test", cache_dir=tmp_path, deadline_s=0)
    with PolicyClient("http://policy.test", cache_dir=tmp_path) as client, \
            pytest.raises(ValueError, match="deadline_s"):
        client.get_policy(5.0, 10.0, deadline_s=-1)


# ------------------------------------------------------------------------------------ imports


def test_importing_the_sdk_imports_neither_torch_nor_fastapi() -> None:
    code = ("import sys, json\n"
            "import paretoctl.client\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'timm', 'fastapi', 'starlette', 'uvicorn', 'pydantic_settings'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
