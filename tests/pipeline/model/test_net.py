import numpy as np
import pytest
import torch

from pipeline.core.spec import RefinerSpec
from pipeline.model.net import RefinerNet

TINY = dict(backbone="mobilenetv3_small_050", input_size=64, class_names=("a", "b"))


def test_outputs_are_sigmoid_boxes_and_quality():
    model = RefinerNet(RefinerSpec(**TINY)).eval()
    crops = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    out = model(crops, torch.rand(3, model.spec.vector_size))
    assert out.shape == (3, 6) and ((out > 0) & (out < 1)).all()


def test_untrained_model_starts_at_the_padded_input_box():
    spec = RefinerSpec(**TINY, padding=0.25)
    model = RefinerNet(spec).eval()
    out = model(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8), torch.rand(2, spec.vector_size))
    inner = 0.25 / 1.5
    np.testing.assert_allclose(out[:, :4].detach().numpy(), [[inner, inner, 1 - inner, 1 - inner]] * 2, atol=0.02)


@pytest.mark.parametrize("head", ["pooled", "spatial", "edges"])
def test_naive_variant_ignores_the_mixture_vector(head):
    model = RefinerNet(RefinerSpec(**TINY, use_mixture=False, predicts_iou=False, head=head)).eval()
    crops = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    a = model(crops, torch.zeros(2, model.spec.vector_size))
    b = model(crops, torch.ones(2, model.spec.vector_size))
    assert a.shape == (2, 4) and torch.equal(a, b)


def test_normalisation_is_inside_the_graph():
    """A BGR uint8 crop must equal the RGB-normalised float tensor timm expects."""
    model = RefinerNet(RefinerSpec(**TINY)).eval()
    crops = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    rgb = crops.flip(-1).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std).view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalise(crops), (rgb - mean) / std, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "mobilenetv3_large_100", "resnet18"])
def test_any_timm_backbone_builds(backbone):
    model = RefinerNet(RefinerSpec(backbone=backbone, input_size=64, class_names=("a",))).eval()
    out = model(torch.zeros(1, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, model.spec.vector_size))
    assert out.shape == (1, 6)


def test_spatial_head_keeps_no_unused_backbone_weights():
    """MobileNetV3's pooled conv_head is never called on the spatial path, so it must not be saved."""
    pooled = RefinerNet(RefinerSpec(**TINY))
    spatial = RefinerNet(RefinerSpec(**TINY, head="spatial"))
    assert any(name.startswith("backbone.conv_head") for name in pooled.state_dict())
    assert not any(name.startswith("backbone.conv_head") for name in spatial.state_dict())
    out = spatial.eval()(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8), torch.rand(2, spatial.spec.vector_size))
    assert out.shape == (2, 6) and ((out > 0) & (out < 1)).all()


def test_spatial_head_sees_where_a_feature_is():
    """Global pooling cannot tell a pattern on the left from the same pattern on the right; the grid can."""
    torch.manual_seed(0)
    spatial = RefinerNet(RefinerSpec(**TINY, head="spatial")).eval()
    features = torch.zeros(2, *spatial.backbone.forward_features(spatial.normalise(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))).shape[1:])
    features[0, :, :, 0] = 1.0  # left column
    features[1, :, :, -1] = 1.0  # right column
    embedding = spatial.spatial(features)
    assert features.mean(dim=(2, 3)).allclose(features[0].mean(dim=(1, 2)).expand(2, -1))  # pooled: identical
    assert not torch.allclose(embedding[0], embedding[1])


def test_old_spec_without_head_reads_as_pooled():
    spec = RefinerSpec(**TINY)
    text = spec.to_json().replace(', "head": "pooled"', "").replace('"head": "pooled", ', "")
    assert '"head"' not in text and RefinerSpec.from_json(text).head == "pooled"


def test_edges_head_starts_at_the_padded_input_box():
    """Uniform position logits would put both sides of an axis at 0.5 (an empty box, no IoU gradient)."""
    spec = RefinerSpec(**TINY, padding=0.25, head="edges")
    model = RefinerNet(spec).eval()
    out = model(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8), torch.rand(2, spec.vector_size))
    inner = 0.25 / 1.5
    assert out.shape == (2, 6) and ((out > 0) & (out < 1)).all()
    np.testing.assert_allclose(out[:, :4].detach().numpy(), [[inner, inner, 1 - inner, 1 - inner]] * 2, atol=0.02)


def test_edges_head_reads_the_stride_8_map():
    """The box sides must follow where a pattern sits on the fine map, which is 4x finer than the grid."""
    torch.manual_seed(0)
    model = RefinerNet(RefinerSpec(**TINY, head="edges")).eval()
    fine, coarse = model.features(model.normalise(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)))
    assert fine.shape[-1] == 64 // 8 and coarse.shape[-1] == 64 // 32
    with torch.no_grad():
        for sides in (model.edges.x_sides, model.edges.y_sides):
            torch.nn.init.normal_(sides.weight)
    maps = torch.zeros(2, *fine.shape[1:])
    maps[0, :, :, 1] = 3.0  # a column near the left
    maps[1, :, :, -2] = 3.0  # the same column near the right
    boxes = model.edges(maps, torch.zeros(2, *coarse.shape[1:]), torch.zeros(2, model.spec.vector_size))
    assert not torch.allclose(boxes[0, 0::2], boxes[1, 0::2], atol=1e-3)  # x sides moved
    torch.testing.assert_close(boxes[0, 1::2], boxes[1, 1::2])  # y sides did not: every row looks the same


def test_edges_head_needs_a_stride_8_stage():
    with pytest.raises(ValueError, match="--head spatial"):
        RefinerNet(RefinerSpec(backbone="resnet18", input_size=64, class_names=("a",), head="edges"))
