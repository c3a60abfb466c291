"""The dashboard at ``/``, driven in real headless Chromium against the real app under uvicorn.

The point of the page is that it shows what the API says, so every check compares what the browser
renders with ``GET /policy`` fetched independently by the test (httpx) for the same inputs.

Set ``PARETOCTL_SAVE_SCREENSHOTS=1`` to also copy a screenshot to ``docs/img/dashboard.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn

from paretoctl.service.app import create_app
from paretoctl.service.policy import select
from paretoctl.service.schema import FrontArtifact, dump_front, load_front
from paretoctl.service.settings import Settings
from tests.fronts import make_front, write_front

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is missing (install Debian's chromium package)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


ADMIN_TOKEN = "dashboard-admin"


@dataclass
class Served:
    """A running service: its base URL, the front it serves, and its uvicorn server (to stop it)."""

    url: str
    front: FrontArtifact | None
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    def stop(self) -> None:
        """Stop the server, as a crash or a restart would make it vanish for the page."""
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """A factory starting ``create_app(settings)`` under uvicorn in a thread; stopped at teardown."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(front: FrontArtifact | None) -> Served:
        path = write_front(tmp_path / "front.json", front) if front is not None else None
        (tmp_path / "devices").mkdir(exist_ok=True)
        app = create_app(Settings(front_path=path, devices_dir=tmp_path / "devices", admin_token=ADMIN_TOKEN,
                                  reload_dir=tmp_path))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return Served(f"http://127.0.0.1:{port}", front, server, thread)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Page:
    """A dashboard tab with the console errors and the URLs it requested."""

    page: Any
    errors: list[str]
    requests: list[str]


def is_unexpected(message: Any) -> bool:
    """A console error other than Chromium's note on a 409, which is the API's infeasible answer."""
    return bool(message.type == "error" and not re.search(r"status of 409\b", message.text))


@pytest.fixture
def open_dashboard(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_(url: str, query: str = "") -> Page:
        ctx = browser.new_context(viewport={"width": 1280, "height": 960})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        out = Page(page, [], [])
        page.on("pageerror", lambda exc: out.errors.append(str(exc)))
        page.on("console", lambda m: out.errors.append(m.text) if is_unexpected(m) else None)
        page.on("request", lambda r: out.requests.append(r.url))
        page.goto(url + "/" + query)
        return out

    yield open_
    for ctx in contexts:
        ctx.close()


def the_front() -> FrontArtifact:
    return make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=12, num_patches=16, dim=64,
                      split_index=2, seed=3)


# ------------------------------------------------------------------------------------------------
# Driving the page


def set_slider(page: Any, selector: str, value: float) -> str:
    """Move a range input as a user would (value, then ``input`` and ``change``); return its value.

    The browser snaps the value to the slider's step, so the value actually set is read back.
    """
    return str(page.eval_on_selector(selector, """(el, v) => {
        el.value = String(v);
        el.dispatchEvent(new Event("input", { bubbles: true }));
        el.dispatchEvent(new Event("change", { bubbles: true }));
        return el.value; }""", value))


def wait_for_decision(page: Any) -> dict[str, str]:
    """Wait until the panel shows the answer to the controls' current values; return that query."""
    page.wait_for_function("""() => {
        const box = document.getElementById("decision");
        const q = new URLSearchParams({ snr: document.getElementById("snr").value,
            latency: document.getElementById("latency").value,
            channel: document.getElementById("channel").value }).toString();
        return box.dataset.query === q && box.dataset.state !== "loading"; }""")
    query = page.get_attribute("#decision", "data-query")
    return {k: v[0] for k, v in parse_qs(query).items()}


def shown(page: Any, selector: str) -> str:
    return str(page.inner_text(selector)).strip()


def check_matches_api(page: Any, base: str, params: dict[str, str]) -> dict[str, Any]:
    """Compare the panel with ``GET /policy`` for the same parameters; return the API's body."""
    resp = httpx.get(base + "/policy", params=params, timeout=10)
    body = resp.json()
    state = page.get_attribute("#decision", "data-state")
    if resp.status_code == 200:
        assert state == "feasible", f"API chose {body['config_id']} for {params}, page says {state}"
        assert shown(page, "#d-config") == body["config_id"]
        assert page.get_attribute("#d-merging", "data-value") == body["merging"]
        assert page.is_visible("#d-thresholds-row") == (body["merging"] == "thresholds")
        if body["merging"] == "thresholds":
            value = page.get_attribute("#d-thresholds", "data-value")
            assert [float(t) for t in value.split(",")] == body["thresholds"]
            assert shown(page, "#d-schedule-label").startswith("Mean schedule")
            assert "GFLOPs per image, mean" in shown(page, "#d-gflops")
        else:
            assert body["thresholds"] is None and shown(page, "#d-schedule-label") == "Schedule (r per layer)"
        assert page.get_attribute("#configs tr.chosen", "data-id") == body["config_id"]
        acc = body["predicted_accuracy"]
        assert float(page.get_attribute("#d-accuracy", "data-value")) == acc["mean"]
        assert shown(page, "#d-accuracy").startswith(f"{100 * acc['mean']:.2f} %")
        assert float(page.get_attribute("#d-latency", "data-value")) == body["latency"]["total_ms"]
        assert shown(page, "#d-latency").startswith(f"{body['latency']['total_ms']:.2f} ms")
        assert float(page.get_attribute("#d-gflops", "data-value")) == body["gflops"]["total"]
        assert "GFLOPs" in shown(page, "#d-gflops")
        assert shown(page, "#d-tokens").startswith(f"{body['tokens_sent']} tokens")
        assert shown(page, "#d-schedule") == "[" + ", ".join(map(str, body["r"])) + "]"
        assert page.get_attribute("#chosen-marker", "data-id") == body["config_id"]
        assert page.is_hidden("#d-fastest")
    else:
        assert resp.status_code == 409, resp.text
        assert state == "infeasible", f"API says infeasible for {params}, page says {state}"
        assert body["detail"] in shown(page, "#d-message")
        fastest = body["fastest_latency_ms"]
        assert float(page.get_attribute("#d-fastest", "data-value")) == fastest
        assert f"{fastest:.2f} ms" in shown(page, "#d-fastest")
        assert page.is_hidden("#d-table")
        assert page.query_selector("#chosen-marker") is None
        assert page.query_selector("#configs tr.chosen") is None
    return dict(body)


def readme_budget(front: FrontArtifact, snr: float) -> float:
    """The largest configuration latency at which the policy still picks a merged schedule."""
    for total in sorted((cfg.latency.total_ms for cfg in front.configs), reverse=True):
        if select(front, snr, total + 0.02).config_id != front.reference_config_id:
            return total + 0.02
    raise AssertionError("the synthetic front never prefers a merged schedule")


# ------------------------------------------------------------------------------------------------
# Tests


def test_page_shows_the_front_and_its_provenance(serve: Any, open_dashboard: Any) -> None:
    served = serve(the_front())
    front = served.front
    tab = open_dashboard(served.url)
    page = tab.page
    wait_for_decision(page)
    assert page.get_attribute("#status", "data-state") == "ready"
    prov = {dt: dd for dt, dd in zip(page.locator("#provenance dt").all_inner_texts(),
                                     page.locator("#provenance dd").all_inner_texts(), strict=True)}
    assert prov["Model"] == front.provenance.model
    ident = front.provenance.model_identity
    assert prov["Model identity"].startswith(f"{ident.name} (architecture {ident.architecture_sha256[:12]}")
    assert f"weights {ident.weights_sha256[:12]}" in prov["Model identity"]
    assert shown(page, "#front-model") == f"front for model {ident.name}"
    assert prov["Data set"].startswith(front.provenance.dataset)
    assert prov["Channels"] == "awgn, rayleigh"
    assert prov["SNR grid"] == "-5, 0, 5, 10, 20 dB"
    assert prov["Checksum"] == front.checksum
    assert prov["Built at"].startswith("2025-01-01T00:00:00")
    assert page.locator("#front-svg circle.pt").count() == len(front.configs)
    assert page.locator("#channel option").all_inner_texts()[0] == "awgn"
    assert not tab.errors, tab.errors
    assert all(u.startswith(served.url) or u.startswith("data:") for u in tab.requests), tab.requests


def test_policy_explorer_shows_what_the_api_answers(
    serve: Any, open_dashboard: Any, tmp_path: Path
) -> None:
    served = serve(the_front())
    front = served.front
    tab = open_dashboard(served.url)
    page = tab.page
    wait_for_decision(page)
    totals = sorted(cfg.latency.total_ms for cfg in front.configs)
    positions = [
        # (channel, SNR dB, latency budget ms): on the grid, between grid points, below and above the
        # grid, a tight budget, a generous one, and one below the fastest configuration.
        ("awgn", 10.0, totals[-1] * 1.05),
        ("awgn", 7.5, totals[len(totals) // 2]),
        ("rayleigh", -8.0, totals[-1]),
        ("rayleigh", 24.0, totals[1] + 0.01),
        ("awgn", 0.0, totals[0] * 0.5),
    ]
    seen_states = []
    for k, (channel, snr, latency) in enumerate(positions):
        page.select_option("#channel", channel)
        set_slider(page, "#snr", snr)
        set_slider(page, "#latency", latency)
        params = wait_for_decision(page)
        assert params["channel"] == channel
        assert float(params["snr"]) == pytest.approx(snr, abs=0.25)
        check_matches_api(page, served.url, params)
        seen_states.append(page.get_attribute("#decision", "data-state"))
        page.screenshot(path=str(tmp_path / f"dashboard-{k}.png"), full_page=True)
    assert seen_states[0] == "feasible"
    assert seen_states[-1] == "infeasible"

    # The keyboard moves the slider too, and the panel follows.
    page.focus("#snr")
    page.keyboard.press("Home")
    set_slider(page, "#latency", totals[-1])
    params = wait_for_decision(page)
    assert float(params["snr"]) == float(page.get_attribute("#snr", "min"))
    check_matches_api(page, served.url, params)
    assert not tab.errors, tab.errors

    # For the README: a budget where the policy picks a merged schedule rather than the reference.
    page.evaluate("document.activeElement.blur()")
    set_slider(page, "#snr", 7.5)
    set_slider(page, "#latency", readme_budget(front, 7.5))
    check_matches_api(page, served.url, wait_for_decision(page))
    assert shown(page, "#d-config") != front.reference_config_id
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    if os.environ.get("PARETOCTL_SAVE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "dashboard.png", DOCS_SCREENSHOT)


def test_page_says_when_no_front_is_loaded(serve: Any, open_dashboard: Any) -> None:
    served = serve(None)
    page = open_dashboard(served.url).page
    page.wait_for_selector("#status[data-state=error]")
    assert "no front loaded (503)" in shown(page, "#status")
    assert page.is_disabled("#snr")


def test_page_is_self_contained_and_not_in_the_openapi_contract(serve: Any) -> None:
    served = serve(the_front())
    resp = httpx.get(served.url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    # The only absolute URL is the SVG namespace: no CDN, no web fonts, no external scripts.
    assert set(re.findall(r"https?://[^\s\"'`)]+", html)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<script[^>]+src=|<link[^>]+stylesheet|@import|@font-face", html)
    schema = httpx.get(served.url + "/openapi.json", timeout=10).json()
    assert "/" not in schema["paths"]
    assert "/policy" in schema["paths"]


# ------------------------------------------------------------------------------- under failure (#11.13)


def provenance(page: Any) -> dict[str, str]:
    return dict(zip(page.locator("#provenance dt").all_inner_texts(),
                    page.locator("#provenance dd").all_inner_texts(), strict=True))


def admin_reload(served: Served, path: Path) -> None:
    r = httpx.post(served.url + "/admin/reload", json={"path": str(path)},
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text


def test_page_follows_a_reload_seen_in_a_decision(serve: Any, open_dashboard: Any, tmp_path: Path) -> None:
    """No polling here (the default 5 s is longer than the test): the decision's front_checksum alone
    tells the page that the front changed, and it fetches and draws the new one."""
    served = serve(the_front())
    tab = open_dashboard(served.url)
    page = tab.page
    wait_for_decision(page)
    assert page.get_attribute("#status", "data-checksum") == served.front.checksum
    new = make_front(depth=6, channels=("awgn", "rayleigh"), n_configs=7, num_patches=16, dim=64,
                     split_index=2, seed=99)
    new = dump_front(new, tmp_path / "new.json")
    admin_reload(served, tmp_path / "new.json")
    set_slider(page, "#snr", 12.0)
    page.wait_for_function("cs => document.getElementById('status').dataset.checksum === cs", arg=new.checksum)
    params = wait_for_decision(page)
    assert provenance(page)["Checksum"] == new.checksum
    page.wait_for_function("n => document.querySelectorAll('#front-svg circle.pt').length === n", arg=7)
    assert page.locator("#front-svg circle.pt").count() == len(new.configs) == 7
    assert float(params["snr"]) == 12.0  # the user's setting survived the reload
    body = check_matches_api(page, served.url, params)
    assert body["front_checksum"] == new.checksum
    assert page.get_attribute("#status", "data-state") == "ready"
    assert not tab.errors, tab.errors


def test_page_polls_for_reloads_and_shows_the_service_down(serve: Any, open_dashboard: Any,
                                                           tmp_path: Path) -> None:
    served = serve(the_front())
    tab = open_dashboard(served.url, "?poll=250")
    page = tab.page
    wait_for_decision(page)
    new = dump_front(make_front(depth=6, channels=("awgn",), n_configs=5, seed=5), tmp_path / "new.json")
    admin_reload(served, tmp_path / "new.json")
    # nobody touches the page: the /readyz poll notices the new checksum
    page.wait_for_function("cs => document.getElementById('status').dataset.checksum === cs", arg=new.checksum)
    # the checksum is set as the new front arrives; its drawing follows (wait for it, bounded)
    page.wait_for_function("n => document.querySelectorAll('#front-svg circle.pt').length === n", arg=5)
    assert page.locator("#channel option").all_inner_texts() == ["awgn"]
    assert page.locator("#front-svg circle.pt").count() == 5

    served.stop()
    page.wait_for_selector("#status[data-state=down]")
    assert "DOWN" in shown(page, "#status")
    # a user action while it is down: the panel says the request failed, the status stays DOWN
    set_slider(page, "#snr", 3.0)
    page.wait_for_selector("#decision[data-state=error]")
    assert "does not answer" in shown(page, "#d-message")
    assert page.get_attribute("#status", "data-state") == "down"


# ------------------------------------------------------------------------ threshold configurations


def configs_table(page: Any) -> dict[str, list[str]]:
    """The configurations table: id -> its cells as shown."""
    rows = page.eval_on_selector_all("#configs tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    return {row[0]: row for row in rows}


def fmt_sig(x: float, n: int = 4) -> str:
    """The page's ``sig``: ``Number(x.toPrecision(n))`` printed as JavaScript prints it.

    ``toPrecision`` rounds the exact binary value, a tie to the larger neighbour (Python's format
    rounds ties to even: 496.25 gives 496.2 there, 496.3 in the page).
    """
    if x == 0:
        return "0"
    exact = Decimal(x)
    step = Decimal(1).scaleb(exact.adjusted() - n + 1)
    v = float(exact.quantize(step, rounding=ROUND_HALF_UP if x > 0 else ROUND_HALF_DOWN))
    return str(int(v)) if v == int(v) and abs(v) < 1e21 else repr(v)


def check_threshold_front(page: Any, front: FrontArtifact) -> None:
    """Points, table and provenance say how each configuration merges, with its thresholds and costs."""
    thr = [c for c in front.configs if c.merging == "thresholds"]
    assert thr and len(thr) < len(front.configs), "the front must hold both merging kinds"
    assert page.locator("#front-svg .pt").count() == len(front.configs)
    assert page.locator("#front-svg path.pt.thresholds").count() == len(thr)
    assert page.locator("#front-svg circle.pt").count() == len(front.configs) - len(thr)
    assert sorted(page.eval_on_selector_all("#front-svg path.pt", "els => els.map(e => e.dataset.id)")) == \
        sorted(c.id for c in thr)
    assert page.is_visible("#legend-thresholds")
    table = configs_table(page)
    assert set(table) == {c.id for c in front.configs}
    for c in front.configs:
        row = table[c.id]
        assert row[2] == c.merging
        if c.cost_distribution is not None and c.thresholds is not None:
            d = c.cost_distribution
            assert row[3] == f"{fmt_sig(d.gflops_total.mean)} / {fmt_sig(d.gflops_total.p95)}"
            assert row[5] == f"{fmt_sig(d.channel_uses.mean)} / {fmt_sig(d.channel_uses.p95)}"
            assert row[7] == "[" + ", ".join(fmt_sig(t) for t in c.thresholds) + "]"
        else:
            assert row[4] == str(c.tokens_sent) and row[7] == "–"
    assert provenance(page)["Configurations"].endswith(f"; {len(thr)} input-adaptive with thresholds)")


def explore_both_kinds(page: Any, served: Served) -> set[str]:
    """Drive the sliders to where the policy picks each merging kind (and to an infeasible budget),
    checking the panel against the API each time; return the kinds the API chose there.

    The positions are found with the library's ``select`` over the latency slider's own steps, so
    the browser does not snap them elsewhere.
    """
    front = served.front
    assert front is not None
    step = float(page.get_attribute("#latency", "step"))
    top = float(page.get_attribute("#latency", "max"))
    budgets = [k * step for k in range(1, round(top / step) + 1)]
    wanted: dict[str, tuple[float, float]] = {}
    for snr in front.provenance.snr_grid_db:
        for budget in budgets:
            d = select(front, snr, budget)
            wanted.setdefault(d.merging or "infeasible", (snr, budget))
    assert {"proportions", "thresholds"} <= set(wanted), f"the policy never picks both kinds: {wanted}"
    kinds = set()
    for kind, (snr, budget) in sorted(wanted.items()):
        set_slider(page, "#snr", snr)
        set_slider(page, "#latency", budget)
        body = check_matches_api(page, served.url, wait_for_decision(page))
        got = body.get("merging") or ("infeasible" if "decision" in body else None)
        assert got == kind, (kind, snr, budget, body)
        kinds.add(got)
    return kinds


def test_dashboard_on_a_synthetic_front_with_both_merging_kinds(serve: Any, open_dashboard: Any) -> None:
    front = make_front(depth=6, channels=("awgn",), n_configs=10, n_thresholds=4, num_patches=16, dim=64,
                       split_index=2, seed=3)
    served = serve(front)
    tab = open_dashboard(served.url)
    page = tab.page
    wait_for_decision(page)
    check_threshold_front(page, front)
    kinds = explore_both_kinds(page, served)
    assert {"proportions", "thresholds", "infeasible"} <= kinds, kinds
    assert not tab.errors, tab.errors


def test_dashboard_on_the_real_threshold_build(serve: Any, open_dashboard: Any, threshold_build_dir: Path,
                                               tmp_path: Path) -> None:
    """The front ``paretoctl build`` writes for a threshold search, explored as a user would."""
    front = load_front(threshold_build_dir / "front.json")
    served = serve(front)
    tab = open_dashboard(served.url)
    page = tab.page
    wait_for_decision(page)
    check_threshold_front(page, front)
    kinds = explore_both_kinds(page, served)
    assert {"proportions", "thresholds"} <= kinds, kinds
    page.screenshot(path=str(tmp_path / "dashboard-thresholds.png"), full_page=True)
    assert not tab.errors, tab.errors
