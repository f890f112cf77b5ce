"""The per-frame refinement step: selection, crops, one backend call, decode and the quality gate."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.backends.base import RefinerBackend
from pipeline.backends.torch import TorchBackend
from pipeline.core.errors import UsageError
from pipeline.core.geometry import crop_windows, encode
from pipeline.core.spec import RefinerSpec
from pipeline.core.types import Detections, Frame, RefinedDetections, RefineStatus
from pipeline.model.net import RefinerNet
from pipeline.refine.class_mapping import ClassMapping
from pipeline.refine.crop_ring import CropperRing
from pipeline.refine.crops import CpuCropper
from pipeline.refine.gpu_crops import GpuCropper
from pipeline.core.calibration import Calibration
from pipeline.refine.policy import check_policy, choose_profile, default_policy, leaves_every_box_alone, refined_weight
from pipeline.refine.refiner import FrameRefiner

REFINER_CLASSES = ("person", "disc")
DETECTOR_CLASSES = ("pedestrian", "car", "disc")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    torch.manual_seed(0)
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=REFINER_CLASSES)
    return TorchBackend(RefinerNet(spec), "cpu")


class FixedOutputs(RefinerBackend):
    """Test double: answers every crop with the same output row, to test decoding and the gate exactly."""

    name = "fixed"

    def __init__(self, spec: RefinerSpec, row: list[float]) -> None:
        super().__init__(spec, max_batch=4)
        self.row = np.array(row, dtype=np.float32)
        self.calls = 0

    def _run(self, crops, vectors):
        self.calls += 1
        return np.tile(self.row, (len(crops), 1))


def frame(width: int = 160, height: int = 120) -> Frame:
    image = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Frame(0, image, 0.0, "test#0")


def refiner(backend: RefinerBackend, cropper=None, **options) -> FrameRefiner:
    mapping = ClassMapping.by_name(DETECTOR_CLASSES, backend.spec.class_names)
    return FrameRefiner(backend, mapping, cropper or CpuCropper(backend.spec.input_size), **options)


def mixed_detections() -> Detections:
    boxes = [
        [10, 10, 60, 90],  # pedestrian -> person: refined
        [70, 20, 120, 60],  # car: unknown to the refiner
        [np.nan, 0, 5, 5],  # disc with a NaN box: unusable
        [100, 100, 104, 103],  # disc, 4 x 3 px: below min size
        [130, 50, 175, 118],  # disc crossing the right edge: refined
    ]
    return Detections(boxes, [0.9, 0.8, 0.7, 0.6, 0.5], [0, 1, 2, 2, 2], DETECTOR_CLASSES)


def test_each_detection_gets_a_status_and_only_usable_mapped_ones_are_refined(backend):
    result = refiner(backend, min_size=8, policy="replace")(frame(), mixed_detections())
    assert result.status == (
        RefineStatus.REFINED,
        RefineStatus.UNMAPPED,
        RefineStatus.UNUSABLE,
        RefineStatus.SMALL,
        RefineStatus.REFINED,
    )
    refined = ~np.isnan(result.refined_boxes).any(axis=1)
    np.testing.assert_array_equal(refined, [True, False, False, False, True])
    assert np.isfinite(result.predicted_iou[refined]).all() and np.isnan(result.predicted_iou[~refined]).all()
    np.testing.assert_array_equal(result.boxes[~refined], mixed_detections().boxes[~refined])
    assert (result.refined_boxes[refined] >= 0).all() and (result.refined_boxes[refined][:, [0, 2]] <= 160).all()


def test_outputs_decode_from_window_coordinates_and_are_clipped_to_the_frame():
    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES, padding=0.5)
    backend = FixedOutputs(spec, [0.25, 0.25, 0.75, 0.75, 0.5, 0.9])
    detections = Detections([[40, 40, 60, 80], [150, 0, 170, 20]], [1, 1], [0, 2], DETECTOR_CLASSES)
    result = refiner(backend, policy="replace")(frame(), detections)
    # Window of box 0 with padding 0.5: [30, 20, 70, 100]; its middle half is the box itself.
    np.testing.assert_allclose(result.refined_boxes[0], [40, 40, 60, 80])
    np.testing.assert_allclose(result.refined_boxes[1], [150, 0, 160, 20])  # x2 = 170 clipped to the 160 px frame
    np.testing.assert_allclose(result.predicted_iou, [[0.5, 0.9], [0.5, 0.9]], atol=1e-6)
    assert backend.calls == 1  # one batched call for the whole frame


@pytest.mark.parametrize(
    "row, status",
    [([0.2, 0.2, 0.8, 0.8, 0.6, 0.7], RefineStatus.REFINED), ([0.2, 0.2, 0.8, 0.8, 0.7, 0.7], RefineStatus.GATED)],
)
def test_gate_keeps_the_input_box_unless_predicted_iou_improves(row, status):
    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES)
    step = refiner(FixedOutputs(spec, row), policy="gate")
    assert refiner(FixedOutputs(spec, row)).policy == "blend"  # the default for refiners that predict IoU
    result = step(frame(), Detections([[40, 40, 60, 80]], [1], [0], DETECTOR_CLASSES))
    assert result.status == (status,)
    assert np.isnan(result.refined_boxes[0]).all() == (status == RefineStatus.GATED)
    assert not np.isnan(result.predicted_iou).any()  # predictions are kept either way, to measure the gate


def test_policy_functions():
    outputs = np.array([[0, 0, 1, 1, 0.5, 0.6], [0, 0, 1, 1, 0.6, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(refined_weight(outputs, "gate") > 0, [True, False])
    np.testing.assert_array_equal(refined_weight(outputs, "replace") > 0, [True, True])
    plain = RefinerSpec(backbone="x", input_size=32, class_names=("a",), predicts_iou=False)
    assert default_policy(plain) == "replace"
    # A policy is checked once, when a FrameRefiner is made (check_policy); the functions above trust it.
    with pytest.raises(UsageError, match="needs a refiner that predicts IoU"):
        check_policy("gate", plain)
    with pytest.raises(UsageError, match="unknown refine policy"):
        check_policy("sometimes", plain)


def test_blend_weights_follow_the_predicted_gain_and_mix_the_two_boxes():
    outputs = np.array([[0, 0, 1, 1, 0.6, 0.6], [0, 0, 1, 1, 0.5, 0.9], [0, 0, 1, 1, 0.9, 0.5]], dtype=np.float32)
    weights = refined_weight(outputs, "blend")
    assert weights[0] == pytest.approx(0.5) and weights[1] > 0.99 and weights[2] < 0.01
    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES, padding=0.5)
    result = refiner(FixedOutputs(spec, [0, 0, 0.5, 0.5, 0.6, 0.6]), policy="blend")(
        frame(), Detections([[40, 40, 60, 80]], [1], [0], DETECTOR_CLASSES)
    )
    # Window [30, 20, 70, 100]; the refined box is its top-left quarter [30, 20, 50, 60]; a tie takes the mean.
    np.testing.assert_allclose(result.boxes[0], [35, 30, 55, 70])
    assert result.status == (RefineStatus.REFINED,)


def test_flip_tta_refines_the_mirrored_crop_in_the_same_batch_and_averages_the_answers():
    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES, padding=0.5)
    backend = FixedOutputs(spec, [0.1, 0.2, 0.5, 0.9, 0.5, 0.9])
    step = refiner(backend, flip_tta=True)
    job = step.prepare(frame(), Detections([[40, 40, 60, 80]], [1], [0], DETECTOR_CLASSES))
    outputs = step._infer(job.crops, job.vectors)
    # The mirrored crop's answer [0.1, 0.2, 0.5, 0.9] maps back to [0.5, 0.2, 0.9, 0.9].
    np.testing.assert_allclose(outputs[0, :4], [0.3, 0.2, 0.7, 0.9], atol=1e-6)
    assert backend.calls == 1


def test_flip_tta_mirrors_crops_and_the_mixture_centre():
    from pipeline.refine.refiner import mirror_inputs

    crops = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    vectors = np.array([[1, 0, 0.3, 0.5, 0.4, 0.6]], dtype=np.float32).repeat(2, 0)
    mirrored, mirrored_vectors = mirror_inputs(crops, vectors, 2)
    np.testing.assert_array_equal(mirrored, crops[:, :, ::-1])
    np.testing.assert_allclose(mirrored_vectors[:, 2], 0.7)
    np.testing.assert_array_equal(mirrored_vectors[:, [0, 1, 3, 4, 5]], vectors[:, [0, 1, 3, 4, 5]])
    tensor_mirrored, _ = mirror_inputs(torch.from_numpy(crops), vectors, 2)
    np.testing.assert_array_equal(tensor_mirrored.numpy(), mirrored)


def test_iterations_crop_again_around_the_refined_box():
    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES, padding=0.5)
    detections = Detections([[40, 20, 90, 100]], [1], [0], DETECTOR_CLASSES)
    # Each pass keeps the middle 40% of a window twice the box's size: the box shrinks to 80% about its centre.
    shrink = FixedOutputs(spec, [0.3, 0.3, 0.7, 0.7, 0.5, 0.9])
    result = refiner(shrink, iterations=2, policy="replace")(frame(), detections)
    assert shrink.calls == 2
    np.testing.assert_allclose(result.boxes[0, 2] - result.boxes[0, 0], 50 * 0.8 * 0.8, atol=1.0)
    assert result.status == (RefineStatus.REFINED,) and result.detections is detections
    gated = FixedOutputs(spec, [0.3, 0.3, 0.7, 0.7, 0.9, 0.5])
    refiner(gated, iterations=3, policy="gate")(frame(), detections)
    assert gated.calls == 1  # nothing changed, so nothing to refine again
    with pytest.raises(ValueError, match="iterations"):
        refiner(shrink, iterations=0)


def test_thousands_of_boxes_in_one_frame_are_refined_in_max_batch_chunks():
    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES, padding=0.5)
    backend = FixedOutputs(spec, [0.25, 0.25, 0.75, 0.75, 0.5, 0.9])  # max batch 4; answers "the box itself"
    rng = np.random.default_rng(0)
    top_left = rng.uniform(0, 1, (5000, 2)) * [140, 100]  # inside the 160 x 120 frame
    boxes = np.concatenate([top_left, top_left + rng.uniform(4, 20, (5000, 2))], axis=1)
    result = refiner(backend, policy="replace")(frame(), Detections(boxes, np.ones(5000), np.zeros(5000), DETECTOR_CLASSES))
    assert backend.calls == 1250 and result.status == (RefineStatus.REFINED,) * 5000
    np.testing.assert_allclose(result.boxes, boxes, atol=1.0)  # windows snap to whole pixels


def test_bad_configuration_fails_at_construction():
    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES, predicts_iou=False)
    with pytest.raises(ValueError, match="predicts IoU"):
        refiner(FixedOutputs(spec, [0, 0, 1, 1]), policy="gate")
    other = RefinerSpec(backbone="fixed", input_size=32, class_names=("disc",))
    with pytest.raises(ValueError, match="another refiner"):
        FrameRefiner(FixedOutputs(other, [0] * 6), ClassMapping.by_name(DETECTOR_CLASSES, REFINER_CLASSES), CpuCropper(32))


def test_frame_without_detections(backend):
    result = refiner(backend)(frame(), Detections.empty(DETECTOR_CLASSES))
    assert result.refined_boxes.shape == (0, 4) and result.status == ()


def test_prepare_builds_crops_and_mixture_vectors_from_the_spec(backend):
    step = refiner(backend, min_size=8)
    detections = mixed_detections()
    job = step.prepare(frame(), detections)
    np.testing.assert_array_equal(job.selected, [0, 4])
    np.testing.assert_array_equal(job.windows, crop_windows(detections.boxes[[0, 4]], backend.spec.padding))
    assert job.crops.shape == (2, 64, 64, 3) and job.crops.dtype == np.uint8
    assert job.vectors.shape == (2, backend.spec.vector_size)
    np.testing.assert_array_equal(job.vectors[:, :2], [[1, 0], [0, 1]])  # one-hot person, disc
    local = encode(detections.boxes[[0]], job.windows[:1])[0]
    np.testing.assert_allclose(job.vectors[0, 2:4], [(local[0] + local[2]) / 2, (local[1] + local[3]) / 2], rtol=1e-6)


def test_gpu_cropper_feeds_a_torch_backend_the_same_answer(backend):
    detections = mixed_detections()
    on_cpu = refiner(backend)(frame(), detections)
    with_tensors = refiner(backend, cropper=GpuCropper(64, "cpu"))(frame(), detections)
    assert with_tensors.status == on_cpu.status
    np.testing.assert_allclose(with_tensors.refined_boxes, on_cpu.refined_boxes, atol=0.5)


def test_crop_ring_keeps_a_batch_intact_while_later_frames_are_cropped():
    queue_size = 2
    ring = CropperRing(16, workers=2, queue_size=queue_size)
    frames = [np.full((32, 32, 3), level, np.uint8) for level in range(10, 10 + queue_size + 2)]
    window = np.array([[0, 0, 32, 32]])
    first = ring.crop(frames[0], window)
    for later in frames[1:]:
        ring.crop(later, window)  # queue_size + 1 more batches: the ones that can be alive with the first
    assert (first == 10).all()
    ring.crop(frames[0] + 100, window)  # one more: the first batch's turn comes round again
    assert (first == 110).all()
    ring.close()


def test_refined_detections_validate_their_rows():
    detections = Detections([[0, 0, 1, 1]], [1], [0], ("a",))
    with pytest.raises(ValueError, match="one row per detection"):
        RefinedDetections(detections, np.zeros((2, 4)), (RefineStatus.REFINED,), np.zeros((1, 2)))
    untouched = RefinedDetections.untouched(detections, RefineStatus.DISABLED)
    assert untouched.status == (RefineStatus.DISABLED,)
    np.testing.assert_array_equal(untouched.boxes, detections.boxes)


def test_calibration_travels_in_the_spec_and_rescores_by_predicted_iou():
    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=REFINER_CLASSES)
    assert choose_profile(spec) == ("generic", Calibration())  # an uncalibrated model: default blend, detector's scores
    calibrated = replace(spec, profiles={"generic": Calibration(0.02, 0.0, 2.0, "test")})
    assert RefinerSpec.from_json(calibrated.to_json()).profiles == {"generic": Calibration(0.02, 0.0, 2.0, "test")}
    # Predicted IoU 0.5 for the input box and 0.7 for the refined one: blend weight sigmoid(0.2 / 0.02) ~ 1.
    outputs = FixedOutputs(calibrated, [0.2, 0.2, 0.8, 0.8, 0.5, 0.7])
    detections = Detections([[10, 10, 60, 90]], [0.9], [0], DETECTOR_CLASSES)
    result = refiner(outputs)(frame(), detections)
    assert result.scores[0] == pytest.approx(0.9 * 0.7**2, rel=1e-3)
    plain = refiner(FixedOutputs(spec, [0.2, 0.2, 0.8, 0.8, 0.5, 0.7]))(frame(), detections)
    assert plain.scores[0] == pytest.approx(0.9)
    # A weight far from 1 (sigmoid(0.2 / 0.2) = 0.731): the output box's IoU is the predictions mixed by that weight.
    warm = replace(spec, profiles={"generic": Calibration(0.2, 0.0, 2.0, "test")})
    mixed = refiner(FixedOutputs(warm, [0.2, 0.2, 0.8, 0.8, 0.5, 0.7]))(frame(), detections)
    weight = 1 / (1 + math.exp(-1.0))
    assert mixed.scores[0] == pytest.approx(0.9 * (0.5 + weight * 0.2) ** 2, rel=1e-4)
    assert mixed.scores[0] != pytest.approx(0.9 * 0.7**2, rel=1e-2)


@pytest.mark.parametrize("policy", ["replace", "gate", "blend"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_outputs_are_their_own_status_never_gated(policy, bad):
    from dataclasses import replace

    spec = RefinerSpec(backbone="fixed", input_size=32, class_names=REFINER_CLASSES)
    spec = replace(spec, profiles={"generic": Calibration(0.02, 0.0, 1.0, "test")})  # rescoring on: the score must stay
    detections = Detections([[40, 40, 60, 80]], [0.8], [0], DETECTOR_CLASSES)
    for row in ([bad, 0.2, 0.8, 0.8, 0.5, 0.7], [0.2, 0.2, 0.8, 0.8, bad, 0.7]):
        result = refiner(FixedOutputs(spec, row), policy=policy)(frame(), detections)
        assert result.status == (RefineStatus.INVALID,)
        assert np.isnan(result.refined_boxes).all() and np.isnan(result.predicted_iou).all()
        assert result.scores[0] == pytest.approx(0.8)


def test_calibration_rejects_impossible_values():

    with pytest.raises(ValueError, match="positive blend temperature"):
        Calibration(0.0, 0.0, 1.0)


def test_a_gain_margin_leaves_boxes_alone_until_the_predicted_gain_clears_it():

    outputs = np.array([[0.2, 0.2, 0.8, 0.8, 0.5, 0.53], [0.2, 0.2, 0.8, 0.8, 0.5, 0.7]])
    np.testing.assert_array_equal(refined_weight(outputs, "gate", Calibration(gain_margin=0.05)), [0.0, 1.0])
    blended = refined_weight(outputs, "blend", Calibration(blend_temperature=0.01, gain_margin=0.05))
    assert blended[0] < 0.2 and blended[1] > 0.99


def test_a_max_box_side_leaves_large_boxes_alone_under_blend_and_gate_but_not_replace():
    import math

    from pipeline.core.geometry import longer_sides

    outputs = np.array([[0.2, 0.2, 0.8, 0.8, 0.5, 0.7]] * 2)
    sides = longer_sides(np.array([[0, 0, 50, 90], [0, 0, 200, 300]], dtype=float))
    np.testing.assert_array_equal(sides, [90, 300])
    limited = Calibration(blend_temperature=0.01, max_box_side=128)
    np.testing.assert_array_equal(refined_weight(outputs, "gate", limited, sides), [1.0, 0.0])
    blended = refined_weight(outputs, "blend", limited, sides)
    assert blended[0] > 0.99 and blended[1] == 0.0
    np.testing.assert_array_equal(refined_weight(outputs, "replace", limited, sides), [1.0, 1.0])
    assert Calibration().max_box_side == math.inf
    with pytest.raises(ValueError, match="box side"):
        Calibration(max_box_side=0)


@pytest.mark.parametrize("policy, calibration, alone", [
    ("blend", Calibration(), False),
    ("blend", Calibration(gain_margin=math.inf), True),  # what `benchmarks calibrate` writes when refining does not pay
    ("blend", Calibration(gain_margin=1.0), False),  # a predicted gain of a whole IoU would still move a box halfway
    ("gate", Calibration(gain_margin=math.inf), True),
    ("replace", Calibration(gain_margin=math.inf), False),  # the paper's policy ignores the calibration
])
def test_a_calibration_that_moves_no_box_is_recognised(policy, calibration, alone):
    assert leaves_every_box_alone(policy, calibration) is alone


def test_decode_outputs_is_the_decode_that_ships_calibration_included():
    """The latency benchmark times FrameRefiner.decode_outputs: with the backend's outputs it gives what finish gives."""
    from dataclasses import replace

    spec = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=REFINER_CLASSES)
    calibrated = replace(spec, profiles={"generic": Calibration(0.02, 0.05, 2.0, "test")})
    backend = FixedOutputs(calibrated, [0.2, 0.2, 0.8, 0.8, 0.5, 0.53])  # gain 0.03: under the 0.05 margin
    step = refiner(backend, policy="gate")
    job = step.prepare(frame(), mixed_detections())
    decoded = step.decode_outputs(job, backend.refine(job.crops, job.vectors))
    finished = step.finish(job)
    assert decoded.status == finished.status and decoded.status[0] == RefineStatus.GATED  # the margin held it back
    np.testing.assert_array_equal(decoded.boxes, finished.boxes)
    np.testing.assert_array_equal(decoded.scores, finished.scores)


def gated_spec() -> RefinerSpec:
    """A "yolov8n" profile whose gate expects boxes under 64 px to gain and larger ones to lose; "generic" has no gate."""
    from pipeline.core.calibration import GateModel

    gate = GateModel((0.0, 64.0, math.inf), (0.02, -0.01), (0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), (), 0.0, 10)
    return RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=REFINER_CLASSES,
                       profiles={"yolov8n": Calibration(0.05, gate=gate), "generic": Calibration(0.1)})


def crowd() -> Detections:
    boxes = [[0, 0, 100, 100], [10, 10, 40, 50], [50, 50, 90, 80], [70, 20, 120, 60], [5, 60, 30, 100]]
    return Detections(boxes, [0.9, 0.8, 0.7, 0.6, 0.5], [0, 0, 0, 1, 2], DETECTOR_CLASSES)


def test_the_gate_skips_boxes_not_expected_to_pay_before_they_are_cropped():
    backend = FixedOutputs(gated_spec(), [0.2, 0.2, 0.8, 0.8, 0.5, 0.7])
    gated = refiner(backend, detector_profile="yolov8n")
    assert gated.profile == "yolov8n"
    result = gated(frame(), crowd())
    S = RefineStatus
    assert result.status == (S.SKIPPED_GAIN, S.REFINED, S.REFINED, S.UNMAPPED, S.REFINED)  # the 100 px box is not worth it
    assert gated.crops_refined == 3 and np.isnan(result.predicted_iou[0]).all()
    np.testing.assert_array_equal(result.boxes[0], crowd().boxes[0])
    # The paper's policy refines every box; the budget still bounds it.
    assert refiner(backend, detector_profile="yolov8n", policy="replace")(frame(), crowd()).status[0] == S.REFINED


def test_boxes_above_the_profiles_max_box_side_are_not_cropped_where_the_policy_would_never_move_them():
    spec = replace(gated_spec(), profiles={"generic": Calibration(0.1, max_box_side=64.0)})
    backend = FixedOutputs(spec, [0.2, 0.2, 0.8, 0.8, 0.5, 0.7])
    S = RefineStatus
    blend = refiner(backend)
    assert blend(frame(), crowd()).status == (S.SKIPPED_GAIN, S.REFINED, S.REFINED, S.UNMAPPED, S.REFINED)
    assert blend.crops_refined == 3
    assert refiner(backend, policy="replace")(frame(), crowd()).status[0] == S.REFINED  # replace refines every box


def test_the_budget_refines_the_highest_expected_gain_first_and_counts_the_rest():
    backend = FixedOutputs(gated_spec(), [0.2, 0.2, 0.8, 0.8, 0.5, 0.7])
    S = RefineStatus
    budget = refiner(backend, profile="yolov8n", max_refine=1, policy="replace")
    # Expected gain: +0.02 for the three small boxes (ties: the earlier first), -0.01 for the large one.
    assert budget(frame(), crowd()).status == (S.SKIPPED_BUDGET, S.REFINED, S.SKIPPED_BUDGET, S.UNMAPPED, S.SKIPPED_BUDGET)
    assert budget.crops_refined == 1
    # Without a gate every box is expected to pay alike: the detector's first boxes stay.
    plain = refiner(backend, max_refine=2)
    assert plain.profile == "generic" and plain.gate is None
    assert plain(frame(), crowd()).status == (S.REFINED, S.REFINED, S.SKIPPED_BUDGET, S.UNMAPPED, S.SKIPPED_BUDGET)
    with pytest.raises(UsageError, match="max-refine"):
        refiner(backend, max_refine=-1)


def test_iterations_refine_again_what_the_first_pass_chose_without_asking_the_gate_again():
    backend = FixedOutputs(gated_spec(), [0.2, 0.2, 0.8, 0.8, 0.5, 0.7])
    twice = refiner(backend, detector_profile="yolov8n", iterations=2, policy="gate")
    result = twice(frame(), crowd())
    assert result.status[0] == RefineStatus.SKIPPED_GAIN and twice.crops_refined == 3 + 3


@pytest.mark.parametrize("detector_profile, requested, chosen", [
    ("yolov8n", None, "yolov8n"),  # the detector's own profile
    ("yolo11s", None, "generic"),  # a detector nobody calibrated for
    ("yolov8n", "generic", "generic"),  # --profile overrides
    ("generic", "yolov8n", "yolov8n"),
])
def test_the_profile_follows_the_detector_unless_overridden(detector_profile, requested, chosen):
    name, calibration = choose_profile(gated_spec(), detector_profile, requested)
    assert name == chosen and calibration == gated_spec().profiles[chosen]


def test_an_unknown_profile_is_refused_with_the_files_profiles():
    with pytest.raises(UsageError, match="no calibration profile 'yolo11s'; it has generic, yolov8n"):
        choose_profile(gated_spec(), requested="yolo11s")
    plain = RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=REFINER_CLASSES)
    assert choose_profile(plain, requested="generic") == ("generic", Calibration())  # an uncalibrated file: the defaults
