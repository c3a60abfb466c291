"""The front artifact: writing, checksum, and the loader's refusals (each with the right reason)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from paretoctl.service.schema import (
    SCHEMA_VERSION,
    FrontArtifact,
    FrontLoadError,
    compute_checksum,
    dump_front,
    load_front,
)
from tests.fronts import assemble_front, front_document, hand_config, make_front, write_document


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return front_document(make_front(depth=4, channels=("awgn", "rayleigh"), n_configs=5, seed=1))


def resign(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with a checksum that matches its (edited) content."""
    doc = copy.deepcopy(doc)
    doc["checksum"] = compute_checksum(doc)
    return doc


def load_doc(tmp_path: Path, doc: dict[str, Any]) -> FrontArtifact:
    return load_front(write_document(tmp_path / "front.json", doc))


def refusal(tmp_path: Path, doc: dict[str, Any]) -> FrontLoadError:
    with pytest.raises(FrontLoadError) as info:
        load_doc(tmp_path, doc)
    return info.value


def test_checksum_is_sha256_of_canonical_json_without_the_checksum_key(doc: dict[str, Any]) -> None:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert doc["checksum"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert compute_checksum({**doc, "checksum": "whatever"}) == doc["checksum"]


def test_dump_then_load_round_trips(tmp_path: Path) -> None:
    front = make_front(depth=6, snr_grid_db=(0, 10, 20), channels=("awgn", "rician"), n_configs=7, seed=4)
    written = dump_front(front, tmp_path / "sub" / "front.json")
    loaded = load_front(tmp_path / "sub" / "front.json")
    assert loaded == written
    assert loaded.checksum is not None and loaded.checksum.startswith("sha256:")
    assert loaded.schema_version == SCHEMA_VERSION
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["front.json"]  # no temp file left


def test_load_from_bytes_and_reformatted_file(tmp_path: Path, doc: dict[str, Any]) -> None:
    """The checksum is over the parsed document, so indentation and key order do not matter."""
    assert load_front(json.dumps(doc).encode()).checksum == doc["checksum"]
    reordered = dict(reversed(list(doc.items())))
    (tmp_path / "f.json").write_text(json.dumps(reordered, indent=7))
    assert load_front(tmp_path / "f.json").checksum == doc["checksum"]


def test_dump_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "front.json"
    target.write_text("old")

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("paretoctl.service.fileio.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        dump_front(make_front(n_configs=2), target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["front.json"]


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"front"'])
def test_malformed_json(tmp_path: Path, text: str) -> None:
    (tmp_path / "f.json").write_text(text)
    with pytest.raises(FrontLoadError) as info:
        load_front(tmp_path / "f.json")
    assert info.value.reason == "malformed"


def test_nan_is_malformed(tmp_path: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc).replace('"seed": 1', '"seed": NaN')
    with pytest.raises(FrontLoadError) as info:
        load_front(text.encode())
    assert info.value.reason == "malformed" and "NaN" in info.value.message


def test_unreadable_file_is_malformed_and_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FrontLoadError) as info:
        load_front(tmp_path / "missing.json")
    assert info.value.reason == "malformed" and "missing.json" in info.value.message


@pytest.mark.parametrize("version", ["paretoctl.front/1", "paretoctl.front/3", "other"])
def test_unknown_version(tmp_path: Path, doc: dict[str, Any], version: str) -> None:
    err = refusal(tmp_path, resign({**doc, "schema_version": version}))
    assert err.reason == "version" and version in err.message


def test_missing_version_is_malformed(tmp_path: Path, doc: dict[str, Any]) -> None:
    bad = resign({k: v for k, v in doc.items() if k != "schema_version"})
    err = refusal(tmp_path, bad)
    assert err.reason == "malformed" and "schema_version" in err.message


def test_tampered_value_fails_the_checksum(tmp_path: Path, doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    bad["configs"][1]["accuracy_test"]["awgn"][2]["mean"] = 0.99  # a "better" number, hand-edited
    err = refusal(tmp_path, bad)
    assert err.reason == "checksum"
    assert doc["checksum"] in err.message


def test_missing_checksum_is_malformed(tmp_path: Path, doc: dict[str, Any]) -> None:
    err = refusal(tmp_path, {k: v for k, v in doc.items() if k != "checksum"})
    assert err.reason == "malformed" and "checksum" in err.message


def test_missing_field_names_it(tmp_path: Path, doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    del bad["provenance"]["seed"]
    err = refusal(tmp_path, resign(bad))
    assert err.reason == "malformed" and "provenance.seed" in err.message


def _edit(doc: dict[str, Any], fn: Any) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    fn(bad)
    return resign(bad)


INVARIANTS = {
    "short accuracy list": (lambda d: d["configs"][0]["accuracy_val"]["awgn"].pop(), "accuracy_val.awgn"),
    "accuracy not in grid order": (
        lambda d: d["configs"][0]["accuracy_test"]["rayleigh"].reverse(), "accuracy_test.rayleigh[0].snr_db"),
    "accuracy above 1": (lambda d: d["configs"][2]["accuracy_val"]["awgn"][0].update(mean=1.2),
                         "configs.2.accuracy_val.awgn.0.mean"),
    "channel missing from table": (lambda d: d["configs"][1]["accuracy_val"].pop("rayleigh"), "accuracy_val"),
    "proportion above 1": (lambda d: d["configs"][1]["proportions"].__setitem__(0, 1.5),
                           "configs.1.proportions.0"),
    "proportions length": (lambda d: d["configs"][1]["proportions"].append(0.0), "proportions: length 5"),
    "r length": (lambda d: d["configs"][1]["r"].pop(), "r: length 3"),
    "tokens length": (lambda d: d["configs"][1]["tokens_per_layer"].pop(), "tokens_per_layer"),
    "grid not increasing": (lambda d: d["provenance"]["snr_grid_db"].__setitem__(1, -10.0), "strictly increasing"),
    "duplicate id": (lambda d: d["configs"][2].update(id=d["configs"][1]["id"]), "duplicate id"),
    "unknown pareto id": (lambda d: d["pareto"][0]["config_ids"].append("ghost"), "ghost"),
    "unknown reference": (lambda d: d.update(reference_config_id="nope"), "reference_config_id"),
    "extra key": (lambda d: d["configs"][0].update(acuracy=1), "configs.0.acuracy"),
    "non-positive rate": (lambda d: d["device_profile"].update(symbol_rate_hz=0), "device_profile.symbol_rate_hz"),
}


@pytest.mark.parametrize("case", sorted(INVARIANTS))
def test_broken_invariant_is_malformed_and_says_where(tmp_path: Path, doc: dict[str, Any], case: str) -> None:
    fn, needle = INVARIANTS[case]
    err = refusal(tmp_path, _edit(doc, fn))
    assert err.reason == "malformed"
    assert needle in err.message, err.message


def test_the_unedited_document_loads(tmp_path: Path, doc: dict[str, Any]) -> None:
    """Control for the refusal tests: the same path and helpers accept the original."""
    assert load_doc(tmp_path, doc).checksum == doc["checksum"]
    assert load_doc(tmp_path, resign(doc)).checksum == doc["checksum"]


# ------------------------------------------------------------------ schedule consistency (issue #11.3)
# The fixture's front: depth 4, 16 patches + 1 cls token, split_index 2.

SCHEDULE_BREAKS = {
    # r that its proportions do not give (tokens kept consistent with the wrong r)
    "r": (lambda c: (c["r"].__setitem__(0, c["r"][0] + 1),
                     c["tokens_per_layer"].__setitem__(slice(1, None), [t - 1 for t in c["tokens_per_layer"][1:]])),
          "configs[1] (id 'cfg001').r:"),
    # prefix token left out of the counts
    "no prefix": (lambda c: c.update(tokens_per_layer=[t - 1 for t in c["tokens_per_layer"]]),
                  "configs[1] (id 'cfg001').tokens_per_layer:"),
    # tokens LEAVING each block instead of entering it (the build's old convention)
    "leaving": (lambda c: c.update(tokens_per_layer=[t - r for t, r in zip(c["tokens_per_layer"], c["r"],
                                                                             strict=True)]),
                "configs[1] (id 'cfg001').tokens_per_layer:"),
    # tokens entering block split_index + 1 instead of split_index
    "tokens_sent": (lambda c: c.update(tokens_sent=c["tokens_per_layer"][3]),
                    "configs[1] (id 'cfg001').tokens_sent:"),
}


@pytest.mark.parametrize("case", sorted(SCHEDULE_BREAKS))
def test_inconsistent_schedule_is_malformed_naming_config_and_field(tmp_path: Path, doc: dict[str, Any],
                                                                    case: str) -> None:
    fn, needle = SCHEDULE_BREAKS[case]
    cfg = doc["configs"][1]
    assert sum(cfg["r"]) > 0 and cfg["r"][2] > 0  # the edits below change something
    err = refusal(tmp_path, _edit(doc, lambda d: fn(d["configs"][1])))
    assert err.reason == "malformed"
    assert needle in err.message, err.message


def test_schedule_rules_by_hand_including_a_split_after_the_last_block(tmp_path: Path) -> None:
    """16 patches + 1 cls, p = [1, .5, 0, 1]: r = [8, 2, 0, 3] (u = 16, 8, 6, 6), entering [17, 9, 7, 7].

    With split_index == depth the tokens sent are those leaving the last block: 7 - 3 = 4.
    """
    props = [1.0, 0.5, 0.0, 1.0]
    cfg = hand_config("c", {"awgn": [0.5] * 5}, depth=4, proportions=props, num_patches=16, split_index=4)
    assert cfg["r"] == [8, 2, 0, 3] and cfg["tokens_per_layer"] == [17, 9, 7, 7] and cfg["tokens_sent"] == 4
    front = assemble_front([cfg], depth=4, num_patches=16, split_index=4)
    dump_front(front, tmp_path / "f.json")
    assert load_front(tmp_path / "f.json").configs[0].tokens_sent == 4
    with pytest.raises(ValueError, match=r"tokens_sent: 7, expected 4"):
        assemble_front([{**cfg, "tokens_sent": 7}], depth=4, num_patches=16, split_index=4)
    split0 = hand_config("c", {"awgn": [0.5] * 5}, depth=4, proportions=props, num_patches=16, split_index=0)
    assert split0["tokens_sent"] == 17  # nothing runs on the edge: every token is sent
    assemble_front([split0], depth=4, num_patches=16, split_index=0)


# ------------------------------------------------------------------------- file handling (#11.4, #11.5)


def test_dump_front_is_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        dump_front(make_front(n_configs=2), tmp_path / "front.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "front.json").stat().st_mode) == 0o644


def test_size_cap_refuses_large_files_and_documents(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = write_document(tmp_path / "f.json", doc)
    size = path.stat().st_size
    assert load_front(path, max_bytes=size).checksum == doc["checksum"]
    with pytest.raises(FrontLoadError, match="max_front_bytes") as info:
        load_front(path, max_bytes=size - 1)
    assert info.value.reason == "malformed"
    with pytest.raises(FrontLoadError, match="max_front_bytes"):
        load_front(path.read_bytes(), max_bytes=size - 1)


def test_non_regular_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_front(fifo)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=5)
    if t.is_alive():  # unblock the reader so the thread ends, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("load_front blocked on a FIFO")
    (err,) = outcome
    assert isinstance(err, FrontLoadError) and "not a regular file" in err.message
    with pytest.raises(FrontLoadError, match="not a regular file"):
        load_front("/dev/zero", max_bytes=1000)
    with pytest.raises(FrontLoadError, match="not a regular file"):
        load_front(tmp_path)


def test_artifact_holds_no_mutable_cache() -> None:
    """The frozen artifact has no private state that a copy could share (issue #10)."""
    front = make_front(n_configs=2)
    assert not front.__pydantic_private__
    assert front.model_copy(update={"checksum": None}).__pydantic_private__ in (None, {})
