"""NAB scoring and event metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smartmetrics.evaluation.scoring import (
    PROFILES,
    EventTally,
    coverage,
    event_tally,
    nab_normalised,
    nab_raw_score,
    probation_rows,
    width_over_iqr,
)

STANDARD, LOW_FP, LOW_FN = PROFILES
N = 100  # probation = 15 rows
WINDOW = (40, 49)  # 10 rows, relative position -1 at row 40 and 0 at row 49


def detections(*rows: int, n: int = N) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(rows)] = True
    return out


def test_probation_is_fifteen_percent_capped_at_750() -> None:
    assert probation_rows(N) == 15
    assert probation_rows(4033) == 604
    assert probation_rows(100_000) == 750


def test_perfect_detector_scores_100_and_null_scores_0() -> None:
    for profile in PROFILES:
        assert nab_normalised([(detections(40), [WINDOW])], profile) == pytest.approx(100.0)
        assert nab_normalised([(detections(), [WINDOW])], profile) == pytest.approx(0.0)


def test_late_detection_scores_less_than_early_one() -> None:
    at_end = nab_normalised([(detections(49), [WINDOW])], STANDARD)
    middle = nab_raw_score(detections(46), [WINDOW], STANDARD)
    # p = -3/9: (2 sigmoid(5/3) - 1) / (2 sigmoid(5) - 1)
    expected = (2 / (1 + math.exp(-5 / 3)) - 1) / (2 / (1 + math.exp(-5)) - 1)
    assert middle == pytest.approx(expected, abs=1e-9)
    assert middle == pytest.approx(0.69152, abs=1e-4)
    assert at_end == pytest.approx(50.0)  # p = 0 scores 0 -> halfway between null (-1) and perfect (1)


def test_only_earliest_detection_in_a_window_counts() -> None:
    assert nab_raw_score(detections(40, 49), [WINDOW], STANDARD) == pytest.approx(1.0)


def test_false_positive_without_preceding_window_costs_full_fp_weight() -> None:
    assert nab_raw_score(detections(20, 40), [WINDOW], STANDARD) == pytest.approx(1.0 - 0.11)
    assert nab_raw_score(detections(20, 40), [WINDOW], LOW_FP) == pytest.approx(1.0 - 0.22)
    assert nab_normalised([(detections(20, 40), [WINDOW])], STANDARD) == pytest.approx(94.5)


def test_false_positive_just_after_a_window_costs_less_than_far_after() -> None:
    just_after = nab_raw_score(detections(40, 50), [WINDOW], STANDARD) - 1.0
    one_width = nab_raw_score(detections(40, 58), [WINDOW], STANDARD) - 1.0
    far = nab_raw_score(detections(40, 77), [WINDOW], STANDARD) - 1.0
    assert just_after == pytest.approx(0.11 * (2 / (1 + math.exp(5 / 9)) - 1))  # p = 1/9
    assert just_after == pytest.approx(-0.029793, abs=1e-5)
    assert one_width == pytest.approx(0.11 * (2 / (1 + math.exp(5)) - 1))  # p = 1
    assert far == pytest.approx(-0.11)  # p > 3 -> -1
    assert just_after > one_width > far


def test_detections_in_probation_are_ignored_and_missed_window_costs_fn() -> None:
    assert nab_raw_score(detections(5), [WINDOW], STANDARD) == pytest.approx(-1.0)
    assert nab_raw_score(detections(5), [WINDOW], LOW_FN) == pytest.approx(-2.0)


def test_normalisation_sums_raw_scores_over_files() -> None:
    files = [(detections(40), [WINDOW]), (detections(), [WINDOW]), (detections(20), [])]
    # raw = 1 - 1 - 0.11, null = -2, perfect = 2
    assert nab_normalised(files, STANDARD) == pytest.approx(100 * (-0.11 + 2) / 4)


def test_event_tally_matches_onsets_with_tolerance() -> None:
    t = np.arange(0, 3600, 60)
    onsets = np.isin(t, [600, 1260, 3000])
    tally = event_tally(t, onsets, [(540, 1200), (2000, 2100)], tolerance=60)
    assert (tally.events, tally.detected, tally.false_alerts) == (2, 1, 1)
    assert tally.delays == [60.0]  # 1260 is inside (540, 1200+60] but only the earliest onset counts
    assert tally.precision() == pytest.approx(0.5)
    assert tally.recall() == pytest.approx(0.5)
    assert tally.f1() == pytest.approx(0.5)


def test_event_tally_accumulates_and_handles_no_alerts() -> None:
    total = EventTally()
    total.add(event_tally(np.arange(10), np.zeros(10, bool), [(2, 3)], tolerance=0))
    assert total.f1() == 0.0 and math.isnan(total.precision())
    total.add(event_tally(np.arange(10), np.isin(np.arange(10), [3]), [(2, 3)], tolerance=0))
    assert (total.events, total.detected, total.median_delay()) == (2, 1, 1.0)


def test_coverage_and_width() -> None:
    values = np.array([0.0, 1.0, 2.0, np.nan, 10.0])
    inside, judged = coverage(values, np.zeros(5), np.full(5, 2.0))
    assert (inside, judged) == (3, 4)
    assert math.isnan(width_over_iqr(np.ones(5), np.zeros(5), np.ones(5)))
