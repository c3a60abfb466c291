"""The service over real HTTP: uvicorn on a loopback port, httpx as the client."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paretoctl.service.latency import load_profile
from paretoctl.service.policy import select
from paretoctl.service.schema import FrontArtifact, compute_checksum, load_front
from paretoctl.service.settings import Settings
from tests.fronts import front_document, make_front, write_document, write_front
from tests.service.test_live_server import ADMIN_TOKEN, DEVICES_DIR, LiveServer, live_app

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def front_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("front") / "front.json"
    return write_front(path, make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=20, seed=7))


@pytest.fixture(scope="module")
def front(front_file: Path) -> FrontArtifact:
    return load_front(front_file)


@pytest.fixture(scope="module")
def server(front_file: Path) -> Iterator[LiveServer]:
    with live_app(front_file) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ------------------------------------------------------------------------------------------ /policy


def test_policy_happy_path_matches_the_library(http: httpx.Client, front: FrontArtifact) -> None:
    fastest = min(c.latency.total_ms for c in front.configs)
    r = http.get("/policy", params={"snr": 3.3, "latency": fastest * 1.5})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    local = select(front, 3.3, fastest * 1.5)
    assert body["feasible"] is True and body["config_id"] == local.config_id
    assert body["source"] == "server" and body["front_checksum"] == front.checksum
    assert body["snr_used_db"] == [0.0, 5.0] and body["r"] == local.r


def test_policy_channel_and_device(http: httpx.Client, front: FrontArtifact) -> None:
    r = http.get("/policy", params={"snr": 10, "latency": 1e5, "channel": "rayleigh", "device": "mcu-class"})
    assert r.status_code == 200
    body = r.json()
    prof = load_profile(DEVICES_DIR / "mcu-class.yaml")
    local = select(front, 10, 1e5, channel="rayleigh", profile=prof)
    assert body["channel"] == "rayleigh" and body["device_profile"] == "mcu-class"
    assert body["config_id"] == local.config_id
    assert body["latency"]["total_ms"] == pytest.approx(local.latency.total_ms if local.latency else -1)


def test_policy_extrapolated_below_grid(http: httpx.Client) -> None:
    body = http.get("/policy", params={"snr": -20, "latency": 1e5}).json()
    assert body["extrapolated"] is True and body["snr_used_db"] == [-5.0] and body["warnings"]


@pytest.mark.parametrize(("params", "name"), [
    ({"latency": 10}, "snr"),
    ({"snr": 5}, "latency"),
    ({"snr": "abc", "latency": 10}, "snr"),
    ({"snr": "nan", "latency": 10}, "snr"),
    ({"snr": "NaN", "latency": 10}, "snr"),
    ({"snr": "inf", "latency": 10}, "snr"),
    ({"snr": 5, "latency": "-inf"}, "latency"),
    ({"snr": 5, "latency": "Infinity"}, "latency"),
    ({"snr": -51, "latency": 10}, "snr"),
    ({"snr": 100.5, "latency": 10}, "snr"),
    ({"snr": 5, "latency": 0}, "latency"),
    ({"snr": 5, "latency": -3}, "latency"),
    ({"snr": 5, "latency": 2e6}, "latency"),
    ({"snr": 5, "latency": "ten"}, "latency"),
    ({"snr": 5, "latency": 10, "min_accuracy": 1.5}, "min_accuracy"),
    ({"snr": 5, "latency": 10, "min_accuracy": "nan"}, "min_accuracy"),
])
def test_policy_rejects_bad_numbers_with_422_naming_the_parameter(http: httpx.Client, params: dict[str, Any],
                                                                   name: str) -> None:
    r = http.get("/policy", params=params)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["loc"] == ["query", name] and e["msg"].startswith(f"{name}: ") for e in errors), errors


def test_infeasible_budget_is_a_documented_409(http: httpx.Client, front: FrontArtifact) -> None:
    fastest = min(c.latency.total_ms for c in front.configs)
    r = http.get("/policy", params={"snr": 5, "latency": fastest / 2})
    assert r.status_code == 409
    body = r.json()
    assert body["fastest_latency_ms"] == pytest.approx(fastest)
    assert f"{fastest:.4g}" in body["detail"]
    assert body["decision"]["feasible"] is False and body["decision"]["config_id"] is None


def test_min_accuracy_infeasible_is_409_with_best_accuracy(http: httpx.Client, front: FrontArtifact) -> None:
    r = http.get("/policy", params={"snr": -5, "latency": 1e5, "min_accuracy": 0.999})
    assert r.status_code == 409
    body = r.json()
    best = max(c.accuracy_val["awgn"][0].mean for c in front.configs)
    assert body["best_accuracy_within_budget"] == pytest.approx(best)


@pytest.mark.parametrize(("params", "needle"), [
    ({"device": "no-such-board"}, "no-such-board"),
    ({"device": "../../etc/passwd"}, "unknown device"),
    ({"channel": "rician"}, "rician"),
])
def test_unknown_device_or_channel_is_404(http: httpx.Client, params: dict[str, str], needle: str) -> None:
    r = http.get("/policy", params={"snr": 5, "latency": 100, **params})
    assert r.status_code == 404 and needle in r.json()["detail"]


# ------------------------------------------------------------------------------------------- /front


def test_front_serves_the_exact_file_with_a_strong_etag(http: httpx.Client, front_file: Path,
                                                       front: FrontArtifact) -> None:
    r = http.get("/front")
    assert r.status_code == 200 and r.content == front_file.read_bytes()
    assert front.checksum is not None
    assert r.headers["etag"] == '"' + front.checksum.replace(":", "-") + '"'
    assert not r.headers["etag"].startswith("W/")


@pytest.mark.parametrize(("inm", "status"), [
    (None, 304), ("W/{etag}", 304), ('"other", {etag}', 304), ("*", 304), ('"sha256-0000"', 200),
])
def test_front_if_none_match(http: httpx.Client, inm: str | None, status: int) -> None:
    etag = http.get("/front").headers["etag"]
    header = etag if inm is None else inm.format(etag=etag)
    r = http.get("/front", headers={"If-None-Match": header})
    assert r.status_code == status
    assert r.headers["etag"] == etag
    if status == 304:
        assert r.content == b""


# --------------------------------------------------------------------------------- health, metrics


def test_health_and_ready(http: httpx.Client, front: FrontArtifact) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["front_checksum"] == front.checksum and ready.json()["n_configs"] == 20


def test_metrics(http: httpx.Client, front: FrontArtifact) -> None:
    before = http.get("/metrics").text
    ok0 = metric(before, "paretoctl_http_requests_total", route="/policy", status="200")
    for _ in range(3):
        http.get("/policy", params={"snr": 5, "latency": 1e5})
    http.get("/policy", params={"snr": "x", "latency": 1})
    http.get("/no/such/path")
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert metric(text, "paretoctl_http_requests_total", route="/policy", status="200") == ok0 + 3
    assert metric(text, "paretoctl_http_requests_total", route="/policy", status="422") >= 1
    assert metric(text, "paretoctl_http_requests_total", route="<unmatched>", status="404") >= 1
    assert metric(text, "paretoctl_http_request_duration_seconds_count", route="/policy") >= 4
    assert 'paretoctl_http_request_duration_seconds_bucket{le="0.001",route="/policy"}' in text
    assert metric(text, "paretoctl_front_info", checksum=front.checksum or "",
                  schema_version="paretoctl.front/2") == 1.0
    assert metric(text, "paretoctl_front_loaded") == 1.0
    assert metric(text, "paretoctl_policy_decisions_total", feasible="true", extrapolated="false") >= 3


def test_openapi_documents_the_error_responses(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    policy = spec["paths"]["/policy"]["get"]["responses"]
    assert {"200", "404", "409", "422", "503"} <= set(policy)
    ref = policy["409"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/InfeasibleResponse")
    assert "fastest_latency_ms" in spec["components"]["schemas"]["InfeasibleResponse"]["required"]
    assert "304" in spec["paths"]["/front"]["get"]["responses"]
    assert {"200", "400", "401", "403"} <= set(spec["paths"]["/admin/reload"]["post"]["responses"])
    params = {p["name"] for p in spec["paths"]["/policy"]["get"]["parameters"]}
    assert params == {"snr", "latency", "min_accuracy", "device", "channel"}


def test_openapi_documents_the_merging_kind_and_thresholds(http: httpx.Client) -> None:
    props = http.get("/openapi.json").json()["components"]["schemas"]["Decision"]["properties"]
    merging = props["merging"]
    assert {"enum": ["proportions", "thresholds"], "type": "string"} in merging["anyOf"]
    assert "apply thresholds" in merging["description"] and "null when infeasible" in merging["description"]
    thresholds = props["thresholds"]
    assert {"type": "array", "items": {"type": "number"}} in thresholds["anyOf"]
    assert "merging is 'thresholds'" in thresholds["description"]


def test_policy_serves_threshold_configs_with_their_thresholds_and_p95_latency(tmp_path: Path) -> None:
    front = make_front(depth=6, channels=("awgn",), n_configs=10, n_thresholds=5, seed=8)
    path = write_front(tmp_path / "front.json", front)
    seen = set()
    with live_app(path) as srv, httpx.Client(base_url=srv.url, timeout=5) as c:
        for cfg in front.configs:
            body = c.get("/policy", params={"snr": 20, "latency": cfg.latency.total_ms}).json()
            chosen = front.config(body["config_id"])
            assert body["merging"] == chosen.merging and body["thresholds"] == chosen.thresholds
            assert body["latency"]["total_ms"] == pytest.approx(chosen.latency.total_ms)  # the p95-based figure
            seen.add(body["merging"])
        infeasible = c.get("/policy", params={"snr": 20, "latency": 0.01}).json()["decision"]
    assert seen == {"proportions", "thresholds"}
    assert infeasible["merging"] is None and infeasible["thresholds"] is None


def test_dashboard_router_is_included(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]


# ------------------------------------------------------------------------------------ not ready


def test_without_a_front_not_ready_and_503(tmp_path: Path) -> None:
    with live_app(None) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        assert c.get("/policy", params={"snr": 5, "latency": 10}).status_code == 503
        assert c.get("/front").status_code == 503
        assert metric(c.get("/metrics").text, "paretoctl_front_loaded") == 0.0


def test_bad_front_at_startup_leaves_the_service_not_ready(tmp_path: Path) -> None:
    doc = front_document(make_front(n_configs=3))
    doc["configs"][0]["tokens_sent"] += 1  # tampered
    path = write_document(tmp_path / "front.json", doc)
    with live_app(path) as srv, httpx.Client(base_url=srv.url) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "checksum" in r.json()["detail"]


# ------------------------------------------------------------------------------------ admin reload


@pytest.fixture
def reload_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    path = write_front(tmp_path / "front.json", make_front(n_configs=5, seed=1))
    with live_app(path) as srv:
        yield srv, tmp_path


def test_reload_requires_the_token(reload_server: tuple[LiveServer, Path]) -> None:
    srv, _ = reload_server
    r = httpx.post(srv.url + "/admin/reload")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.post(srv.url + "/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert httpx.post(srv.url + "/admin/reload", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_reload_is_disabled_without_a_configured_token(tmp_path: Path) -> None:
    path = write_front(tmp_path / "front.json", make_front(n_configs=3))
    with live_app(path, admin_token=None) as srv:
        r = httpx.post(srv.url + "/admin/reload", headers=AUTH)
        assert r.status_code == 403 and "disabled" in r.json()["detail"]


def test_reload_good_front_swaps_it_in(reload_server: tuple[LiveServer, Path]) -> None:
    srv, d = reload_server
    old = httpx.get(srv.url + "/readyz").json()["front_checksum"]
    new_path = write_front(d / "new.json", make_front(n_configs=9, seed=2))
    new = load_front(new_path)
    r = httpx.post(srv.url + "/admin/reload", json={"path": str(new_path)}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "reloaded", "path": str(new_path), "checksum": new.checksum,
                        "previous_checksum": old, "n_configs": 9,
                        "model_identity": new.provenance.model_identity.model_dump()}
    assert httpx.get(srv.url + "/readyz").json()["front_checksum"] == new.checksum
    assert httpx.get(srv.url + "/policy", params={"snr": 5, "latency": 1e5}).json()["front_checksum"] == new.checksum
    assert httpx.get(srv.url + "/front").content == new_path.read_bytes()
    # a reload without a body re-reads the current path (e.g. after the file was replaced)
    write_front(new_path, make_front(n_configs=4, seed=3))
    r2 = httpx.post(srv.url + "/admin/reload", headers=AUTH)
    assert r2.status_code == 200 and r2.json()["n_configs"] == 4 and r2.json()["previous_checksum"] == new.checksum


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda doc: doc["configs"][0].update(tokens_sent=999), "checksum"),
    (lambda doc: doc.update(schema_version="paretoctl.front/9"), "version"),
    (lambda doc: None, "malformed"),  # written as invalid JSON below
])
def test_reload_bad_front_keeps_the_old_one(reload_server: tuple[LiveServer, Path], mutate: Any,
                                            reason: str) -> None:
    srv, d = reload_server
    old = httpx.get(srv.url + "/front")
    doc = front_document(make_front(n_configs=6, seed=9))
    mutate(doc)
    bad = d / "bad.json"
    if reason == "malformed":
        bad.write_text(json.dumps(doc)[:-10])
    else:
        write_document(bad, doc)
    r = httpx.post(srv.url + "/admin/reload", json={"path": str(bad)}, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["reason"] == reason and r.json()["detail"]
    still = httpx.get(srv.url + "/front")
    assert still.content == old.content and still.headers["etag"] == old.headers["etag"]
    assert httpx.get(srv.url + "/readyz").status_code == 200
    text = httpx.get(srv.url + "/metrics").text
    assert metric(text, "paretoctl_front_reloads_total", result=reason) == 1.0


def test_reload_dir_restricts_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "fronts"
    allowed.mkdir()
    path = write_front(allowed / "front.json", make_front(n_configs=3))
    outside = write_front(tmp_path / "outside.json", make_front(n_configs=4))
    with live_app(path, reload_dir=allowed) as srv:
        r = httpx.post(srv.url + "/admin/reload", json={"path": str(outside)}, headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "path"
        r = httpx.post(srv.url + "/admin/reload", json={"path": str(allowed / ".." / "outside.json")},
                       headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "path"
        assert httpx.post(srv.url + "/admin/reload", json={"path": str(path)}, headers=AUTH).status_code == 200


def test_requests_during_reloads_see_one_front_or_the_other(reload_server: tuple[LiveServer, Path]) -> None:
    srv, d = reload_server
    a = write_front(d / "a.json", make_front(n_configs=5, seed=11))
    b = write_front(d / "b.json", make_front(n_configs=7, seed=12))
    valid = {load_front(a).checksum, load_front(b).checksum}
    seen: list[tuple[int, str]] = []
    stop = threading.Event()
    started = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=srv.url) as c:
            while not stop.is_set():
                r = c.get("/policy", params={"snr": 5, "latency": 1e5})
                seen.append((r.status_code, r.json().get("front_checksum", "")))
                started.set()

    with httpx.Client(base_url=srv.url, headers=AUTH) as admin:
        admin.post("/admin/reload", json={"path": str(a)})
        t = threading.Thread(target=hammer)
        t.start()
        assert started.wait(10)
        for i in range(10):
            assert admin.post("/admin/reload", json={"path": str(b if i % 2 == 0 else a)}).status_code == 200
        stop.set()
        t.join()
    assert len(seen) > 1 and all(status == 200 and checksum in valid for status, checksum in seen)


# --------------------------------------------------------------- reload confinement and limits (#11.5)


def test_a_token_without_a_reload_dir_is_refused() -> None:
    with pytest.raises(ValueError, match="reload_dir: required when admin_token is set"):
        Settings(admin_token="s3cret")
    assert Settings(admin_token="s3cret", reload_dir=Path("/data")).admin_enabled


def test_reload_resolves_symlinks_and_relative_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "fronts"
    allowed.mkdir()
    path = write_front(allowed / "front.json", make_front(n_configs=3))
    outside = write_front(tmp_path / "outside.json", make_front(n_configs=4))
    (allowed / "link.json").symlink_to(outside)
    (allowed / "zero.json").symlink_to("/dev/zero")
    inside = write_front(allowed / "sub" / "next.json", make_front(n_configs=5))
    with live_app(path, reload_dir=allowed) as srv, httpx.Client(base_url=srv.url, headers=AUTH) as c:
        for bad in (str(allowed / "link.json"), "link.json", "zero.json", "../outside.json", "/etc/passwd",
                    str(allowed)):
            r = c.post("/admin/reload", json={"path": bad})
            assert r.status_code == 400 and r.json()["reason"] == "path", (bad, r.text)
            assert "outside the reload directory" in r.json()["detail"]
        r = c.post("/admin/reload", json={"path": "sub/next.json"})
        assert r.status_code == 200 and r.json()["path"] == str(inside) and r.json()["n_configs"] == 5
        assert c.post("/admin/reload", json={"path": "missing.json"}).json()["reason"] == "path"


def test_reload_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    path = write_front(tmp_path / "front.json", make_front(n_configs=3))
    os.mkfifo(tmp_path / "pipe.json")
    with live_app(path) as srv:
        r = httpx.post(srv.url + "/admin/reload", json={"path": "pipe.json"}, headers=AUTH, timeout=5)
        assert r.status_code == 400 and r.json()["reason"] == "path"
        assert "not a regular file" in r.json()["detail"]
        assert httpx.get(srv.url + "/readyz").status_code == 200


def test_front_size_cap_on_reload_and_at_startup(tmp_path: Path) -> None:
    small = write_front(tmp_path / "small.json", make_front(n_configs=2))
    big = write_front(tmp_path / "big.json", make_front(n_configs=30))
    cap = small.stat().st_size
    assert big.stat().st_size > cap
    with live_app(small, max_front_bytes=cap) as srv:
        r = httpx.post(srv.url + "/admin/reload", json={"path": "big.json"}, headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "size" and "max_front_bytes" in r.json()["detail"]
    with live_app(big, max_front_bytes=cap) as srv:
        r = httpx.get(srv.url + "/readyz")
        assert r.status_code == 503 and "max_front_bytes" in r.json()["detail"]


def test_reload_time_limit(tmp_path: Path) -> None:
    path = write_front(tmp_path / "front.json", make_front(n_configs=3))
    write_front(tmp_path / "next.json", make_front(n_configs=40, depth=8))
    with live_app(path, reload_timeout_s=1e-6) as srv:
        r = httpx.post(srv.url + "/admin/reload", json={"path": "next.json"}, headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "timeout"
        assert httpx.get(srv.url + "/readyz").json()["n_configs"] == 3


def test_reload_errors_do_not_echo_the_file(tmp_path: Path) -> None:
    path = write_front(tmp_path / "front.json", make_front(n_configs=3))
    secret = "TOP-SECRET-VALUE-42"
    version = write_document(tmp_path / "v.json", {"schema_version": secret, "checksum": "x"})
    doc = front_document(make_front(n_configs=3))
    doc["configs"][1]["id"] = secret
    doc["configs"][2]["id"] = secret  # duplicate id: the loader's message quotes it
    doc["checksum"] = compute_checksum(doc)
    dup = write_document(tmp_path / "dup.json", doc)
    tampered = write_document(tmp_path / "t.json", {**front_document(make_front(n_configs=3)), "checksum": secret})
    with live_app(path) as srv:
        for f, reason in ((version, "version"), (dup, "malformed"), (tampered, "checksum")):
            r = httpx.post(srv.url + "/admin/reload", json={"path": f.name}, headers=AUTH)
            assert r.status_code == 400 and r.json()["reason"] == reason, r.text
            assert secret not in r.text


def test_reload_authenticates_before_reading_the_body(tmp_path: Path) -> None:
    path = write_front(tmp_path / "front.json", make_front(n_configs=3))
    with live_app(path) as srv:
        junk = {"content": b"{not json", "headers": {"content-type": "application/json"}}
        assert httpx.post(srv.url + "/admin/reload", **junk).status_code == 401  # type: ignore[arg-type]
        bad_auth = {"Authorization": "Bearer nope", "content-type": "application/json"}
        assert httpx.post(srv.url + "/admin/reload", content=b"{not json", headers=bad_auth).status_code == 403
        r = httpx.post(srv.url + "/admin/reload", content=b"{not json",
                       headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["detail"].startswith("body: ")
        r = httpx.post(srv.url + "/admin/reload", json={"path": "x" * 20_000}, headers=AUTH)
        assert r.status_code == 413


# ------------------------------------------------------------------------------ several workers (#11.6)


def test_reload_is_refused_when_several_workers_serve(tmp_path: Path) -> None:
    path = write_front(tmp_path / "front.json", make_front(n_configs=3))
    write_front(tmp_path / "next.json", make_front(n_configs=5))
    with live_app(path, workers=2) as srv:
        before = httpx.get(srv.url + "/readyz").json()["front_checksum"]
        r = httpx.post(srv.url + "/admin/reload", json={"path": "next.json"}, headers=AUTH)
        assert r.status_code == 409 and r.json()["reason"] == "workers"
        assert httpx.get(srv.url + "/readyz").json()["front_checksum"] == before


# ---------------------------------------------------------------------------- model identity (#11.7)


def test_front_and_readyz_name_the_model(http: httpx.Client, front: FrontArtifact) -> None:
    ident = front.provenance.model_identity
    r = http.get("/front")
    assert r.headers["x-paretoctl-model"] == ident.name
    assert r.headers["x-paretoctl-model-weights"] == ident.weights_sha256
    assert r.json()["provenance"]["model_identity"] == ident.model_dump()
    assert http.get("/readyz").json()["model_identity"] == ident.model_dump()
