"""Alpha-beta smoothing of box sides along tracks: a standing box holds still, a moving one does not lag."""

from __future__ import annotations

import numpy as np

from pipeline.track.smoothing import BoxSmoother, SmoothingSettings
from pipeline.core.types import NO_TRACK

STANDING = np.array([100.0, 80.0, 160.0, 200.0])


def smoothed_series(settings: SmoothingSettings, measured: np.ndarray) -> np.ndarray:
    smoother = BoxSmoother(settings)
    return np.stack([smoother.smooth(index, np.array([7]), box[None])[0] for index, box in enumerate(measured)])


def jitter(series: np.ndarray) -> float:
    return float(np.abs(np.diff(series, axis=0)).mean())


def test_smoothing_lowers_the_jitter_of_a_standing_box():
    measured = STANDING + np.random.default_rng(0).normal(0, 1.5, (60, 4))
    for settings in (SmoothingSettings(0.5, 0.0), SmoothingSettings(0.5, 0.1), SmoothingSettings(0.5, 0.1, snap=0.1)):
        assert jitter(smoothed_series(settings, measured)) < 0.7 * jitter(measured)


def test_alpha_beta_follows_steady_motion_where_an_ema_lags():
    truth = STANDING + np.arange(40)[:, None] * np.array([3.0, 0.0, 3.0, 0.0])
    lag_ema = np.abs(smoothed_series(SmoothingSettings(0.5, 0.0), truth)[-1] - truth[-1]).max()
    lag_alpha_beta = np.abs(smoothed_series(SmoothingSettings(0.5, 0.1), truth)[-1] - truth[-1]).max()
    assert lag_ema > 2.5 and lag_alpha_beta < 0.1


def test_snap_takes_the_measured_box_after_a_jump():
    measured = np.stack([STANDING] * 5 + [STANDING + 40])
    assert np.allclose(smoothed_series(SmoothingSettings(0.5, 0.1, snap=0.1), measured)[-1], STANDING + 40)
    assert not np.allclose(smoothed_series(SmoothingSettings(0.5, 0.1), measured)[-1], STANDING + 40)


def test_untracked_and_unusable_boxes_pass_as_they_are_and_tracks_do_not_mix():
    smoother = BoxSmoother(SmoothingSettings(0.5, 0.0))
    first = np.stack([STANDING, STANDING + 100, [np.nan] * 4])
    smoother.smooth(0, np.array([1, 2, 3]), first)
    second = first + 4
    out = smoother.smooth(1, np.array([1, NO_TRACK, 3]), second)
    np.testing.assert_allclose(out[0], STANDING + 2)  # halfway: alpha 0.5, from its own track only
    np.testing.assert_array_equal(out[1], second[1])
    assert np.isnan(out[2]).all()


def test_a_track_unseen_too_long_starts_over():
    smoother = BoxSmoother(SmoothingSettings(0.5, 0.0, max_gap=2))
    smoother.smooth(0, np.array([1]), STANDING[None])
    np.testing.assert_array_equal(smoother.smooth(5, np.array([1]), (STANDING + 10)[None])[0], STANDING + 10)
