import pytest

from pipeline.core.errors import SpecError
from pipeline.core.spec import PAPER_BACKBONES, RefinerSpec, paper_spec


def test_round_trip_through_json():
    spec = paper_spec("b2", ("person", "car"), padding=0.2, predicts_iou=False)
    assert RefinerSpec.from_json(spec.to_json()) == spec
    assert spec.input_size == 260 and spec.vector_size == 6 and spec.output_size == 4
    spatial = paper_spec("b0", ("person",), head="spatial")
    assert RefinerSpec.from_json(spatial.to_json()) == spatial and spatial.name == "refiner-efficientnet_b0-224-spatial"


@pytest.mark.parametrize("short, size", [(k, v[1]) for k, v in PAPER_BACKBONES.items()])
def test_paper_backbones_have_native_sizes(short, size):
    assert paper_spec(short, ("a",)).input_size == size


@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"backbone": "x", "input_size": 64, "class_names": ["a"], "version": 99}', "version 99"),
    ('{"backbone": "x", "input_size": 64, "class_names": ["a"], "colour": 1}', "unknown fields"),
    ('{"backbone": "x"}', "incomplete"),
    ('{"backbone": "x", "input_size": 8, "class_names": ["a"]}', "outside 32..1024"),
    ('{"backbone": "x", "input_size": 64, "class_names": []}', "no class names"),
    ('{"backbone": "x", "input_size": 64, "class_names": ["a"], "head": "attention"}', "head 'attention'"),
])
def test_bad_specs_are_refused_with_a_reason(text, message):
    with pytest.raises(SpecError, match=message):
        RefinerSpec.from_json(text)


def test_unknown_paper_backbone():
    with pytest.raises(SpecError, match="unknown backbone"):
        paper_spec("b9", ("a",))
