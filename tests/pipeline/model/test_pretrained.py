"""The Lite backbones' ImageNet weights are the real ones: real photos get the right ImageNet class."""

import cv2
import numpy as np
import pytest
import torch

from pipeline.core.errors import PretrainedWeightsError
from pipeline.core.spec import LITE_BACKBONES, paper_spec
from pipeline.model.net import RefinerNet
from pipeline.model.pretrained import imagenet_classifier, load_backbone_weights, source_for

# coco-tiny photos (COCO 2017 val) cropped to one large object, and the ImageNet classes that object is.
PHOTOS = {
    "zebra": ("000000104455.jpg", (77, 25, 598, 395), {340}),
    "elephant": ("000000519208.jpg", (0, 0, 640, 401), {101, 385, 386}),  # tusker, Indian, African elephant
    "pizza": ("000000047112.jpg", (114, 200, 640, 480), {963}),
}


def classify(model: torch.nn.Module, image: np.ndarray, size: int) -> torch.Tensor:
    """Softmax over ImageNet's classes, preprocessed as the Lite weights expect (RGB, mean = std = 0.5)."""
    rgb = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        return model((tensor - 0.5) / 0.5).softmax(dim=1)[0]


@pytest.mark.slow
@pytest.mark.parametrize("short", list(LITE_BACKBONES))
def test_imagenet_weights_recognise_real_photos(short, shared_data):
    backbone, size = LITE_BACKBONES[short]
    model = imagenet_classifier(backbone)
    torch.set_num_threads(1)
    for name, (file_name, (x1, y1, x2, y2), classes) in PHOTOS.items():
        image = cv2.imread(str(shared_data / "coco-tiny" / "images" / file_name))
        probabilities = classify(model, image[y1:y2, x1:x2], size)
        top = int(probabilities.argmax())
        assert top in classes and probabilities[top] > 0.3, f"{short} calls the {name} class {top} ({probabilities[top]:.2f})"


def test_random_weights_do_not_pass_the_photo_check(shared_data):
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    file_name, (x1, y1, x2, y2), classes = PHOTOS["zebra"]
    image = cv2.imread(str(shared_data / "coco-tiny" / "images" / file_name))
    probabilities = classify(model, image[y1:y2, x1:x2], 224)
    assert int(probabilities.argmax()) not in classes or float(probabilities.max()) < 0.3


def test_every_backbone_tensor_is_loaded_into_a_refiner():
    spec = paper_spec("lite0", ("person",), input_size=128, head="edges")
    net = RefinerNet(spec)
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    loaded = load_backbone_weights(net.backbone, spec.backbone)
    after = net.backbone.state_dict()
    weights = [k for k in after if not k.endswith("num_batches_tracked")]
    assert loaded == len(weights)
    assert all(not torch.equal(before[k], after[k]) for k in weights if k.endswith("conv.weight") or k.endswith(".weight"))
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)


def test_backbones_without_installed_weights_are_refused():
    with pytest.raises(PretrainedWeightsError, match="pretrained backbones"):
        source_for("efficientnet_b3")
