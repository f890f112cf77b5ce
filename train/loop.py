"""The training loop: AdaDelta, reduce-on-plateau, early stopping, resumable, optionally DDP.

Every epoch ends with a validation pass at inference conditions (fixed padding, no photometric
changes) reporting mean IoU of the distorted input boxes, of the refined boxes, and of the boxes
the quality gate keeps, so a log line says at once whether refining helps.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from pipeline.core.errors import UsageError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import read_spec
from pipeline.model.checkpoint import load_refiner, save_refiner
from pipeline.model.net import RefinerNet
from pipeline.model.pretrained import SOURCES, load_backbone_weights, weights_file
from train.augment import AugmentConfig, Sample, make_sample
from train.data import AnnotatedImage
from train.losses import BOX_LOSSES, paired_iou, quality_loss

# The paper's AdaDelta (lr 1.0); AdamW (lr ~1e-3) converges faster from scratch on a CPU budget.
OPTIMIZERS = {"adadelta": torch.optim.Adadelta, "adamw": torch.optim.AdamW}


@dataclass
class TrainConfig:
    spec: RefinerSpec
    out: Path
    epochs: int = 60
    batch_size: int = 32
    boxes_per_image: int = 1
    loss: str = "iou"
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    plateau_patience: int = 2
    early_stop_patience: int = 6
    seed: int = 0
    workers: int = 0
    time_limit_minutes: float | None = None
    val_boxes: int = 1500
    device: str = "cpu"
    resume: bool = False
    init: Path | None = None  # start from these weights (same spec) with a fresh optimizer and schedule
    pretrained: bool = False  # fresh runs start the backbone from its installed ImageNet weights
    real_box_share: float = 0.0  # share of samples whose input is a real detector's box (where the image has some)
    real_box_regression: bool = False  # real boxes matched at IoU >= 0.5 teach the box head too, not only the IoU head
    freeze_stages: int = 0  # backbone stem and blocks below this index get no gradient (the costly high-resolution part)
    channels_last: bool = False  # NHWC weights: the uint8 NHWC crops then never change layout (speed measured in the README)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        """Everything that can be wrong before any data is read, as one UsageError (or the file's own error)."""
        for name in ("epochs", "batch_size", "boxes_per_image", "val_boxes"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.loss not in BOX_LOSSES or self.optimizer not in OPTIMIZERS:
            raise UsageError(f"choose --loss from {', '.join(sorted(BOX_LOSSES))} and --optimizer from {', '.join(OPTIMIZERS)}")
        if not 0.0 <= self.real_box_share <= 1.0:
            raise UsageError("--real-box-share must lie in 0..1")
        try:
            RefinerNet(self.spec)  # an unknown backbone, or a head it cannot carry
        except (ValueError, RuntimeError) as error:
            raise UsageError(f"cannot build a {self.spec.name} refiner: {error}") from None
        if self.pretrained:
            if self.spec.backbone not in SOURCES:
                raise UsageError(f"no installed ImageNet weights are known for {self.spec.backbone}; train it from random weights")
            weights_file(SOURCES[self.spec.backbone])  # the weights' package is installed, before any work
        if self.init is not None:
            start = read_spec(self.init)  # the spec only; train() loads the weights
            if not warm_startable(start, self.spec):
                raise UsageError(
                    f"--init {self.init} is a {start.name} model, trained for another spec than this run's {self.spec.name}; "
                    "pass the same --backbone and quality/mixture settings (--head, --padding, --input-size and classes may differ)"
                )


# A real box teaches the box head only if it found its object this clearly (COCO's AP50 bar):
# where a detector's box and the annotation disagree more, the annotation is a noisy target.
REAL_REGRESSION_IOU = 0.5


class RandomBoxes(Dataset):
    """Per epoch, `boxes_per_image` random boxes from every image, freshly augmented.

    A share of the samples (config.real_box_share) starts from a real detector's box instead of
    jittered truth: matched boxes show how the detector errs, unmatched ones (false positives,
    IoU 0 with every truth) what a box that found nothing looks like. Those teach the IoU head
    when to leave a box alone; they teach the box head only with real_box_regression.
    The random stream depends only on (seed, epoch, index), so results do not depend on the
    number of loader workers or on resuming.
    """

    def __init__(self, images: list[AnnotatedImage], spec: RefinerSpec, config: TrainConfig) -> None:
        self.images, self.spec, self.config, self.epoch = images, spec, config, 0

    def __len__(self) -> int:
        return len(self.images) * self.config.boxes_per_image

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        image = self.images[index % len(self.images)]
        real = image.detected is not None and len(image.detected) > 0 and rng.random() < self.config.real_box_share
        if not real:
            which = rng.integers(len(image.boxes))
            return as_arrays(make_sample(
                rng, image.pixels, image.boxes[which], int(image.class_ids[which]),
                self.spec.num_classes, self.spec.input_size, self.config.augment, self.spec.padding,
            ))
        pick = rng.integers(len(image.detected))
        which = max(int(image.detected_match[pick]), 0)  # unmatched: any truth, IoU 0 with it
        regress = self.config.real_box_regression and image.detected_iou[pick] >= REAL_REGRESSION_IOU
        sample = make_sample(
            rng, image.pixels, image.boxes[which], int(image.class_ids[which]), self.spec.num_classes,
            self.spec.input_size, self.config.augment, self.spec.padding, detection=image.detected[pick],
        )
        return as_arrays(sample, box_weight=float(regress))


def as_arrays(sample: Sample, box_weight: float = 1.0) -> tuple[np.ndarray, ...]:
    """crop, vector, target, input box, and whether the box head learns from this sample (1) or not (0)."""
    return (sample.crop, sample.vector.astype(np.float32), sample.target.astype(np.float32),
            sample.input_box.astype(np.float32), np.float32(box_weight))


def validation_set(images: list[AnnotatedImage], spec: RefinerSpec, config: TrainConfig) -> list[torch.Tensor]:
    """A fixed set of val samples under inference conditions, built once."""
    samples = []
    for index, image in enumerate(images):
        for which in range(len(image.boxes)):
            rng = np.random.default_rng([config.seed, 10_000_019, index, which])
            samples.append(as_arrays(make_sample(
                rng, image.pixels, image.boxes[which], int(image.class_ids[which]),
                spec.num_classes, spec.input_size, config.augment, spec.padding, validation=True,
            )))
    order = np.random.default_rng(config.seed).permutation(len(samples))[: config.val_boxes]
    return [torch.from_numpy(np.stack([samples[i][k] for i in order])) for k in range(4)]


def real_validation_set(images: list[AnnotatedImage], spec: RefinerSpec, config: TrainConfig) -> list[torch.Tensor] | None:
    """Every real detector box of the val images that found its object (IoU >= 0.5), at inference conditions."""
    samples = []
    for index, image in enumerate(images):
        if image.detected is None:
            continue
        for pick in np.flatnonzero(image.detected_iou >= REAL_REGRESSION_IOU):
            which = int(image.detected_match[pick])
            samples.append(as_arrays(make_sample(
                np.random.default_rng(0), image.pixels, image.boxes[which], int(image.class_ids[which]), spec.num_classes,
                spec.input_size, config.augment, spec.padding, validation=True, detection=image.detected[pick],
            )))
    if not samples:
        return None
    return [torch.from_numpy(np.stack([sample[k] for sample in samples])) for k in range(4)]


@torch.no_grad()
def evaluate(model: RefinerNet, val: list[torch.Tensor], device: torch.device, batch_size: int) -> dict[str, float]:
    """Mean IoU with the truth of the input boxes, the refined boxes and the gated choice."""
    model.eval()
    crops, vectors, targets, inputs = val
    outputs = torch.cat([
        model(crops[i : i + batch_size].to(device), vectors[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(crops), batch_size)
    ])
    iou_input, iou_refined = paired_iou(inputs, targets), paired_iou(outputs[:, :4], targets)
    metrics = {"val_iou_input": iou_input.mean().item(), "val_iou_refined": iou_refined.mean().item()}
    if outputs.shape[1] == 6:
        take_refined = outputs[:, 5] > outputs[:, 4]
        metrics["val_iou_gated"] = torch.where(take_refined, iou_refined, iou_input).mean().item()
        metrics["val_refined_share"] = take_refined.float().mean().item()
        # Does the predicted gain know which boxes gain? Correlation of predicted and true gain.
        gain, predicted = iou_refined - iou_input, outputs[:, 5] - outputs[:, 4]
        metrics["val_gain_correlation"] = torch.corrcoef(torch.stack([gain, predicted]))[0, 1].nan_to_num().item()
    return metrics


def distributed_rank() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if world > 1 else 0), world


def train(config: TrainConfig, train_images: list[AnnotatedImage], val_images: list[AnnotatedImage]) -> dict[str, float]:
    """Train, keep the best model (by mean of refined and gated val IoU) at config.out; return its metrics."""
    if len(train_images) * config.boxes_per_image < config.batch_size:
        raise UsageError(
            f"{len(train_images) * config.boxes_per_image} training samples per epoch is less than one batch of "
            f"{config.batch_size}, so nothing would be learned; pass a smaller --batch-size or more --boxes-per-image"
        )
    rank, world = distributed_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if config.device == "cuda" else "cpu")
    torch.manual_seed(config.seed)
    model = RefinerNet(config.spec)
    if config.init is not None:
        warm_start(model, load_refiner(config.init), config.init)
    elif config.pretrained and not config.resume:
        loaded = load_backbone_weights(model.backbone, config.spec.backbone)
        print(f"backbone: {loaded} ImageNet tensors from {config.spec.pretrained}", flush=True)
    model = model.to(device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    frozen = freeze_early_stages(model, config.freeze_stages)
    if frozen:
        print(f"frozen: stem and backbone blocks 0-{config.freeze_stages - 1} ({frozen} tensors)", flush=True)
    network = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = OPTIMIZERS[config.optimizer]([p for p in network.parameters() if p.requires_grad], lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=config.plateau_patience)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    box_loss = BOX_LOSSES[config.loss]
    state_path, log_path = config.out.with_suffix(".state.pt"), config.out.with_suffix(".log.jsonl")
    start_epoch, best, stale, history = 0, -1.0, 0, []
    if config.resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"]), optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, stale, history = state["epoch"] + 1, state["best"], state["stale"], state["history"]
    dataset = RandomBoxes(train_images, config.spec, config)
    sampler = DistributedSampler(dataset, seed=config.seed) if world > 1 else None
    val = validation_set(val_images, config.spec, config) if rank == 0 else None
    val_real = real_validation_set(val_images, config.spec, config) if rank == 0 else None
    # Minutes (and --time-limit) count the whole training, across resumes.
    started = time.monotonic() - 60 * (history[-1]["minutes"] if history else 0.0)
    for epoch in range(start_epoch, config.epochs):
        dataset.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = DataLoader(dataset, config.batch_size, shuffle=sampler is None, sampler=sampler,
                            num_workers=config.workers, drop_last=True, generator=torch.Generator().manual_seed(config.seed + epoch))
        network.train()
        losses = []
        for crops, vectors, targets, inputs, box_weights in tqdm(loader, desc=f"epoch {epoch}", disable=rank != 0, leave=False):
            crops, vectors, targets, inputs = (t.to(device, non_blocking=True) for t in (crops, vectors, targets, inputs))
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                outputs = network(crops, vectors)
            outputs = outputs.float()
            regress = box_weights.to(device) > 0
            loss = box_loss(outputs[regress, :4], targets[regress]) if regress.any() else outputs.sum() * 0
            if outputs.shape[1] == 6:
                loss = loss + quality_loss(outputs[:, 4:], inputs, outputs[:, :4], targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
        out_of_time = config.time_limit_minutes is not None and time.monotonic() - started > 60 * config.time_limit_minutes
        stop = out_of_time
        if rank == 0:
            record, improved = end_of_epoch(model, val, val_real, config, epoch, losses, optimizer, scheduler, best, started)
            best, stale = (record["score"], 0) if improved else (best, stale + 1)
            history.append(record)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "epoch": epoch, "best": best, "stale": stale, "history": history}, state_path)
            log_path.write_text("".join(json.dumps(r) + "\n" for r in history))
            stop = stop or stale >= config.early_stop_patience
        if world > 1:  # every rank must leave the loop together
            flag = torch.tensor([float(stop)], device=device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            break
    if world > 1:
        dist.destroy_process_group()
    return max(history, key=lambda r: r["score"]) if history else {}


def freeze_early_stages(model: RefinerNet, stages: int) -> int:
    """Stop gradients into the backbone's stem and first `stages` blocks; returns how many tensors.

    Those layers run at the highest resolution, so their backward pass is most of a step's cost on
    a CPU, while ImageNet's low-level filters (edges, textures) need the least adapting.
    """
    if stages <= 0:
        return 0
    frozen = 0
    for name, parameter in model.backbone.named_parameters():
        if name.startswith(("conv_stem.", "bn1.")) or (name.startswith("blocks.") and int(name.split(".")[1]) < stages):
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


# What a warm restart may change: the rest (backbone, classes, mixture, quality head) must match.
WARM_START_MAY_CHANGE = ("head", "padding", "input_size", "class_names")


def warm_start(model: RefinerNet, start: RefinerNet, path: Path) -> None:
    """Copy `start`'s weights into `model` (a warm restart).

    Same spec: every tensor. Another head, padding, input size or class list on the same backbone:
    every tensor whose name and shape match (convolutions do not depend on the input size); layers
    that read the mixture vector keep their geometry columns, and each class takes the column of
    the same class in `start`, or the mean of its classes' columns for a new class, so a person
    refiner starts a many-class one as a class-blind copy of itself; the rest starts fresh. The
    specs are warm_startable: TrainConfig checks that when it is made.
    """
    if start.spec == model.spec:
        model.load_state_dict(start.state_dict())
        return
    own, theirs = model.state_dict(), start.state_dict()
    shared = {name: tensor for name, tensor in theirs.items() if name in own and own[name].shape == tensor.shape}
    if start.spec.class_names != model.spec.class_names:  # the layers that read the mixture vector, by their input width
        shared.update({name: remapped_vector_columns(tensor, start.spec.class_names, model.spec.class_names)
                       for name, tensor in theirs.items() if name in own and tensor.ndim == 2
                       and tensor.shape[1] == start.spec.vector_size and own[name].shape[1] == model.spec.vector_size})
    model.load_state_dict(shared, strict=False)
    print(f"--init {path}: {start.spec.name} (padding {start.spec.padding}) -> {model.spec.name} (padding "
          f"{model.spec.padding}); copied {len(shared)} of {len(own)} tensors", flush=True)


def remapped_vector_columns(weight: torch.Tensor, old: tuple[str, ...], new: tuple[str, ...]) -> torch.Tensor:
    """A mixture layer's weight for another class list: a known class keeps its column, a new one
    gets the mean class column, the geometry columns after the one-hot part are kept."""
    classes, geometry = weight[:, :len(old)], weight[:, len(old):]
    mean = classes.mean(dim=1)
    columns = [classes[:, old.index(name)] if name in old else mean for name in new]
    return torch.cat([torch.stack(columns, dim=1), geometry], dim=1)


def warm_startable(start: RefinerSpec, target: RefinerSpec) -> bool:
    return replace(start, **{name: getattr(target, name) for name in WARM_START_MAY_CHANGE}) == target


def end_of_epoch(model: RefinerNet, val: list[torch.Tensor], val_real: list[torch.Tensor] | None, config: TrainConfig,
                 epoch: int, losses: list[float], optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau, best: float, started: float) -> tuple[dict, bool]:
    """Validate, step the plateau scheduler, log one line, save the model if it is the best so far."""
    device = next(model.parameters()).device
    metrics = evaluate(model, val, device, 2 * config.batch_size)
    if val_real is not None:  # the real detector's boxes of the val images: logged, not used for selection
        metrics.update({key.replace("val_", "real_"): value for key, value in evaluate(model, val_real, device, 2 * config.batch_size).items()})
    # Gated IoU alone stays flat while the gate still refuses every box, which would stop training
    # early; averaging it with the refined IoU rewards progress of either head.
    score = (metrics["val_iou_refined"] + metrics.get("val_iou_gated", metrics["val_iou_refined"])) / 2
    scheduler.step(score)
    record = {"epoch": epoch, "train_loss": float(np.mean(losses)), **metrics, "score": score,
              "lr": optimizer.param_groups[0]["lr"], "minutes": (time.monotonic() - started) / 60}
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}), flush=True)
    if score > best:
        save_refiner(model, config.out, {"bbrefinement.train": json.dumps(record)})
    return record, score > best


def config_summary(config: TrainConfig) -> dict:
    summary = asdict(config)
    summary["spec"] = json.loads(config.spec.to_json())
    summary["out"] = str(config.out)
    return summary
