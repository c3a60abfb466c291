"""The convergence figure: hypervolume against evaluations, one line per search method."""

from __future__ import annotations

from typing import TYPE_CHECKING

from paretoctl.plots.style import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["METHOD_LABELS", "convergence_figure"]

METHOD_LABELS: dict[str, str] = {
    "botorch": "BoTorch qLogNEHVI",
    "sobol": "Sobol random search",
    "nsga2": "NSGA-II",
    "random": "random search",
    "uniform": "ToMe uniform schedules",
}
"""Legend names of the search methods; an unknown method keeps its own name."""


def convergence_figure(methods: dict[str, list[tuple[int, float]]], subtitle: str = "") -> Figure:
    """Hypervolume against the number of evaluations, one line per search method.

    A higher curve reaches a better front with fewer (expensive) evaluations; BoTorch is drawn
    boldest because it is the method the project ships.

    Args:
        methods: {method: [(n_evals, hypervolume), ...]} sorted by n_evals (as
            :func:`paretoctl.plots.inputs.load_convergence` returns them).
        subtitle: a second title line (objectives, reference point), or ``""``.
    """
    fig = new_figure(7.6, 4.8)
    ax = fig.subplots()
    for name in sorted(methods, key=lambda n: (n != "botorch", n)):
        rows = methods[name]
        ax.step([r[0] for r in rows], [r[1] for r in rows], where="post", marker="o", ms=3,
                lw=2.4 if name == "botorch" else 1.4, label=METHOD_LABELS.get(name, name))
    ax.set_xlabel("Number of evaluations (schedules scored)")
    ax.set_ylabel("Dominated hypervolume (higher is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(title="Search method", loc="lower right")
    title = "Search convergence: hypervolume of the front found so far (validation split)"
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize="medium")
    return fig
