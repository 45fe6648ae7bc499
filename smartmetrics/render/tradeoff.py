"""The tuning trade-off as a picture: per sensitivity and `for`, the alerts history raised and the
injected excursions caught.

One panel each, over the sensitivities side by side, with the `for` values dodged around each:
every candidate has its own place, however many share an alert rate of 0 or a detection share (a
scatter of rate against detection puts most of them on one spot). The budget is a line on the
alert panel, candidates over it are drawn hollow, and the pick is ringed in both panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from smartmetrics.render.plots import ALERT_COLOUR, LINE_COLOUR  # also selects the Agg backend

FOR_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
DODGE = 0.6
"""Share of the space between two sensitivities that their `for` values spread over."""


class Candidate(Protocol):
    """What the chart reads of a tuning outcome (`smartmetrics.evaluation.tune.Outcome`)."""

    sensitivity: float | str
    for_points: int
    caught: int
    injected: int

    @property
    def rate(self) -> float: ...

    @property
    def recall(self) -> float: ...


def candidate_positions(outcomes: Sequence[Candidate]) -> dict[tuple[str, int], float]:
    """x of each (sensitivity, `for`): the sensitivity's index, moved by its `for`'s place.

    >>> class O: pass
    >>> a, b = O(), O(); a.sensitivity, a.for_points, b.sensitivity, b.for_points = 0.5, 1, 0.5, 2
    >>> candidate_positions([a, b])
    {('0.5', 1): -0.15, ('0.5', 2): 0.15}
    """
    sensitivities = list(dict.fromkeys(str(o.sensitivity) for o in outcomes))
    fors = sorted({o.for_points for o in outcomes})
    width = DODGE / len(fors)
    return {(str(o.sensitivity), o.for_points):
            round(sensitivities.index(str(o.sensitivity)) + (fors.index(o.for_points) - (len(fors) - 1) / 2) * width, 6)
            for o in outcomes}


def render_tradeoff_figure(outcomes: Sequence[Candidate], budget: float, *, pick: Candidate | None = None,
                           budget_text: str = "", step: int | None = None) -> Figure:
    """Alerts per series-week (top) and share of injected excursions caught (bottom) per candidate."""
    x_of = candidate_positions(outcomes)
    fors = sorted({o.for_points for o in outcomes})
    sensitivities = list(dict.fromkeys(str(o.sensitivity) for o in outcomes))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.4), sharex=True, dpi=110)
    for colour, k in zip(FOR_COLOURS * 4, fors):
        pts = [o for o in outcomes if o.for_points == k]
        xs = np.array([x_of[str(o.sensitivity), k] for o in pts])
        within = np.array([o.rate <= budget for o in pts], dtype=bool)
        label = f"for {k} point{'s' if k > 1 else ''}" + (f" ({(k - 1) * step // 60} min)" if step else "")
        for ax, ys in ((top, [o.rate for o in pts]), (bottom, [o.recall for o in pts])):
            ys = np.array(ys, dtype=np.float64)
            ax.plot(xs, ys, color=colour, linewidth=0.8, alpha=0.5)
            ax.scatter(xs[within], ys[within], color=colour, s=30, zorder=3, label=label)
            ax.scatter(xs[~within], ys[~within], facecolors="white", edgecolors=colour, s=30, zorder=3)
    top.axhline(budget, color=ALERT_COLOUR, linestyle="--", linewidth=1,
                label=f"budget {budget_text or f'{budget:g}/week'}")
    if pick is not None:
        x = x_of[str(pick.sensitivity), pick.for_points]
        for ax, y in ((top, pick.rate), (bottom, pick.recall)):
            ax.scatter([x], [y], s=160, facecolors="none", edgecolors=LINE_COLOUR, linewidths=1.5, zorder=4,
                       label="recommended" if ax is top else None)
    rates = [o.rate for o in outcomes]
    ceiling = max(max(rates, default=0.0), budget) * 1.12 or 1.0
    top.set_ylim(-0.04 * ceiling, ceiling)  # a rate of 0 drawn whole, not cut by the axis
    top.set_ylabel("alerts per series-week\non history (hollow: over budget)")
    bottom.set_ylim(-0.03, 1.03)
    bottom.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    bottom.set_ylabel("injected excursions caught")
    bottom.set_xticks(range(len(sensitivities)), sensitivities)
    bottom.set_xlabel("sensitivity (higher: tighter band)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
        for i in range(len(sensitivities) - 1):
            ax.axvline(i + 0.5, color="#e5e7eb", linewidth=0.8)
    top.set_title("Sensitivity trade-off: alerts on history against excursions caught", loc="left", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncols=len(labels), loc="lower center", frameon=False)
    return fig
