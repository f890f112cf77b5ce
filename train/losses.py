"""Box losses from the paper (linear and log IoU) and torchvision's GIoU/DIoU/CIoU."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

EPS = 1e-7


def paired_iou(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of predicted[i] with target[i]; crossed predicted sides count as zero overlap."""
    top_left = torch.maximum(predicted[:, :2], target[:, :2])
    bottom_right = torch.minimum(predicted[:, 2:], target[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area_predicted = (predicted[:, 2:] - predicted[:, :2]).clamp(min=0).prod(dim=1)
    area_target = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(dim=1)
    return intersection / (area_predicted + area_target - intersection + EPS)


def linear_iou_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's default: 1 - IoU, which rewards pushing a box to 0.95 as much as to 0.55."""
    return (1 - paired_iou(predicted, target)).mean()


def log_iou_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log IoU: largest for poor boxes, for tasks judged at a single IoU threshold."""
    return -torch.log(paired_iou(predicted, target) + EPS).mean()


# DETR's balance (5 x L1 + 2 x GIoU) expressed against one unit of IoU loss.
L1_WEIGHT = 2.5


def iou_l1_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Linear IoU plus an L1 term on the window coordinates, whose pull on a side does not fade
    as the box gets close: a bid for precision on boxes that are already good."""
    return linear_iou_loss(predicted, target) + L1_WEIGHT * (predicted - target).abs().mean()


BOX_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "iou": linear_iou_loss,
    "iou+l1": iou_l1_loss,
    "log-iou": log_iou_loss,
    "giou": lambda p, t: generalized_box_iou_loss(p, t, reduction="mean", eps=EPS),
    "diou": lambda p, t: distance_box_iou_loss(p, t, reduction="mean", eps=EPS),
    "ciou": lambda p, t: complete_box_iou_loss(p, t, reduction="mean", eps=EPS),
}


def quality_loss(predicted_iou: torch.Tensor, input_box: torch.Tensor, refined: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Teach columns 4-5 the true IoU of the input box and of the (detached) refined box."""
    truth = torch.stack([paired_iou(input_box, target), paired_iou(refined.detach(), target)], dim=1)
    return torch.nn.functional.binary_cross_entropy(predicted_iou.float().clamp(EPS, 1 - EPS), truth.float())
