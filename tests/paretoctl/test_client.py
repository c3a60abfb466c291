"""The edge SDK against the real service on a loopback port: decisions, cache + ETag, retries, fallback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from paretoctl.client import (
    AsyncPolicyClient,
    ForeignModelError,
    PolicyClient,
    PolicyClientError,
    PolicyRequestError,
    RetryPolicy,
    ServiceUnavailableError,
    apply_policy,
    parse_retry_after,
)
from paretoctl.service.app import create_app
from paretoctl.service.policy import select
from paretoctl.service.schema import FrontArtifact, ModelIdentity, load_front
from tests.fronts import make_front, write_front
from tests.service.test_app import AUTH, metric
from tests.service.test_live_server import LiveServer, make_settings

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.02, jitter=0.0)


@pytest.fixture
def front_file(tmp_path: Path) -> Path:
    return write_front(tmp_path / "srv" / "front.json",
                       make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=15, seed=3))


def app_settings(front_file: Path, **kw: Any) -> Any:
    """The service settings for ``front_file``; admin reloads may read fronts beside it."""
    return make_settings(front_file, reload_dir=front_file.parent, **kw)


def serve(front_file: Path, **kw: Any) -> LiveServer:
    """A live server for ``front_file`` (start it with ``with``)."""
    return LiveServer(create_app(app_settings(front_file, **kw)))


@pytest.fixture
def server(front_file: Path) -> Iterator[LiveServer]:
    with serve(front_file) as srv:
        yield srv


def count(server: LiveServer, route: str, status: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    return metric(text, "paretoctl_http_requests_total", route=route, status=status)


class Flaky:
    """ASGI wrapper failing the first ``times`` requests to ``path`` with ``status`` (and Retry-After)."""

    def __init__(self, app: Any, times: int, status: int, retry_after: str | None, path: str = "/policy") -> None:
        self.app, self.left, self.status, self.retry_after, self.path = app, times, status, retry_after, path
        self.failed = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and self.left > 0:
            self.left -= 1
            self.failed += 1
            headers = [(b"content-type", b"application/json")]
            if self.retry_after is not None:
                headers.append((b"retry-after", self.retry_after.encode()))
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"detail": "try later"}'})
            return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------ sync client


def test_policy_from_server_and_cache_populated(server: LiveServer, front_file: Path, tmp_path: Path) -> None:
    front = load_front(front_file)
    with PolicyClient(server.url, cache_dir=tmp_path / "cache", retry=FAST_RETRY) as client:
        d = client.get_policy(7.0, 1e5, channel="rayleigh")
        assert d.source == "server" and d.feasible
        assert d.config_id == select(front, 7.0, 1e5, channel="rayleigh").config_id
        cached = client.cache.load()
        assert cached is not None and cached[0].checksum == front.checksum and cached[1]
        assert client.cache.front_path.read_bytes() == front_file.read_bytes()
        n_front = count(server, "/front", "200")
        client.get_policy(8.0, 1e5)  # cache matches the server's checksum: no extra front request
        assert count(server, "/front", "200") == n_front


def test_fetch_front_revalidates_with_etag(server: LiveServer, front_file: Path, tmp_path: Path) -> None:
    with PolicyClient(server.url, cache_dir=tmp_path / "cache", retry=FAST_RETRY) as client:
        first = client.fetch_front()
        assert count(server, "/front", "200") == 1 and count(server, "/front", "304") == 0
        again = client.fetch_front()
        assert again == first
        assert count(server, "/front", "304") == 1 and count(server, "/front", "200") == 1
    # a new client on the same cache dir revalidates too (the ETag is on disk)
    with PolicyClient(server.url, cache_dir=tmp_path / "cache") as client2:
        client2.fetch_front()
    assert count(server, "/front", "304") == 2

    # the server's front changes: the next revalidation downloads it
    new = write_front(front_file.parent / "new.json", make_front(n_configs=4, seed=99))
    assert httpx.post(server.url + "/admin/reload", json={"path": str(new)}, headers=AUTH).status_code == 200
    with PolicyClient(server.url, cache_dir=tmp_path / "cache") as client3:
        got = client3.fetch_front()
        assert got.checksum == load_front(new).checksum and len(got.configs) == 4
        assert client3.cache.front_path.read_bytes() == new.read_bytes()
    assert count(server, "/front", "200") == 2


def test_decision_for_a_changed_front_refreshes_the_cache(server: LiveServer, front_file: Path,
                                                          tmp_path: Path) -> None:
    with PolicyClient(server.url, cache_dir=tmp_path / "cache") as client:
        client.get_policy(5.0, 1e5)
        new = write_front(front_file.parent / "new.json", make_front(n_configs=5, seed=42))
        httpx.post(server.url + "/admin/reload", json={"path": str(new)}, headers=AUTH)
        d = client.get_policy(5.0, 1e5)
        cached = client.cache.load()
        assert cached is not None and cached[0].checksum == d.front_checksum == load_front(new).checksum


@pytest.mark.parametrize(("status", "retry_after", "expected"), [
    (503, "3", [3.0, 3.0]),
    (429, "1", [1.0, 1.0]),
    (503, "120", [10.0, 10.0]),  # capped at max_retry_after_s
    (502, None, [0.01, 0.02]),  # no Retry-After: exponential backoff
])
def test_retries_honour_retry_after(front_file: Path, tmp_path: Path, status: int, retry_after: str | None,
                                    expected: list[float]) -> None:
    flaky = Flaky(create_app(app_settings(front_file)), times=2, status=status, retry_after=retry_after)
    with LiveServer(flaky) as srv, PolicyClient(srv.url, cache_dir=tmp_path / "c", retry=FAST_RETRY,
                                                deadline_s=60) as client:
        slept: list[float] = []
        client._sleep = slept.append
        d = client.get_policy(5.0, 1e5)
        assert d.source == "server" and d.feasible
        assert flaky.failed == 2 and slept == pytest.approx(expected)


def test_retries_exhausted_fall_back_to_cache(front_file: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(create_app(app_settings(front_file)), times=0, status=503, retry_after="0")
    with LiveServer(flaky) as srv, PolicyClient(srv.url, cache_dir=tmp_path / "c", retry=FAST_RETRY) as client:
        server_d = client.get_policy(5.0, 1e5)
        flaky.left = 100
        with caplog.at_level(logging.WARNING, logger="paretoctl.client"):
            d = client.get_policy(5.0, 1e5)
        assert flaky.failed == 3  # all attempts used
        assert d.source == "cache" and d.config_id == server_d.config_id
        assert any("HTTP 503" in w for w in d.warnings)
        assert "answering from cached front" in caplog.text


def test_client_errors_are_not_retried_and_not_hidden(server: LiveServer, tmp_path: Path) -> None:
    with PolicyClient(server.url, cache_dir=tmp_path / "c", retry=FAST_RETRY) as client:
        slept: list[float] = []
        client._sleep = slept.append
        with pytest.raises(PolicyRequestError) as info:
            client.get_policy(500.0, 10.0)  # snr out of range -> 422
        assert info.value.status == 422 and "snr" in info.value.detail and slept == []
        with pytest.raises(PolicyRequestError) as info:
            client.get_policy(5.0, 10.0, device="no-such-board")
        assert info.value.status == 404


def test_infeasible_is_a_decision_not_an_error(server: LiveServer, front_file: Path, tmp_path: Path) -> None:
    front = load_front(front_file)
    with PolicyClient(server.url, cache_dir=tmp_path / "c") as client:
        d = client.get_policy(5.0, 0.01)
    assert not d.feasible and d.source == "server"
    assert d.fastest_latency_ms == pytest.approx(min(c.latency.total_ms for c in front.configs))


def test_offline_fallback_after_the_server_stops(front_file: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with serve(front_file) as srv:
        client = PolicyClient(srv.url, cache_dir=tmp_path / "cache", retry=FAST_RETRY)
        online = client.get_policy(12.0, 1e5, channel="rayleigh")
        assert online.source == "server"
    with caplog.at_level(logging.WARNING, logger="paretoctl.client"):
        offline = client.get_policy(12.0, 1e5, channel="rayleigh")
    client.close()
    assert offline.source == "cache"
    assert offline.model_dump(exclude={"source", "warnings"}) == online.model_dump(exclude={"source", "warnings"})
    assert "ConnectError" in caplog.text
    # fetch_front falls back to the cache too (and refuses to when asked not to)
    with PolicyClient(srv.url, cache_dir=tmp_path / "cache", retry=FAST_RETRY) as c2:
        assert c2.fetch_front().checksum == online.front_checksum
        with pytest.raises(ServiceUnavailableError):
            c2.fetch_front(allow_cache=False)


def test_no_server_and_no_cache_is_a_clear_error(tmp_path: Path) -> None:
    from tests.service.test_live_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with PolicyClient(url, cache_dir=tmp_path / "empty", retry=FAST_RETRY) as client:
        with pytest.raises(ServiceUnavailableError, match="no cached front"):
            client.get_policy(5.0, 10.0)
        with pytest.raises(ServiceUnavailableError):
            client.fetch_front()


def test_corrupted_cache_is_not_trusted(front_file: Path, tmp_path: Path) -> None:
    with serve(front_file) as srv:
        client = PolicyClient(srv.url, cache_dir=tmp_path / "cache", retry=FAST_RETRY)
        client.get_policy(5.0, 1e5)
    doc = json.loads(client.cache.front_path.read_text())
    doc["configs"][0]["accuracy_test"]["awgn"][0]["mean"] = 1.0
    client.cache.front_path.write_text(json.dumps(doc))
    with pytest.raises(ServiceUnavailableError):
        client.get_policy(5.0, 1e5)
    client.close()


def test_offline_device_profile_needs_a_local_profile(front_file: Path, tmp_path: Path) -> None:
    from paretoctl.service.latency import load_profile
    from tests.service.test_live_server import DEVICES_DIR

    mcu = load_profile(DEVICES_DIR / "mcu-class.yaml")
    with serve(front_file) as srv:
        client = PolicyClient(srv.url, cache_dir=tmp_path / "cache", retry=FAST_RETRY,
                              profiles={"mcu-class": mcu})
        online = client.get_policy(5.0, 1e5, device="mcu-class")
    offline = client.get_policy(5.0, 1e5, device="mcu-class")
    assert offline.source == "cache" and offline.config_id == online.config_id
    assert offline.device_profile == "mcu-class"
    with pytest.raises(ServiceUnavailableError, match="jetson"):
        client.get_policy(5.0, 1e5, device="jetson-nano-class")
    client.close()


def test_retry_policy_delays() -> None:
    import random

    policy = RetryPolicy(backoff_s=0.1, max_backoff_s=0.5, jitter=0.2)
    rng = random.Random(0)
    for attempt, base in enumerate([0.1, 0.2, 0.4, 0.5, 0.5]):
        for _ in range(20):
            assert base * 0.8 <= policy.delay(attempt, rng=rng) <= base * 1.2


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# ----------------------------------------------------------------------------------- async client


def test_async_client_twin(front_file: Path, tmp_path: Path) -> None:
    front: FrontArtifact = load_front(front_file)
    flaky = Flaky(create_app(app_settings(front_file)), times=1, status=429, retry_after="2")

    async def scenario(srv: LiveServer) -> None:
        async with AsyncPolicyClient(srv.url, cache_dir=tmp_path / "ac", retry=FAST_RETRY, deadline_s=60) as client:
            slept: list[float] = []

            async def record(s: float) -> None:
                slept.append(s)

            client._sleep = record
            d = await client.get_policy(3.0, 1e5)
            assert d.source == "server" and d.config_id == select(front, 3.0, 1e5).config_id
            assert slept == [2.0]
            assert (await client.fetch_front()).checksum == front.checksum
            assert count(srv, "/front", "304") == 1
            inf = await client.get_policy(3.0, 0.001)
            assert not inf.feasible and inf.source == "server"
            with pytest.raises(PolicyRequestError):
                await client.get_policy(float("nan"), 10.0)

    with LiveServer(flaky) as srv:
        asyncio.run(scenario(srv))

    async def offline() -> None:
        async with AsyncPolicyClient(srv.url, cache_dir=tmp_path / "ac", retry=FAST_RETRY) as client:
            d = await client.get_policy(3.0, 1e5)
            assert d.source == "cache" and d.config_id == select(front, 3.0, 1e5).config_id
        async with AsyncPolicyClient(srv.url, cache_dir=tmp_path / "none", retry=FAST_RETRY) as client:
            with pytest.raises(ServiceUnavailableError):
                await client.get_policy(3.0, 1e5)

    asyncio.run(offline())


# ------------------------------------------------------------------------------------ apply_policy


def _front_for(model: Any, name: str) -> FrontArtifact:
    """A synthetic front for ``model`` (6 blocks, 100 patches, like timm's ``test_vit``) carrying its real identity."""
    from paretoctl.models.identity import model_identity

    front = make_front(depth=6, num_patches=100, n_configs=6, seed=1)
    identity = ModelIdentity.model_validate(model_identity(model, name))
    return front.model_copy(update={"provenance": front.provenance.model_copy(update={"model_identity": identity})})


def test_apply_policy_sets_the_schedule_on_a_timm_model() -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from paretoctl.models.patch import get_schedule

    torch.manual_seed(0)
    model = timm.create_model("test_vit").eval()
    front = _front_for(model, "test_vit")
    x = torch.randn(2, 3, 160, 160)
    with torch.inference_mode():
        reference = model(x)
    first = select(front, 20.0, 1e5)
    assert first.feasible and first.r is not None
    assert first.model_identity == front.provenance.model_identity
    apply_policy(model, first)
    assert list(get_schedule(model)) == first.r
    merged = front.configs[3]
    second = first.model_copy(update={"config_id": merged.id, "r": merged.r})
    assert apply_policy(model, second) is model
    assert list(get_schedule(model)) == merged.r and sum(merged.r) > 0
    with torch.inference_mode():
        out = model(x)
    assert out.shape == reference.shape
    unmerged = first.model_copy(update={"r": [0] * 6})
    apply_policy(model, unmerged)
    with torch.inference_mode():
        assert torch.allclose(model(x), reference, atol=1e-5)
    with pytest.raises(ValueError, match="infeasible"):
        apply_policy(model, select(front, 20.0, 1e-6))
    with pytest.raises(ValueError):
        apply_policy(model, first.model_copy(update={"r": [0] * 5}))


def test_apply_policy_refuses_a_decision_for_another_model() -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from paretoctl.models.identity import architecture_sha256, weights_sha256
    from paretoctl.models.patch import is_patched

    torch.manual_seed(0)
    built_for = timm.create_model("test_vit").eval()
    decision = select(_front_for(built_for, "test_vit"), 20.0, 1e5)

    torch.manual_seed(1)  # same architecture, other weights (e.g. a fine-tuned copy)
    retrained = timm.create_model("test_vit").eval()
    with pytest.raises(ForeignModelError, match="weights") as info:
        apply_policy(retrained, decision)
    assert "test_vit" in str(info.value)
    assert info.value.expected["weights_sha256"] == weights_sha256(built_for)
    assert info.value.found["weights_sha256"] == weights_sha256(retrained) != weights_sha256(built_for)
    assert not is_patched(retrained)  # refused before touching the model

    other_arch = timm.create_model("test_vit", depth=4).eval()  # another architecture
    with pytest.raises(ForeignModelError, match="architecture") as info:
        apply_policy(other_arch, decision)
    assert info.value.found == {"architecture_sha256": architecture_sha256(other_arch)}
    assert isinstance(info.value, PolicyClientError)

    # the weights changed in place after the front was built: refused too (the hash cache sees it)
    with torch.no_grad():
        built_for.head.bias.add_(1.0)
    with pytest.raises(ForeignModelError, match="weights"):
        apply_policy(built_for, decision)


# ------------------------------------------------------------------------- threshold configurations


def _threshold_front_for(model: Any, name: str) -> FrontArtifact:
    """:func:`_front_for` with three threshold configurations beside the fixed ones."""
    from paretoctl.models.identity import model_identity

    front = make_front(depth=6, num_patches=100, n_configs=6, n_thresholds=3, seed=1)
    identity = ModelIdentity.model_validate(model_identity(model, name))
    return front.model_copy(update={"provenance": front.provenance.model_copy(update={"model_identity": identity})})


def _decision_for(front: FrontArtifact, merging: str) -> Any:
    """A feasible decision of ``front`` choosing a configuration of this merging kind."""
    for snr in front.provenance.snr_grid_db:
        for total in sorted(c.latency.total_ms for c in front.configs):
            d = select(front, snr, total)
            if d.feasible and d.merging == merging:
                return d
    raise AssertionError(f"the front never chooses a {merging} configuration")


def test_apply_policy_sets_thresholds_and_switches_back_to_a_schedule() -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from paretoctl.models.patch import get_schedule, get_thresholds, is_patched

    torch.manual_seed(0)
    model = timm.create_model("test_vit").eval()
    front = _threshold_front_for(model, "test_vit")
    x = torch.randn(2, 3, 160, 160)
    with torch.inference_mode():
        reference = model(x)
    adaptive = _decision_for(front, "thresholds")
    assert adaptive.thresholds == front.config(adaptive.config_id).thresholds
    assert apply_policy(model, adaptive) is model  # unpatched: apply_merging(thresholds=...)
    assert is_patched(model) and get_thresholds(model) == tuple(adaptive.thresholds)
    fixed = _decision_for(front, "proportions")
    apply_policy(model, fixed)  # patched: back to a fixed schedule
    assert get_thresholds(model) is None and list(get_schedule(model)) == fixed.r
    apply_policy(model, adaptive)  # patched: set_thresholds
    assert get_thresholds(model) == tuple(adaptive.thresholds) and get_schedule(model) == (0,) * 6
    # A threshold of 2 (>= 1) merges nothing: the unmerged model's outputs, whatever r says.
    apply_policy(model, adaptive.model_copy(update={"thresholds": [2.0] * 6}))
    with torch.inference_mode():
        assert torch.allclose(model(x), reference, atol=1e-5)
    # Thresholds below -1 merge ToMe's maximum in every block: fewer tokens, other outputs.
    apply_policy(model, adaptive.model_copy(update={"thresholds": [-2.0] * 6}))
    with torch.inference_mode():
        assert not torch.allclose(model(x), reference, atol=1e-3)
    with pytest.raises(ValueError, match="one value per block"):
        apply_policy(model, adaptive.model_copy(update={"thresholds": [0.9] * 5}))


def test_apply_policy_refuses_a_threshold_decision_for_another_model() -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from paretoctl.models.patch import is_patched

    torch.manual_seed(0)
    decision = _decision_for(_threshold_front_for(timm.create_model("test_vit").eval(), "test_vit"), "thresholds")
    torch.manual_seed(1)
    retrained = timm.create_model("test_vit").eval()
    with pytest.raises(ForeignModelError, match="weights"):
        apply_policy(retrained, decision)
    assert not is_patched(retrained)


def test_threshold_decisions_online_and_offline_carry_the_thresholds(tmp_path: Path) -> None:
    front = make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=12, n_thresholds=5, seed=3)
    front_file = write_front(tmp_path / "srv" / "front.json", front)
    snr, budget = next((s, t) for s in front.provenance.snr_grid_db
                       for t in sorted(c.latency.total_ms for c in front.configs)
                       if select(front, s, t).merging == "thresholds")
    with serve(front_file) as srv:
        client = PolicyClient(srv.url, cache_dir=tmp_path / "cache", retry=FAST_RETRY)
        online = client.get_policy(snr, budget)
    offline = client.get_policy(snr, budget)
    client.close()
    assert online.source == "server" and offline.source == "cache"
    assert online.merging == offline.merging == "thresholds"
    assert online.thresholds == offline.thresholds == front.config(online.config_id or "").thresholds
    assert offline.model_dump(exclude={"source", "warnings"}) == online.model_dump(exclude={"source", "warnings"})
