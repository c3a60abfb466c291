"""The Docker image, checked without Docker: its exact command runs here, and the base install has no torch.

The Dockerfile is parsed; its CMD is run with the front path, host and port substituted (a loopback
address and a free port), then /healthz and /policy are hit, and the HEALTHCHECK command is run
against it as well.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from paretoctl.service.schema import dump_front
from tests.fronts import make_front, write_front
from tests.service.test_live_server import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def dockerfile_instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def instruction(name: str) -> list[str]:
    return [args for word, args in dockerfile_instructions() if word == name]


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instruction("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def cmd_argv() -> list[str]:
    (cmd,) = instruction("CMD")
    argv = json.loads(cmd)  # exec form: a plain command, no shell
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def healthcheck_argv() -> list[str]:
    (hc,) = instruction("HEALTHCHECK")
    return json.loads(hc[hc.index("CMD") + 3:].strip())


def test_dockerfile_shape() -> None:
    (base,) = instruction("FROM")
    assert base == "python:3.11-slim"
    assert instruction("EXPOSE") == ["8000"]
    users = instruction("USER")
    assert users and users[-1] not in ("root", "0")
    assert docker_env()["PARETOCTL_FRONT_PATH"] == "/data/front.json"
    runs = " ".join(instruction("RUN")).lower()
    assert "pip install" in runs and "torch" not in runs and "[build]" not in runs
    assert any(a.startswith("FRONT") for a in instruction("ARG"))  # the bake-in build argument
    argv = cmd_argv()
    assert argv[:2] == ["paretoctl", "serve"] and "/data/front.json" in argv
    assert healthcheck_argv()[0] == "python" and "/healthz" in healthcheck_argv()[-1]


SETPRIV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
"""Run as nobody:nogroup, a user other than the front file's owner (the tests run as root)."""


@contextmanager
def image_command(front_dir: Path, *, as_other_user: bool = False) -> Iterator[tuple[str, int]]:
    """The image's CMD and ENV, run outside Docker with /data, the host and the port substituted."""
    port = free_port()
    subst = {"/data/front.json": str(front_dir / "front.json"), "/data": str(front_dir), "0.0.0.0": "127.0.0.1",
             "8000": str(port)}
    argv = [subst.get(a, a) for a in cmd_argv()]
    exe = VENV_BIN / argv[0]
    assert exe.exists(), f"{argv[0]} is not installed in the venv"
    env = {**os.environ, **{k: subst.get(v, v) for k, v in docker_env().items()}}
    env["PARETOCTL_DEVICES_DIR"] = str(REPO / "configs" / "devices")
    env["HOME"] = str(front_dir)
    env.pop("PARETOCTL_ADMIN_TOKEN", None)
    prefix = SETPRIV if as_other_user else []
    proc = subprocess.Popen([*prefix, str(exe), *argv[1:]], env=env, cwd=front_dir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"the image command did not come up (rc {proc.returncode}):\n{out}")
            time.sleep(0.1)
        yield url, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def container_like(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The image's CMD, run outside Docker with the front, host and port substituted."""
    write_front(tmp_path / "front.json", make_front(n_configs=6))
    with image_command(tmp_path) as served:
        yield served


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory others can enter and read (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="paretoctl-docker-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run the command as another user")
def test_image_command_reads_a_front_owned_by_another_user(shared_dir: Path) -> None:
    """#11.4: the container user is not the owner of a bind-mounted front; dump_front's 0644 lets it read."""
    old = os.umask(0o022)
    try:
        front = dump_front(make_front(n_configs=6), shared_dir / "front.json")
    finally:
        os.umask(old)
    assert (shared_dir / "front.json").stat().st_uid != 65534
    with image_command(shared_dir, as_other_user=True) as (url, _):
        r = httpx.get(url + "/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["front_checksum"] == front.checksum


def test_image_sets_a_reload_dir_holding_the_front() -> None:
    env = docker_env()
    assert env["PARETOCTL_RELOAD_DIR"] == "/data"
    assert Path(env["PARETOCTL_FRONT_PATH"]).parent == Path(env["PARETOCTL_RELOAD_DIR"])


def test_image_installs_the_torch_free_schedule_module() -> None:
    """The loader checks r against paretoctl.models.schedule, so the image must ship that module."""
    copies = " ".join(instruction("COPY"))
    assert "models/schedule.py" in copies and "models/__init__.py" in copies
    code = "import sys; import paretoctl.models.schedule; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def test_image_command_serves_policy(container_like: tuple[str, int]) -> None:
    url, port = container_like
    assert httpx.get(url + "/readyz").status_code == 200
    r = httpx.get(url + "/policy", params={"snr": 5, "latency": 1e5})
    assert r.status_code == 200 and r.json()["feasible"] is True
    argv = healthcheck_argv()
    argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in argv]
    assert subprocess.run([sys.executable, *argv[1:]], timeout=20).returncode == 0


def test_image_command_fails_fast_on_a_bad_front(tmp_path: Path) -> None:
    bad = tmp_path / "front.json"
    bad.write_text("{}")
    argv = [{"/data/front.json": str(bad), "0.0.0.0": "127.0.0.1"}.get(a, a) for a in cmd_argv()]
    proc = subprocess.run([str(VENV_BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "malformed" in proc.stderr


def test_service_and_sdk_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import paretoctl.service.app, paretoctl.service.schema, paretoctl.service.policy\n"
        "import paretoctl.service.latency, paretoctl.service.settings, paretoctl.service.metrics\n"
        "import paretoctl.client, paretoctl.cli_service\n"
        "from paretoctl.service.app import create_app\n"
        "from paretoctl.service.settings import Settings\n"
        "create_app(Settings())\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'numpy.linalg', 'matplotlib') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
