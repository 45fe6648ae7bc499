"""The tuning trade-off chart: every candidate has a place of its own (issue 24: on a symlog axis of
rate against detection most of them lay on top of each other)."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from smartmetrics.evaluation.tune import FOR_POINTS, SENSITIVITIES, Outcome, choose
from smartmetrics.render.tradeoff import render_tradeoff_figure

PX = 6.0
"""Markers closer than this many pixels read as one."""


def crowded_outcomes() -> list[Outcome]:
    """A table like the notebook's: most candidates raise no alert, several catch the same share."""
    out = []
    for i, s in enumerate(SENSITIVITIES):
        for k in FOR_POINTS:
            alerts = max(0, i - 3) * (5 - k)  # 0 for the four lowest sensitivities, whatever `for`
            caught = min(37, 25 + 4 * i - (k - 1))  # 37/54 from 0.5 on, as in issue 24
            out.append(Outcome(s, k, alerts, 7.7, caught, 54))
    return out


def marker_pixels(ax) -> np.ndarray:
    """Display coordinates of every marker drawn in an axes (the scatter collections)."""
    points = [c.get_offsets() for c in ax.collections if len(c.get_offsets())]
    return ax.transData.transform(np.concatenate(points))


def test_every_candidate_has_its_own_place_in_both_panels() -> None:
    outcomes = crowded_outcomes()
    assert len({(o.rate, o.recall) for o in outcomes}) < len(outcomes)  # a rate/recall scatter cannot separate them
    fig = render_tradeoff_figure(outcomes, 1.0, budget_text="1/week")
    fig.canvas.draw()
    for ax in fig.axes:
        xy = marker_pixels(ax)
        assert len(xy) >= len(outcomes)
        candidates = xy[: len(outcomes)]
        closest = min(float(np.hypot(*(a - b))) for a, b in combinations(candidates, 2))
        assert closest >= PX, closest


def test_the_pick_is_ringed_and_over_budget_is_hollow() -> None:
    outcomes = crowded_outcomes()
    pick = choose(outcomes, 1.0)
    fig = render_tradeoff_figure(outcomes, 1.0, pick=pick, budget_text="1/week", step=300)
    top = fig.axes[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "recommended" in labels and "budget 1/week" in labels and "for 2 points (5 min)" in labels
    over = [o for o in outcomes if o.rate > 1.0]
    white = [c for c in top.collections if len(c.get_facecolor()) and np.allclose(c.get_facecolor()[:, :3], 1.0)]
    hollow = sum(len(c.get_offsets()) for c in white)
    assert over and hollow == len(over)
    assert -0.1 < top.get_ylim()[0] < 0 and top.get_yscale() == "linear"  # 0 alerts drawn whole, on a linear axis
