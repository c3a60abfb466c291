"""Reading what the plots are drawn from: a front file or a build directory (no matplotlib).

Everything is read and checked before anything is drawn, so a bad input fails fast with one line
(:class:`PlotInputError`, or the schema's ``FrontLoadError``) and leaves no partial output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paretoctl.service.schema import FrontArtifact

__all__ = ["Convergence", "PlotInput", "PlotInputError", "convergence_subtitle", "front_file",
           "load_convergence", "read_plot_input"]


class PlotInputError(Exception):
    """An input to the plots (path, build directory, convergence file) is unusable.

    Raised instead of a bare ``OSError``/``KeyError`` so the CLI can print one clear line.
    """


@dataclass(frozen=True)
class Convergence:
    """The contents of a build's ``convergence.json``.

    Attributes:
        methods: {method: [(n_evals, hypervolume), ...]} sorted by n_evals.
        objectives: the objectives' names, for the subtitle.
        ref_point: the hypervolume reference point.
    """

    methods: dict[str, list[tuple[int, float]]]
    objectives: list[str]
    ref_point: list[float]


def load_convergence(path: Path) -> Convergence:
    """Read and check ``convergence.json`` (layout in docs/internals.md).

    Raises:
        PlotInputError: the file is missing, not JSON (NaN/Infinity refused), or not shaped as
            documented; the message starts with the path.
    """
    from paretoctl.service.latency import read_document

    doc: Any = read_document(path, kind="json", what="convergence file", error=PlotInputError)
    methods = doc.get("methods") if isinstance(doc, dict) else None
    if not isinstance(methods, dict) or not methods:
        raise PlotInputError(f"{path}: expected an object with a non-empty 'methods' mapping")
    out: dict[str, list[tuple[int, float]]] = {}
    for name, rows in methods.items():
        try:
            out[str(name)] = sorted((int(r["n_evals"]), float(r["hypervolume"])) for r in rows)
        except (TypeError, KeyError, ValueError) as exc:
            raise PlotInputError(
                f"{path}: method {name!r} needs a list of {{n_evals, hypervolume}} rows ({exc!r})"
            ) from exc
    try:
        objectives = [str(o) for o in doc.get("objectives", [])]
        ref_point = [float(v) for v in doc.get("ref_point", [])]
    except (TypeError, ValueError) as exc:
        raise PlotInputError(f"{path}: 'objectives' must be names and 'ref_point' numbers ({exc!r})") from exc
    return Convergence(out, objectives, ref_point)


def convergence_subtitle(objectives: Sequence[str], ref_point: Sequence[float]) -> str:
    """``objectives: a, b, c; reference point: (x, y, z)``, or ``""`` without objectives."""
    if not objectives:
        return ""
    text = "objectives: " + ", ".join(objectives)
    if ref_point:
        text += "; reference point: (" + ", ".join(f"{v:g}" for v in ref_point) + ")"
    return text


@dataclass(frozen=True)
class PlotInput:
    """Everything a ``paretoctl plot`` run draws from, read and checked.

    Attributes:
        front_path: the front file that was loaded (for messages).
        front: the loaded artifact.
        convergence: the build directory's convergence curves; ``None`` for a bare front file or a
            build directory without ``convergence.json``.
    """

    front_path: Path
    front: FrontArtifact
    convergence: Convergence | None


def front_file(source: Path | str) -> Path:
    """The front file a source (front file or build directory) refers to."""
    src = Path(source)
    return src / "front.json" if src.is_dir() else src


def read_plot_input(source: Path | str) -> PlotInput:
    """Load a front file, or a build directory's ``front.json`` and ``convergence.json``.

    Raises:
        PlotInputError: the path is missing, or the build directory lacks ``front.json`` or has a
            malformed ``convergence.json``.
        paretoctl.service.schema.FrontLoadError: the front is malformed, of the wrong version or has a bad
            checksum (its ``.reason`` says which).
    """
    from paretoctl.service.schema import load_front

    src = Path(source)
    if src.is_dir():
        front_path = src / "front.json"
        if not front_path.is_file():
            raise PlotInputError(f"{src} is a directory but has no front.json (is it a build directory?)")
    elif src.is_file():
        front_path = src
    else:
        raise PlotInputError(f"{src} does not exist")
    front = load_front(front_path)
    conv = src / "convergence.json" if src.is_dir() else None
    convergence = load_convergence(conv) if conv is not None and conv.is_file() else None
    return PlotInput(front_path, front, convergence)
