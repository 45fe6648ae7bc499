"""Following a new level between retrains (smartmetrics.engine.follow): the replay and the stored-band side."""

from __future__ import annotations

import numpy as np
import pytest

from smartmetrics.engine.follow import follow_band, held_back, held_out, replay_follow
from smartmetrics.engine.state import SeriesBand

STEP = 300
DAY = 86400


def day_of(values: np.ndarray) -> tuple[np.ndarray, ...]:
    """A day at 5 minutes predicted as 100 +- 5 by one model: (timestamps, yhat, lower, upper, no limits)."""
    t = np.arange(len(values), dtype=np.int64) * STEP
    n = len(values)
    return t, np.full(n, 100.0), np.full(n, 95.0), np.full(n, 105.0)


def noisy(n: int, seed: int = 0) -> np.ndarray:
    return 100 + np.random.default_rng(seed).normal(0, 1, n)


def test_a_level_held_for_an_hour_is_followed_and_the_old_level_stays_inside() -> None:
    values = noisy(288)
    values[100:] += 30  # a deploy at 08:20 moves the series for good
    t, yhat, lower, upper = day_of(values)
    y, lo, hi = replay_follow(t, values, yhat, lower, upper, (), [(0, DAY)])
    outside = (values < lo) | (values > hi)
    # 11 of the trailing hour's 12 points are beyond the edge at 09:10: until then the band stays
    assert outside[100:111].all()  # (its onset is the alert)
    assert not outside[111:].any()  # then it covers the new level for the rest of the day
    assert (lo[111:] <= 95).all() and (hi[111:] >= 130).all()  # ...and the old one: a rollback is no alert
    assert abs(y[150] - 130) < 1 and (y[:111] == 100).all()


def test_a_shorter_excursion_or_one_that_keeps_crossing_back_is_not_followed() -> None:
    values = noisy(288)
    values[100:110] += 30  # 50 minutes away, then back
    values[150:200] += np.where(np.arange(50) % 4 == 0, 0, 30)  # a quarter of the points back inside
    t, yhat, lower, upper = day_of(values)
    y, lo, hi = replay_follow(t, values, yhat, lower, upper, (), [(0, DAY)])
    assert (y == 100).all() and (lo == 95).all() and (hi == 105).all()


def test_noise_crossing_back_now_and_then_does_not_stop_the_follow() -> None:
    values = noisy(288)
    values[100:] += np.where(np.arange(188) % 12 == 5, 0, 30)  # one point in twelve back inside
    t, yhat, lower, upper = day_of(values)
    y, _, _ = replay_follow(t, values, yhat, lower, upper, (), [(0, DAY)])[:3]
    assert abs(y[-1] - 130) < 1


@pytest.mark.parametrize(("absorb", "followed"), [("down", False), ("up", True), ("both", True)])
def test_absorb_says_which_moves_are_followed(absorb: str, followed: bool) -> None:
    values = noisy(288)
    values[100:] += 30  # an error rate rising and staying up: with absorb down it keeps alerting
    t, yhat, lower, upper = day_of(values)
    y, lo, hi = replay_follow(t, values, yhat, lower, upper, (), [(0, DAY)], absorb=absorb)
    assert bool(abs(y[-1] - 130) < 1) == followed
    assert bool(((values < lo) | (values > hi))[150:].any()) != followed


def test_a_follow_stays_within_its_model_and_moves_the_trailing_mean_limits_too() -> None:
    values = noisy(2 * 288)
    values[200:] += 30
    t, yhat, lower, upper = day_of(values)
    mean_lo, mean_hi = np.full(len(t), 98.0), np.full(len(t), 102.0)
    y, _, _, m_lo, m_hi = replay_follow(t, values, yhat, lower, upper, (mean_lo, mean_hi), [(0, DAY), (DAY, 2 * DAY)])
    assert abs(y[280] - 130) < 1 and m_lo[280] == 98 and abs(m_hi[280] - 132) < 1
    second = t >= DAY  # the next model is followed on its own: its first hour alerts like a new fit's would
    assert (y[second][:12] == 100).all() and abs(y[-1] - 130) < 1


def outage(n: int = 288) -> np.ndarray:
    """Traffic that drops to a fifth for 100 minutes from 08:20, then comes back."""
    values = noisy(n)
    values[100:120] -= 80
    return values


def test_yhat_goes_back_when_the_series_does_and_the_band_keeps_both_levels() -> None:
    values = outage()
    t, yhat, lower, upper = day_of(values)
    y, lo, hi = replay_follow(t, values, yhat, lower, upper, (), [(0, DAY)])
    assert abs(y[115] - 20) < 1  # followed down at 09:10
    assert abs(y[130] - 20) < 1 and abs(y[131] - 100) < 1  # back once 11 of the hour's 12 points are
    assert (lo[111:] <= 20).all() and (hi[111:] >= 105).all()  # both levels stay inside: no new alert
    assert not ((values < lo) | (values > hi))[111:].any()
    assert held_back(t[100:140], values[100:140], np.full(40, 20.0), -80.0, 3600) == (19, 30)


def test_a_stored_band_goes_back_as_the_replay_does_then_follows_again() -> None:
    start = 1_700_000_000 - 1_700_000_000 % DAY
    values = outage()
    times = start + np.arange(288) * STEP
    down = follow_band(stored(start), (times[:112], values[:112]), float(times[111]))
    assert down.meta["follow"]["shift"] == pytest.approx(-80, abs=1)
    up = follow_band(down, (times[:160], values[:160]), float(times[159]))
    fresh = stored(start)
    y = replay_follow(times, values, fresh.yhat, fresh.lower, fresh.upper, (), [(start, start + DAY)])[0]
    assert up.meta["follow"] == {"at": int(times[130]), "shift": down.meta["follow"]["shift"], "count": 1,
                                 "back": True}
    assert np.allclose(up.yhat, y) and (up.lower == down.lower).all() and (up.upper == down.upper).all()
    assert follow_band(up, (times[:160], values[:160]), float(times[159])) is up  # nothing new
    again = values.copy()
    again[200:] += 40  # a deploy in the evening is followed as the first level was
    moved = follow_band(up, (times[:240], again[:240]), float(times[239]))
    assert moved.meta["follow"]["count"] == 2 and "back" not in moved.meta["follow"]
    assert abs(moved.yhat[-1] - 140) < 1


def test_held_out_needs_the_whole_window_after_the_start() -> None:
    t = np.arange(12) * STEP
    assert held_out(t[:11], np.full(11, 50.0), np.zeros(11), np.ones(11), 3600) is None  # 50 minutes only
    assert held_out(t, np.full(12, 50.0), np.zeros(12), np.ones(12), 3300) == (1, 11)
    assert held_out(t, np.full(12, np.nan), np.zeros(12), np.ones(12), 600) is None  # no data is no evidence


def stored(values_from: float, limits: dict | None = None) -> SeriesBand:
    """A stored day-ahead table from `values_from`: 100 +- 5."""
    n = 288
    meta = {"data_end": values_from - STEP, "training": {"sustained": limits}} if limits else {"data_end": values_from - STEP}
    return SeriesBand({"instance": "a"}, int(values_from), STEP, np.full(n, 100.0), np.full(n, 95.0),
                      np.full(n, 105.0), meta)


def test_a_stored_band_follows_once_as_the_replay_does_and_keeps_a_record() -> None:
    start = 1_700_000_000 - 1_700_000_000 % DAY
    band = stored(start, {"window": 3600, "lower": 98.0, "upper": 102.0})
    values = noisy(288)
    values[100:] += 30
    times = start + np.arange(288) * STEP
    now = float(times[130])
    observed = (times[:131], values[:131])
    moved = follow_band(band, observed, now)
    y, _, hi = replay_follow(times[:131], values[:131], band.yhat[:131], band.lower[:131], band.upper[:131], (),
                              [(start, start + DAY)])
    assert moved.meta["follow"] == {"at": int(times[110]), "shift": pytest.approx(30, abs=1), "count": 1}
    after = np.arange(288) > 110
    assert np.allclose(moved.yhat[after], y[111]) and (moved.yhat[~after] == 100).all()  # from the same point on
    assert (moved.lower[after] == 95).all() and np.allclose(moved.upper[after], hi[111])
    assert moved.meta["training"]["sustained"]["upper"] == pytest.approx(132, abs=1)
    assert moved.meta["training"]["sustained"]["lower"] == 98.0
    assert follow_band(moved, observed, now + STEP) is moved  # the same data again: nothing more to follow
    assert follow_band(band, (times[:108], values[:108]), float(times[107])) is band  # 40 minutes: not yet
    assert follow_band(band, None, now) is band  # nothing read


def test_a_stored_band_records_a_move_it_does_not_absorb_and_looks_only_after_it() -> None:
    start = 1_700_000_000 - 1_700_000_000 % DAY
    band = stored(start)
    values = noisy(288)
    values[100:] += 30
    times = start + np.arange(288) * STEP
    kept = follow_band(band, (times[:131], values[:131]), float(times[130]), absorb="down")
    assert kept.meta["follow"] == {"at": int(times[110]), "shift": None, "count": 0}
    assert (kept.yhat == 100).all() and (kept.upper == 105).all()  # still alerting
    assert follow_band(kept, (times[:121], values[:121]), float(times[120]), absorb="down") is kept
    again = follow_band(kept, (times[:131], values[:131]), float(times[130]), absorb="down")
    assert again.meta["follow"]["at"] == int(times[123])  # the next check needs another hour after the last


def test_backtest_cli_follows_a_deploy_unless_told_not_to(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real engine on three days of a steady series that a deploy moves up at noon of the third."""
    import pandas as pd

    from smartmetrics.app.cli import main

    t = np.arange(0, 3 * DAY, STEP, dtype=np.int64) + 1_700_006_400  # a UTC midnight
    jump = t[0] + 2 * DAY + DAY // 2
    values = 10 + np.random.default_rng(0).normal(0, 0.2, len(t)) + np.where(t >= jump, 5.0, 0.0)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"timestamp": t, "value": values}).to_csv(src, index=False)
    assert main(["backtest", str(src), "--out", str(out), "--follow", "0"]) == 0
    fixed = pd.read_csv(out)
    assert main(["backtest", str(src), "--out", str(out)]) == 0
    followed = pd.read_csv(out)
    when = (pd.to_datetime(fixed.timestamp) - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
    late = when >= jump + 4 * 3600  # past the first hour and the alert's keep_firing_for (2h)
    assert fixed.firing[late].all()  # without following, the rest of the day is one long alert
    assert followed.alert[when >= jump].sum() == 1 and not followed.firing[late].any()
    assert (followed.yhat_lower[late] < 10.5).all() and (followed.yhat_upper[late] > 15).all()
    capsys.readouterr()
    assert main(["backtest", str(src), "--out", str(out), "--follow", "soon"]) == 2
    assert "invalid duration" in capsys.readouterr().err


def test_follow_is_on_by_default_and_its_fields_are_checked() -> None:
    from smartmetrics.config import ConfigError, parse_config

    data = {"sources": {"p": {"url": "http://x"}}, "baselines": {"q": {"expr": "up"}}}
    follow = parse_config(data).baselines["q"].follow
    assert follow is not None and (follow.after, follow.absorb) == (3600, "both")
    off = parse_config({**data, "baselines": {"q": {"expr": "up", "follow": None}}})
    assert off.baselines["q"].follow is None
    with pytest.raises(ConfigError) as info:
        parse_config({**data, "baselines": {"q": {"expr": "up", "follow": {"after": "0s", "absorb": "sideways"}}}})
    problems = "\n".join(info.value.problems)
    assert "baselines.q.follow.after: after must be more than 0s and at most 1d" in problems
    assert "baselines.q.follow.absorb:" in problems and "'sideways'" in problems
