"""Synthetic scenes with exact ground-truth boxes, for tests, training and the bundled demo.

Real datasets carry annotation noise of a pixel or two, which is exactly the error a box
refiner is meant to remove; here every box is the extent of the pixels actually drawn, so a
refiner's residual error is its own. Scenes mimic the paper's hard case: cluttered backgrounds
and several objects of the same class touching or overlapping.

Boxes are (x1, y1, x2, y2) in pixel-edge coordinates (see pipeline.core.geometry): an object whose
leftmost drawn pixel column is 10 and rightmost is 19 has x1 = 10, x2 = 20. Objects are always
fully inside the frame; where they overlap, the smaller one is drawn on top, so no object is
hidden completely, and every box is the object's full extent (occluded parts included).

Command line (the app's, pipeline.app.synthetic_data):
    python -m pipeline.app.synthetic_data dataset --out DIR --images N --size 640x480 --seed S [--yolo]
    python -m pipeline.app.synthetic_data clip --out FILE.mp4 --frames N --size 1280x720 --seed S
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle")
_VERTEX_COUNT = {"square": 4, "triangle": 3}  # regular polygons; the disc is drawn as a circle
_MARGIN = 2  # pixels of texture around an object's circumscribed circle
_SUBPIXEL_BITS = 4  # cv2 fixed-point drawing: objects move by 1/16 px, not whole pixels
_SAME_CLASS_NEIGHBOUR_P = 0.5  # chance that a new object touches an existing one of its class
_JPEG_QUALITY = 95


@dataclass(frozen=True)
class Scene:
    """One rendered frame with its exact annotations."""

    image: np.ndarray  # H x W x 3 uint8, BGR
    boxes: np.ndarray  # N x 4 float32, xyxy pixel-edge coordinates
    class_ids: np.ndarray  # N int64, indices into CLASS_NAMES

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be H x W x 3 uint8, got {self.image.shape} {self.image.dtype}")
        if self.boxes.shape != (len(self.class_ids), 4) or self.boxes.dtype != np.float32:
            raise ValueError(f"boxes must be float32 ({len(self.class_ids)}, 4), got {self.boxes.shape}")
        if self.class_ids.dtype != np.int64:
            raise ValueError(f"class_ids must be int64, got {self.class_ids.dtype}")


@dataclass(frozen=True)
class SceneObject:
    """A textured shape centred at (cx, cy); `radius` is its circumscribed circle's radius."""

    class_id: int
    cx: float
    cy: float
    radius: float
    angle: float  # radians; ignored for discs
    texture: np.ndarray  # S x S x 3 uint8 with S >= sprite_side(radius); painted through the mask

    def __post_init__(self) -> None:
        side = sprite_side(self.radius)
        if self.texture.shape[0] < side or self.texture.shape[1] < side:
            raise ValueError(f"texture must be at least {side} x {side} for radius {self.radius}")
        if not 0 <= self.class_id < len(CLASS_NAMES):
            raise ValueError(f"class_id {self.class_id} is not in 0..{len(CLASS_NAMES) - 1}")


def sprite_side(radius: float) -> int:
    """Side of the square pixel patch that always holds an object of this radius."""
    return math.ceil(2 * radius) + 2 * _MARGIN


def centre_range(radius: float, frame_side: int) -> tuple[float, float]:
    """Centre coordinates that keep an object's whole patch inside a frame of this side.

    One pixel tighter than the exact bound on each side, so float rounding in floor/ceil
    can never push a patch out of the frame.
    """
    return radius + _MARGIN + 1, frame_side - radius - _MARGIN - 2


def draw_object(image: np.ndarray, obj: SceneObject) -> np.ndarray:
    """Paint `obj` into `image` in place and return its exact box (float32 xyxy).

    The box is measured from the rasterised mask rather than computed from the geometry,
    so it matches the drawn pixels exactly whatever the rasteriser rounds.
    """
    side = sprite_side(obj.radius)
    x0 = math.floor(obj.cx - obj.radius) - _MARGIN
    y0 = math.floor(obj.cy - obj.radius) - _MARGIN
    if x0 < 0 or y0 < 0 or x0 + side > image.shape[1] or y0 + side > image.shape[0]:
        raise ValueError(f"object at ({obj.cx:.1f}, {obj.cy:.1f}) radius {obj.radius:.1f} leaves the frame")
    mask = np.zeros((side, side), np.uint8)
    _rasterise(mask, obj, obj.cx - x0, obj.cy - y0)
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        raise ValueError(f"object radius {obj.radius} is too small to cover a pixel")
    roi = image[y0 : y0 + side, x0 : x0 + side]
    np.copyto(roi, obj.texture[:side, :side], where=mask[:, :, None].astype(bool))
    return np.array([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], np.float32)


def _rasterise(mask: np.ndarray, obj: SceneObject, cx: float, cy: float) -> None:
    """Fill the object's shape into `mask` (hard edges: anti-aliasing would blur the true extent)."""
    scale = 1 << _SUBPIXEL_BITS
    # cv2 samples pixel centres at integer coordinates; ours are at +0.5.
    centre = np.array([cx - 0.5, cy - 0.5])
    name = CLASS_NAMES[obj.class_id]
    if name == "disc":
        centre_fixed = tuple(int(v) for v in np.round(centre * scale))
        cv2.circle(mask, centre_fixed, round(obj.radius * scale), 255, -1, cv2.LINE_8, _SUBPIXEL_BITS)
        return
    n = _VERTEX_COUNT[name]
    angles = obj.angle + 2 * np.pi * np.arange(n) / n
    vertices = centre + obj.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.round(vertices * scale).astype(np.int32)], 255, cv2.LINE_8, _SUBPIXEL_BITS)


def render_scene(rng: np.random.Generator, width: int, height: int, n_objects: int | None = None) -> Scene:
    """Render a random cluttered scene; `n_objects` defaults to a random 3..12."""
    image = _background(rng, width, height)
    count = int(rng.integers(3, 13)) if n_objects is None else n_objects
    return _compose(image, _sample_objects(rng, width, height, count))


def _compose(background: np.ndarray, objects: list[SceneObject]) -> Scene:
    """Draw objects largest first, so smaller ones stay visible on top of bigger ones."""
    image = background.copy()
    ordered = sorted(objects, key=lambda o: -o.radius)
    boxes = np.array([draw_object(image, o) for o in ordered], np.float32).reshape(-1, 4)
    class_ids = np.array([o.class_id for o in ordered], np.int64)
    return Scene(image, boxes, class_ids)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth colour gradients, clutter strokes and blobs, blur, then sensor-like grain."""
    grid = rng.uniform(30, 220, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3)).astype(np.float32)
    image = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    scale = min(width, height)
    for _ in range(int(rng.integers(8, 30))):
        colour = _muted_colour(rng)
        p1, p2 = rng.uniform(0, [width, height], (2, 2)).astype(int)
        cv2.line(image, tuple(map(int, p1)), tuple(map(int, p2)), colour, int(rng.integers(1, 5)), cv2.LINE_AA)
    for _ in range(int(rng.integers(4, 15))):
        centre = tuple(int(v) for v in rng.uniform(0, [width, height]))
        axes = tuple(int(v) for v in rng.uniform(0.02, 0.15, 2) * scale)
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, _muted_colour(rng), -1, cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.8, 2.5)))
    return _add_grain(rng, image, amplitude=int(rng.integers(4, 16)))


def _muted_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Low-saturation colours, so clutter reads as background rather than as objects."""
    grey = rng.uniform(40, 200)
    return tuple(int(v) for v in np.clip(grey + rng.uniform(-35, 35, 3), 0, 255))


def _add_grain(rng: np.random.Generator, image: np.ndarray, amplitude: int) -> np.ndarray:
    """Add zero-mean luminance noise in [-amplitude, amplitude) with uint8 saturation.

    One channel drawn and shared by all three: a third of the random numbers, still realistic.
    """
    noise = rng.integers(0, 2 * amplitude, image.shape[:2], dtype=np.uint8)
    return cv2.subtract(cv2.add(image, cv2.merge([noise, noise, noise])), (amplitude,) * 3 + (0,))


def _texture(rng: np.random.Generator, side: int, colour: np.ndarray) -> np.ndarray:
    """A colour with stripes or a gradient, plus grain: objects must not be flat blobs."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    if rng.random() < 0.5:
        period = rng.uniform(3, 12)
        pattern = np.sin(along * (2 * np.pi / period))
    else:
        pattern = along / side * 2 - 1
    shade = pattern[:, :, None] * rng.uniform(10, 45) + rng.normal(0, rng.uniform(2, 10), (side, side, 1))
    return np.clip(colour[None, None, :] + shade, 0, 255).astype(np.uint8)


def _vivid_colour(rng: np.random.Generator) -> np.ndarray:
    """Saturated BGR colours via HSV, so objects usually (not always) stand out from clutter."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(90, 256), rng.integers(70, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _sample_objects(rng: np.random.Generator, width: int, height: int, count: int) -> list[SceneObject]:
    """Sample objects; about half are same-class neighbours touching or overlapping an earlier one."""
    min_radius = 6.0  # 12 px across
    max_radius = max(min_radius, 0.2 * min(width, height))  # 40 % of the shorter side across
    objects: list[SceneObject] = []
    colours: list[np.ndarray] = []
    for _ in range(count):
        if objects and rng.random() < _SAME_CLASS_NEIGHBOUR_P:
            parent_index = int(rng.integers(len(objects)))
            parent = objects[parent_index]
            class_id = parent.class_id
            radius = float(np.clip(parent.radius * rng.uniform(0.7, 1.3), min_radius, max_radius))
            direction = rng.uniform(0, 2 * np.pi)
            distance = (parent.radius + radius) * rng.uniform(0.6, 1.0)
            cx = parent.cx + distance * np.cos(direction)
            cy = parent.cy + distance * np.sin(direction)
            colour = colours[parent_index] + rng.uniform(-25, 25, 3)  # similar, as same-class objects often are
        else:
            class_id = int(rng.integers(len(CLASS_NAMES)))
            radius = float(np.exp(rng.uniform(np.log(min_radius), np.log(max_radius))))
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            colour = _vivid_colour(rng)
        cx = float(np.clip(cx, *centre_range(radius, width)))
        cy = float(np.clip(cy, *centre_range(radius, height)))
        texture = _texture(rng, sprite_side(radius), colour)
        objects.append(SceneObject(class_id, cx, cy, radius, float(rng.uniform(0, 2 * np.pi)), texture))
        colours.append(colour)
    return objects


def generate_clip(n_frames: int, width: int, height: int, seed: int, n_objects: int = 8) -> Iterator[Scene]:
    """Yield frames of objects gliding at constant velocity and bouncing off the frame edges.

    The background is fixed per clip and objects keep their texture, as in a static camera
    video; same-class neighbours start together with similar velocities, so they overlap often.
    """
    for scene, _ in generate_tracked_clip(n_frames, width, height, seed, n_objects):
        yield scene


def generate_tracked_clip(
    n_frames: int, width: int, height: int, seed: int, n_objects: int = 8, standing: float = 0.0, slow: float = 0.0
) -> Iterator[tuple[Scene, np.ndarray]]:
    """generate_clip's frames with each box's object id (exact ground truth for tracking).

    `standing`, `slow`: fractions of the objects that do not move at all (nor turn), or move at a
    tenth of the speed; moving objects cross the standing ones and occlude them partly. With both
    0 the frames are exactly generate_clip's.
    """
    rng = np.random.default_rng(seed)
    background = _background(rng, width, height)
    objects = _sample_objects(rng, width, height, n_objects)
    speed = rng.uniform(0.001, 0.006, n_objects) * max(width, height)  # px per frame
    heading = rng.uniform(0, 2 * np.pi, n_objects)
    spin = rng.uniform(-0.03, 0.03, n_objects)  # rad per frame
    if standing or slow:
        kind = rng.permutation(n_objects)  # the first standing * n are standing, the next slow * n slow
        first_slow, first_moving = round(standing * n_objects), round((standing + slow) * n_objects)
        factor = np.where(kind < first_slow, 0.0, np.where(kind < first_moving, 0.1, 1.0))
        speed, spin = speed * factor, spin * factor
    velocity = np.stack([speed * np.cos(heading), speed * np.sin(heading)], axis=1)
    # _compose draws largest first (a stable sort), so box i belongs to object order[i].
    order = np.array(sorted(range(n_objects), key=lambda i: -objects[i].radius), np.int64)
    for _ in range(n_frames):
        yield _compose(background, objects), order
        objects = [_step(o, v, s, width, height) for o, v, s in zip(objects, velocity, spin)]


def _step(obj: SceneObject, velocity: np.ndarray, spin: float, width: int, height: int) -> SceneObject:
    """Advance one frame; `velocity` is flipped in place when the object bounces."""
    cx = _bounce(obj.cx + velocity[0], *centre_range(obj.radius, width), velocity, 0)
    cy = _bounce(obj.cy + velocity[1], *centre_range(obj.radius, height), velocity, 1)
    return replace(obj, cx=cx, cy=cy, angle=obj.angle + spin)


def _bounce(value: float, low: float, high: float, velocity: np.ndarray, axis: int) -> float:
    """Reflect a coordinate that crossed [low, high] and reverse that velocity component."""
    if value < low or value > high:
        velocity[axis] = -velocity[axis]
        value = 2 * low - value if value < low else 2 * high - value
    return float(np.clip(value, low, high))


@dataclass(frozen=True)
class _Annotated:
    """What the COCO json needs from a scene; the pixels are dropped to keep memory flat."""

    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    class_ids: np.ndarray

    @classmethod
    def of(cls, file_name: str, scene: Scene) -> _Annotated:
        height, width = scene.image.shape[:2]
        return cls(file_name, width, height, scene.boxes, scene.class_ids)


def _coco_document(records: list[_Annotated]) -> dict:
    """COCO dict; image ids are list positions, category ids are class index + 1, annotation ids start at 1.

    Annotation id 0 is avoided because pycocotools treats a matched id of 0 as "unmatched".
    """
    images, annotations = [], []
    for image_id, record in enumerate(records):
        images.append({"id": image_id, "file_name": record.file_name, "width": record.width, "height": record.height})
        for box, class_id in zip(record.boxes.tolist(), record.class_ids.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_id + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASS_NAMES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco_dataset(out_dir: Path, n_images: int, width: int, height: int, seed: int) -> Path:
    """Write out_dir/images/NNNNNN.jpg and out_dir/annotations.json; return the json path.

    Image ids are the image index (0-based), matching the file name.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for index in range(n_images):
        scene = render_scene(rng, width, height)
        file_name = f"{index:06d}.jpg"
        cv2.imwrite(str(out_dir / "images" / file_name), scene.image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        records.append(_Annotated.of(file_name, scene))
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(_coco_document(records)))
    return path


def write_yolo_labels(dataset_dir: Path) -> Path:
    """Write Ultralytics labels/ beside images/ from dataset_dir/annotations.json; return labels/.

    Ultralytics finds a label by replacing "/images/" with "/labels/" in the image path.
    """
    dataset_dir = Path(dataset_dir)
    coco = json.loads((dataset_dir / "annotations.json").read_text())
    lines: dict[int, list[str]] = {image["id"]: [] for image in coco["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        iw, ih = sizes[ann["image_id"]]
        cx, cy = (x + w / 2) / iw, (y + h / 2) / ih
        lines[ann["image_id"]].append(f"{ann['category_id'] - 1} {cx:.6f} {cy:.6f} {w / iw:.6f} {h / ih:.6f}")
    labels_dir = dataset_dir / "labels"
    labels_dir.mkdir(exist_ok=True)
    for image in coco["images"]:
        text = "\n".join(lines[image["id"]])
        (labels_dir / Path(image["file_name"]).with_suffix(".txt").name).write_text(text + "\n" if text else "")
    return labels_dir


def write_yolo_data_yaml(path: Path, train_dir: Path, val_dir: Path) -> Path:
    """Write an Ultralytics data.yaml pointing at two datasets' images/ folders; return its path."""
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASS_NAMES))
    train_images, val_images = (Path(d).resolve() / "images" for d in (train_dir, val_dir))
    Path(path).write_text(f"train: {train_images}\nval: {val_images}\nnames:\n{names}")
    return Path(path)


def write_clip(path: Path, n_frames: int, width: int, height: int, seed: int, n_objects: int = 8, fps: float = 30.0) -> Path:
    """Write an mp4 (fourcc mp4v) and its COCO ground truth beside it (same stem, .json); return the json path.

    In the json, image_id is the 0-based frame index and file_name is "<clip name>#<frame index>".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    records = []
    try:
        for index, scene in enumerate(generate_clip(n_frames, width, height, seed, n_objects)):
            writer.write(scene.image)
            records.append(_Annotated.of(f"{path.name}#{index}", scene))
    finally:
        writer.release()
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(_coco_document(records)))
    return json_path


def parse_size(text: str) -> tuple[int, int]:
    """Parse "WIDTHxHEIGHT" (the CLI size format) into (width, height)."""
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height
