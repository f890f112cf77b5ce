"""Train the demo's small YOLO detector on synthetic scenes, on CPU, from scratch.

The demo needs a detector whose boxes are decent but loose, so the refiner has something to
fix; a few CPU minutes of yolov8n on pipeline.data.synthetic scenes gives exactly that. No
pretrained weights are used anywhere (nothing may be downloaded), hence `yolov8n.yaml`.

    python -m train.detector --out engines/demo-detector-yolov8n.pt
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from pipeline.data import synthetic
from pipeline.io.ultralytics_offline import import_ultralytics

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_dataset(work_dir: Path, n_train: int, n_val: int, width: int, height: int, seed: int) -> Path:
    """Render disjoint train/val sets (different seeds) with YOLO labels; return data.yaml.

    `work_dir` is emptied first: stale images from a bigger earlier run would leak into training.
    """
    shutil.rmtree(work_dir, ignore_errors=True)
    train_dir, val_dir = work_dir / "train", work_dir / "val"
    for directory, count, split_seed in ((train_dir, n_train, seed), (val_dir, n_val, seed + 1)):
        synthetic.write_coco_dataset(directory, count, width, height, split_seed)
        synthetic.write_yolo_labels(directory)
    return synthetic.write_yolo_data_yaml(work_dir / "data.yaml", train_dir, val_dir)


def train_detector(
    data_yaml: Path, run_dir: Path, epochs: int, imgsz: int, batch: int, seed: int, init: Path | None = None
) -> tuple[Path, dict]:
    """Train yolov8n on CPU, from scratch or from `init`; return best.pt and the final validation metrics.

    `init` continues from an earlier run's weights, so a CPU budget can be spent in stages.

    nbs=batch: Ultralytics otherwise accumulates gradients up to a nominal batch of 64, which
    leaves a few hundred images only ~10 optimizer steps per epoch: too few to learn from
    scratch in minutes. val=False: validating every epoch would cost a fifth of the CPU
    budget; Ultralytics still validates the final weights.
    """
    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(init) if init else "yolov8n.yaml")
    model.train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        nbs=batch,
        val=False,
        device="cpu",
        pretrained=init is not None,  # True keeps the weights loaded from `init`; never downloads
        amp=False,
        plots=False,
        workers=2,
        cache="ram",
        seed=seed,
        project=str(run_dir.resolve()),
        name="train",
        exist_ok=True,
        verbose=True,
    )
    return _outcome(model)


def resume_detector(run_dir: Path) -> tuple[Path, dict]:
    """Finish an interrupted run from its last completed epoch; on a shared CPU, runs get killed.

    Ultralytics stores every training argument and the optimizer state in last.pt.
    """
    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(run_dir / "train" / "weights" / "last.pt"))
    model.train(resume=True)
    return _outcome(model)


def _outcome(model) -> tuple[Path, dict]:
    """best.pt and the metrics of Ultralytics' final validation of it."""
    box = model.trainer.validator.metrics.box
    return Path(model.trainer.best), {"mAP50": float(box.map50), "mAP50-95": float(box.map)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.detector", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "engines" / "demo-detector-yolov8n.pt")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "runs" / "demo-detector", help="dataset and run")
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--size", type=synthetic.parse_size, default=(640, 360), help="scene WIDTHxHEIGHT")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="continue from this checkpoint instead of random weights")
    parser.add_argument("--resume", action="store_true", help="finish the interrupted run in --work-dir")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.resume:
        best, metrics = resume_detector(args.work_dir)
    else:
        data_yaml = build_dataset(args.work_dir / "data", args.train_images, args.val_images, *args.size, args.seed)
        best, metrics = train_detector(data_yaml, args.work_dir, args.epochs, args.imgsz, args.batch, args.seed, args.init)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, args.out)
    minutes = (time.perf_counter() - started) / 60
    print(f"wrote {args.out} in {minutes:.1f} min; val mAP50 {metrics['mAP50']:.3f}, mAP50-95 {metrics['mAP50-95']:.3f}")


if __name__ == "__main__":
    main()
