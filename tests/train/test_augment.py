import numpy as np

from train.augment import AugmentConfig, distort_box, flip_horizontally, make_sample
from train.losses import BOX_LOSSES, paired_iou


def test_distortion_spread_includes_near_perfect_and_poor_boxes():
    rng = np.random.default_rng(0)
    box = np.array([100.0, 100.0, 200.0, 300.0])
    import torch

    distorted = np.stack([distort_box(rng, box, 0.005, 0.25) for _ in range(2000)])
    ious = paired_iou(torch.tensor(distorted), torch.tensor(np.repeat(box[None], 2000, 0))).numpy()
    assert (ious > 0.97).mean() > 0.1 and (ious < 0.6).mean() > 0.05
    assert (distorted[:, 2:] > distorted[:, :2]).all()


def test_uniform_spread_spends_more_samples_on_poor_boxes_than_log_spread():
    import torch

    rng = np.random.default_rng(0)
    box = np.array([100.0, 100.0, 200.0, 300.0])
    truth = torch.tensor(np.repeat(box[None], 2000, 0))
    poor_share = {}
    for spread in ("log", "uniform"):
        distorted = np.stack([distort_box(rng, box, 0.005, 0.25, spread) for _ in range(2000)])
        poor_share[spread] = (paired_iou(torch.tensor(distorted), truth).numpy() < 0.7).mean()
    assert poor_share["uniform"] > 1.5 * poor_share["log"]


def test_training_windows_use_the_inference_padding_unless_random_padding_is_asked_for():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    gt = np.array([100.0, 80.0, 300.0, 320.0])
    inner = 0.15 / 1.3  # where a box padded by 0.15 per side starts inside its window
    fixed = [make_sample(rng, image, gt, 0, 1, 64, AugmentConfig(flip_probability=0), 0.15) for _ in range(20)]
    for sample in fixed:  # windows snap outward to whole pixels: within a pixel of the exact place
        np.testing.assert_allclose(sample.input_box, [inner, inner, 1 - inner, 1 - inner], atol=0.01)
    randomised = AugmentConfig(flip_probability=0, padding_min=0.02, padding_max=0.35)
    spread = np.stack([make_sample(rng, image, gt, 0, 1, 64, randomised, 0.15).input_box for _ in range(20)])
    assert spread[:, 0].std() > 0.02


def test_validation_sample_targets_match_the_ground_truth_and_flip_is_consistent():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    gt = np.array([40.0, 30.0, 90.0, 100.0])
    sample = make_sample(rng, image, gt, 0, 2, 48, AugmentConfig(), 0.15, validation=True)
    assert sample.crop.shape == (48, 48, 3) and sample.vector.shape == (6,)
    centre = sample.vector[2:4]
    np.testing.assert_allclose(centre, (sample.input_box[:2] + sample.input_box[2:]) / 2, atol=1e-6)
    flipped = flip_horizontally(sample, 2)
    np.testing.assert_array_equal(flipped.crop, sample.crop[:, ::-1])
    np.testing.assert_allclose(flipped.target[[0, 2]], 1 - sample.target[[2, 0]])
    np.testing.assert_allclose(flipped.vector[2], 1 - sample.vector[2])


def test_every_loss_is_zero_at_the_target_and_positive_elsewhere():
    import torch

    target = torch.tensor([[0.1, 0.2, 0.7, 0.9]])
    for name, loss in BOX_LOSSES.items():
        assert loss(target.clone(), target).item() < 1e-5, name
        assert loss(target + 0.1, target).item() > 0.01, name
