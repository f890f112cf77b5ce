"""The gate before the network: its fit recovers a known gain, it skips what does not pay, the budget keeps the best."""

from __future__ import annotations

import math

import numpy as np

from pipeline.refine.gate import SIDE_EDGES, expected_gain, fit_gate, gate_decision, gate_features, side_bins


def constructed(count: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Boxes whose gain is known: +0.04 below 64 px, -0.02 from 64 px up, +0.05 per unit of score above 0.5."""
    rng = np.random.default_rng(seed)
    sides = rng.uniform(8, 500, count)
    boxes = np.stack([np.zeros(count), np.zeros(count), sides, sides * rng.uniform(0.5, 1.0, count)], axis=1)
    scores = rng.uniform(0, 1, count)
    features = gate_features(boxes, scores, (640, 480), rng.integers(1, 30, count))
    gains = np.where(sides < 64, 0.04, -0.02) + 0.05 * (scores - 0.5) + rng.normal(0, 0.01, count)
    return sides, features, ["person"] * count, gains


def test_the_fit_recovers_a_known_gain_by_size_and_score():
    sides, features, names, gains = constructed()
    gate = fit_gate(sides, features, names, gains)
    bins = np.asarray(gate.side_gain)
    assert np.allclose(bins[:2], 0.04 + 0.05 * (features[:, 0].mean() - 0.5), atol=0.004)  # 0-32, 32-64 px
    assert np.allclose(bins[2:], -0.02 + 0.05 * (features[:, 0].mean() - 0.5), atol=0.004)
    assert gate.slopes[0] == np.float64(gate.slopes[0]) and abs(gate.slopes[0] - 0.05) < 0.005
    assert all(abs(slope) < 0.003 for slope in gate.slopes[1:])  # features that carry no gain get none
    assert math.isinf(gate.threshold) and gate.threshold < 0  # calibration chooses it by AP
    # Fresh boxes: a threshold of 0 lets exactly the paying ones through.
    test_sides, test_features, test_names, _ = constructed(seed=1)
    true_gain = np.where(test_sides < 64, 0.04, -0.02) + 0.05 * (test_features[:, 0] - 0.5)
    skipped, _ = gate_decision(expected_gain(gate, test_sides, test_features, test_names), 0.0, None)
    clear = np.abs(true_gain) > 0.004
    np.testing.assert_array_equal(skipped[clear], true_gain[clear] < 0)


def test_a_size_bin_without_boxes_takes_its_nearest_bins_gain():
    sides, features, names, gains = constructed()
    small = sides < 150
    gate = fit_gate(sides[small], features[small], [n for n, s in zip(names, small) if s], gains[small])
    assert len(gate.side_gain) == len(SIDE_EDGES) - 1
    assert gate.side_gain[-1] == gate.side_gain[-2] == gate.side_gain[side_bins(SIDE_EDGES, np.array([140.0]))[0]]


def test_class_offsets_separate_classes_that_gain_differently():
    sides, features, _, gains = constructed()
    names = ["person" if i % 2 else "car" for i in range(len(gains))]
    gains = gains + np.where(np.array(names) == "car", -0.03, 0.0)
    offsets = dict(fit_gate(sides, features, names, gains).class_gain)
    assert abs(offsets["person"] - offsets["car"] - 0.03) < 0.003


def test_the_budget_keeps_the_highest_expected_gain_and_ties_keep_the_earlier_box():
    expected = np.array([0.01, 0.05, -0.02, 0.05, 0.03, 0.02])
    skipped_gain, over_budget = gate_decision(expected, 0.0, 2)
    np.testing.assert_array_equal(skipped_gain, [False, False, True, False, False, False])
    np.testing.assert_array_equal(over_budget, [True, False, False, False, True, True])  # boxes 1 and 3 stay
    skipped_gain, over_budget = gate_decision(expected, -math.inf, None)
    assert not skipped_gain.any() and not over_budget.any()
    _, over_budget = gate_decision(expected, -math.inf, 0)
    assert over_budget.all()


def test_features_are_computed_per_box_or_per_frame_alike():
    boxes = np.array([[0, 0, 64, 32], [10, 10, 20, 50]], dtype=float)
    one_frame = gate_features(boxes, np.array([0.9, 0.4]), (640, 480), 2)
    per_box = gate_features(boxes, np.array([0.9, 0.4]), np.array([[640, 480], [640, 480]]), np.array([2, 2]))
    np.testing.assert_allclose(one_frame, per_box)
    np.testing.assert_allclose(one_frame[0], [0.9, np.log2(64 * 32 / (640 * 480)), 1.0, 1.0], rtol=1e-6)
