"""The build directory's rules: one build at a time, ``config.yaml`` always describes the archive.

Files (see ``docs/cli.md``): ``archive.jsonl`` (validation evaluations), ``plan.json`` (planned
batches), ``test_archive.jsonl`` (test-split measurements), ``config.yaml`` (the effective config,
overrides and defaults included), ``convergence.json``, ``front.json`` and ``build.lock``.

* :class:`BuildLock` holds an exclusive ``flock`` on ``build.lock`` for the whole build; the kernel
  drops it when the process dies, even by SIGKILL, so a killed build never leaves a stale lock.
* :func:`prepare_directory` refuses a directory that holds records unless ``--resume`` is given, and
  a resume whose config differs from the recorded one (naming every differing key). A directory with
  no records is a fresh start: its ``config.yaml`` is rewritten and leftovers of an earlier start
  (plan, test archive) are removed, so they can never mix with the new config.
* :func:`check_records` refuses records measured on another channel set, SNR grid or depth.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from paretoctl.optimizer.config import BuildConfig, ConfigError, parse_config
from paretoctl.service.fileio import atomic_write_text

LOCK_NAME = "build.lock"
CONFIG_NAME = "config.yaml"
STALE_WHEN_EMPTY = ("plan.json", "test_archive.jsonl", "convergence.json", "front.json")
"""Files that belong to the records of a build; without records they are leftovers of a killed start."""


class BuildError(RuntimeError):
    """A build cannot start or continue because of its inputs; the message says why and what to do."""


class BuildLockedError(BuildError):
    """Another process is building in the same directory."""


class BuildLock:
    """An exclusive, non-blocking ``flock`` on ``DIR/build.lock``, held while the context is open."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> BuildLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BuildLockedError(
                f"{self.path.parent} is being built by another process (it holds {self.path}); "
                "wait for it to finish or use another --out"
            ) from None
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): doc}


RESULT_NEUTRAL_KEYS = ("runtime.executor", "runtime.threads", "runtime.loader_workers", "runtime.server_chunk",
                       "runtime.process_", "runtime.ray_", "timing.")
"""Settings that change where and how fast evaluations run, never what they measure: a build may resume
under other values (on Ray or in worker processes after a local start, with more threads). Latency timing runs after the
search and never touches the archive. ``runtime.device`` and
``runtime.precision`` change the arithmetic, so they are compared."""


def config_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``key: recorded -> wanted`` for every dotted key whose value differs between two canonical configs.

    Keys in :data:`RESULT_NEUTRAL_KEYS` are not differences.
    """
    a, b = _flatten(dict(recorded)), _flatten(dict(wanted))
    return [f"{k}: {a.get(k, '<unset>')!r} recorded, {b.get(k, '<unset>')!r} now"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(RESULT_NEUTRAL_KEYS)]


def config_yaml(cfg: BuildConfig) -> str:
    """The text of ``config.yaml``: the effective config (defaults and overrides applied, paths absolute)."""
    head = ("# The effective config of this build (written by paretoctl build; --resume compares against it).\n"
            "# Usable as --config for a new build.\n")
    return head + yaml.safe_dump(cfg.canonical(), sort_keys=False)


def recorded_config(path: Path) -> dict[str, Any]:
    """The canonical config recorded in ``path``; ``BuildError`` naming the file if it cannot be read."""
    try:
        raw = yaml.safe_load(path.read_text())
        return parse_config(raw, str(path)).canonical()
    except (OSError, yaml.YAMLError, ConfigError) as err:
        raise BuildError(f"{path} is unreadable or invalid ({' '.join(str(err).split())}); "
                         "it cannot be checked against this build, so resume is refused") from None


def prepare_directory(out: Path, cfg: BuildConfig, n_records: int, resume: bool) -> None:
    """Apply the directory rules of the module docstring before any evaluation."""
    saved = out / CONFIG_NAME
    if n_records and not resume:
        raise BuildError(f"{out} already holds a build ({n_records} evaluations); pass --resume to continue "
                         "it, or choose another --out")
    if n_records:
        if not saved.exists():
            raise BuildError(f"{out} holds {n_records} evaluations but no {CONFIG_NAME}; it cannot be checked "
                             "against this config, so resume is refused (use another --out)")
        diff = config_differences(recorded_config(saved), cfg.canonical())
        if diff:
            raise BuildError(f"cannot resume {out} with a different config: {'; '.join(diff)} "
                             f"(resume with the recorded values, see {saved}, or use another --out)")
        return
    for name in STALE_WHEN_EMPTY:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    atomic_write_text(saved, config_yaml(cfg))


def check_records(records: Iterable[Mapping[str, Any]], path: Path, cfg: BuildConfig, depth: int,
                  split: str = "accuracy_val") -> None:
    """Refuse records that were not measured under ``cfg``'s channels and SNR grid on a ``depth``-block model."""
    labels = [c.label for c in cfg.channel.kinds]
    grid = [float(s) for s in cfg.channel.snr_grid_db]
    for n, rec in enumerate(records, start=1):
        where = f"{path}: line {n}"
        try:
            r, acc = rec["r"], rec[split]
            snrs = {k: [float(p["snr_db"]) for p in v] for k, v in acc.items()}
        except (KeyError, TypeError, AttributeError) as err:
            raise BuildError(f"{where} is not an evaluation record (missing {err})") from None
        if len(r) != depth:
            raise BuildError(f"{where} has a schedule of {len(r)} layers, the model has {depth}")
        thresholds = rec.get("thresholds") if rec.get("merging") == "thresholds" else None
        if rec.get("merging") == "thresholds" and (not isinstance(thresholds, list) or len(thresholds) != depth
                                                   or not isinstance(rec.get("cost_distribution"), dict)):
            raise BuildError(f"{where} is a threshold record without {depth} thresholds and a cost distribution")
        if sorted(snrs) != sorted(labels):
            raise BuildError(f"{where} was measured on channels {sorted(snrs)}, the config has {sorted(labels)}")
        for label, points in snrs.items():
            if points != grid:
                raise BuildError(f"{where} was measured on {label} at SNRs {points}, the config's grid is {grid}")
