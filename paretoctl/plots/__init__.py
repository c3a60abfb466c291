"""Figures of a Pareto front artifact and of a build directory.

The figures are for people who have never seen the project (README, RESULTS.md, reviews of a
build), so every axis carries its unit and every title says what is shown and on which split.

The package is split by job:

* data, no matplotlib: :mod:`.inputs` (reading a front file or build directory, ``convergence.json``),
  :mod:`.selection` (which configurations, at which SNR, highlights), :mod:`.policy_grid` (the policy
  map's cells, from the service's own ``select``), :mod:`.schedules` (tokens left after each block);
* drawing, matplotlib imported inside the functions: :mod:`.style`, :mod:`.draw_front`,
  :mod:`.draw_policy`, :mod:`.draw_schedule`, :mod:`.draw_convergence`;
* :mod:`.output`: rendering to reproducible PNG/SVG bytes and writing them atomically.

matplotlib is an optional dependency (the ``[plot]`` extra), so importing this package never imports it.

Example:
    >>> from paretoctl.plots import plot_path
    >>> written = plot_path("runs/default/front.json", "figures")  # doctest: +SKIP
"""

from __future__ import annotations

from paretoctl.plots.draw_convergence import convergence_figure
from paretoctl.plots.draw_front import accuracy_snr_figure, front_figure
from paretoctl.plots.draw_policy import policy_map_figure
from paretoctl.plots.draw_schedule import schedule_figure
from paretoctl.plots.inputs import (
    Convergence,
    PlotInput,
    PlotInputError,
    convergence_subtitle,
    front_file,
    load_convergence,
    read_plot_input,
)
from paretoctl.plots.output import FORMATS, plot_front, plot_path, render, save
from paretoctl.plots.policy_grid import PolicyGrid, choice_boundaries, policy_grid
from paretoctl.plots.schedules import MAX_SCHEDULE_LINES, ScheduleSelection, select_schedules, tokens_left
from paretoctl.plots.selection import (
    SPLIT_NAMES,
    Highlights,
    accuracy_at,
    accuracy_curve,
    channel_kinds,
    config_map,
    envelope,
    find_highlights,
    front_ids,
    is_adaptive,
    mean_accuracy,
    thin_out,
)
from paretoctl.plots.style import CHANNEL_NAMES

__all__ = [
    "CHANNEL_NAMES",
    "FORMATS",
    "MAX_SCHEDULE_LINES",
    "SPLIT_NAMES",
    "Convergence",
    "Highlights",
    "PlotInput",
    "PlotInputError",
    "PolicyGrid",
    "ScheduleSelection",
    "accuracy_at",
    "accuracy_curve",
    "accuracy_snr_figure",
    "channel_kinds",
    "choice_boundaries",
    "config_map",
    "convergence_figure",
    "convergence_subtitle",
    "envelope",
    "find_highlights",
    "front_figure",
    "front_file",
    "front_ids",
    "is_adaptive",
    "load_convergence",
    "mean_accuracy",
    "plot_front",
    "plot_path",
    "policy_grid",
    "policy_map_figure",
    "read_plot_input",
    "render",
    "save",
    "schedule_figure",
    "select_schedules",
    "thin_out",
    "tokens_left",
]
