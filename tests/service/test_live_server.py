"""A real uvicorn server on a loopback port, for tests that talk HTTP (and a test of the helper).

Other test modules import :class:`LiveServer` and :func:`live_app` from here.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from paretoctl.service.app import create_app
from paretoctl.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEVICES_DIR = REPO / "configs" / "devices"
ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for subprocess servers that need it up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an ASGI app on 127.0.0.1 (an ephemeral port) in a background thread.

    ``start`` returns once uvicorn has bound its socket and run the app's lifespan startup, so a
    test can talk to it immediately; ``stop`` runs the lifespan shutdown and joins the thread.
    """

    def __init__(self, app: Any, startup_timeout: float = 10.0) -> None:
        self.app = app
        self.config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                     access_log=False)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="live-uvicorn", daemon=True)
        self.startup_timeout = startup_timeout
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start")
            time.sleep(0.01)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout=5)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_settings(front_path: Path | None, **kw: Any) -> Settings:
    """Service settings for tests: repo device profiles, a known admin token and, for reloads, the
    front's directory as the reload directory (by default)."""
    kw.setdefault("devices_dir", DEVICES_DIR)
    kw.setdefault("admin_token", ADMIN_TOKEN if front_path is not None or kw.get("reload_dir") else None)
    if kw["admin_token"] is not None:
        kw.setdefault("reload_dir", front_path.parent if front_path is not None else None)
    return Settings(front_path=front_path, **kw)


@contextmanager
def live_app(front_path: Path | None, **settings_kw: Any) -> Iterator[LiveServer]:
    """A live server running ``create_app`` for ``front_path``."""
    with LiveServer(create_app(make_settings(front_path, **settings_kw))) as server:
        yield server


# ------------------------------------------------------------------------------ tests of the helper


def test_live_server_starts_serves_and_stops(tmp_path: Path) -> None:
    with live_app(None) as server:
        assert server.port > 0
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        port = server.port
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_two_apps_in_one_process_do_not_share_metrics() -> None:
    with live_app(None) as a, live_app(None) as b:
        for _ in range(3):
            httpx.get(a.url + "/healthz")
        text_b = httpx.get(b.url + "/metrics").text
        text_a = httpx.get(a.url + "/metrics").text
    line = 'paretoctl_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert f"{line} 3.0" in text_a
    assert line not in text_b
