"""Calibration profiles are typed fields of the spec; files written before profiles still load."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.core.calibration import GATE_FEATURES, Calibration, GateModel
from pipeline.core.errors import SpecError
from pipeline.core.spec import RefinerSpec

ROOT = Path(__file__).resolve().parents[3]


def gate(threshold: float = 0.0) -> GateModel:
    return GateModel((0.0, 64.0, math.inf), (0.02, -0.01), (0.1, 0.0, 0.0, 0.0), (0.5, -6.0, -1.0, 2.0),
                     (("person", 0.0),), threshold, 100)


def spec(**fields) -> RefinerSpec:
    return RefinerSpec(backbone="mobilenetv3_small_050", input_size=64, class_names=("person",), **fields)


def test_profiles_with_gates_round_trip_through_json():
    profiles = {"generic": Calibration(0.1), "yolov8n": Calibration(0.02, 0.05, fitted_on="train", max_box_side=192.0, gate=gate(math.inf))}
    read = RefinerSpec.from_json(spec(profiles=profiles).to_json())
    assert read.profiles == profiles
    assert isinstance(read.profiles["yolov8n"].gate, GateModel) and read.profiles["yolov8n"].gate.threshold == math.inf
    assert len(read.profiles["yolov8n"].gate.slopes) == len(GATE_FEATURES)


def test_a_spec_written_before_profiles_reads_its_calibration_as_the_generic_profile():
    old = json.loads(spec().to_json())
    del old["profiles"]
    old["extra"] = {"calibration.blend_temperature": "0.1", "calibration.gain_margin": "0", "calibration.max_box_side": "inf",
                    "calibration.score_power": "0", "calibration.fitted_on": "yolov8n", "note": "kept"}
    read = RefinerSpec.from_json(json.dumps(old))
    assert read.profiles == {"generic": Calibration(0.1, 0.0, 0.0, "yolov8n")}
    assert read.extra == {"note": "kept"}  # no calibration string keys left behind


def test_the_committed_refiners_carry_typed_profiles():
    from pipeline.model.artifacts import read_spec

    for name in ("refiner-person-lite0-160-edges.safetensors", "refiner-coco80-lite0-160-edges.safetensors"):
        profiles = read_spec(ROOT / "engines" / name).profiles
        assert "generic" in profiles and all(isinstance(p, Calibration) for p in profiles.values())
        assert not any(key.startswith("calibration.") for key in read_spec(ROOT / "engines" / name).extra)


def test_a_changed_calibration_is_the_same_network():
    assert replace(spec(), profiles={"generic": Calibration(0.2)}) == spec()


@pytest.mark.parametrize("bad, message", [
    (lambda: GateModel((0.0, 64.0), (0.1, 0.2), (0, 0, 0, 0), (0, 0, 0, 0)), "one gain per bin"),
    (lambda: GateModel((64.0, 0.0), (0.1,), (0, 0, 0, 0), (0, 0, 0, 0)), "ascending"),
    (lambda: GateModel((0.0, 64.0), (0.1,), (0, 0), (0, 0)), "one slope"),
    (lambda: GateModel((0.0, 64.0), (0.1,), (0, 0, 0, 0), (0, 0, 0, 0), threshold=math.nan), "NaN"),
    (lambda: spec(profiles={"generic": {"blend_temperature": 0.1, "colour": 3}}), "recalibrate"),
    (lambda: spec(profiles=["generic"]), "not a JSON object"),
])
def test_broken_profiles_are_spec_errors(bad, message):
    with pytest.raises(SpecError, match=message):
        bad()
