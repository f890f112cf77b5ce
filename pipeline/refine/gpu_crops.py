"""GPU cropper: one upload of the frame, every crop of it in one grid_sample call.

It reproduces pipeline.refine.crops.CpuCropper pixel for pixel (up to cv2's fixed-point rounding, at
most 1 grey level): the CPU path cuts the window out of the frame (constant fill where it leaves
the frame) and cv2.resize samples that cut-out bilinearly at pixel centres, clamping sample
positions to the cut-out's first and last pixel. Here the same sample positions are computed per
window, clamped to the window, and read from the whole frame with zero padding on (frame - fill),
so pixels outside the frame read as the fill value. torchvision's roi_align(aligned=True) samples
the same grid but does not clamp to the window, so upscaled crops would differ at their borders.

The op runs wherever its tensors are, so the CPU tests prove the GPU path's geometry.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.geometry import FILL_VALUE


class GpuCropper:
    """Crops windows of a frame into a uint8 (N, S, S, 3) tensor on `device`, the refiner's raw input."""

    def __init__(self, input_size: int, device: str | torch.device = "cuda") -> None:
        self.input_size = input_size
        self.device = torch.device(device)
        self._pixel_centres = (torch.arange(input_size, dtype=torch.float32, device=self.device) + 0.5) / input_size

    def crop(self, frame: np.ndarray | torch.Tensor, windows: np.ndarray) -> torch.Tensor:
        """frame: H x W x 3 uint8 BGR, a Frame's image (checked when made) or it on the device; windows: (N, 4) x1, y1, x2, y2."""
        size = self.input_size
        count = len(windows)
        if count == 0:
            return torch.zeros((0, size, size, 3), dtype=torch.uint8, device=self.device)
        image = torch.as_tensor(frame).to(self.device, non_blocking=True)
        height, width = image.shape[:2]
        planes = image.permute(2, 0, 1).unsqueeze(0).float() - FILL_VALUE  # (1, 3, H, W)
        boxes = torch.as_tensor(np.asarray(windows), dtype=torch.float32, device=self.device)
        xs = self._sample_positions(boxes[:, 0], boxes[:, 2])  # (N, S) pixel-index coordinates
        ys = self._sample_positions(boxes[:, 1], boxes[:, 3])
        # grid_sample (align_corners=False) reads pixel index p at normalised (2p + 1) / side - 1.
        grid_x = ((2 * xs + 1) / width - 1)[:, None, :].expand(count, size, size)
        grid_y = ((2 * ys + 1) / height - 1)[:, :, None].expand(count, size, size)
        grid = torch.stack([grid_x, grid_y], dim=-1).reshape(1, count * size, size, 2)
        sampled = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        crops = sampled.reshape(3, count, size, size).permute(1, 2, 3, 0) + FILL_VALUE
        return crops.round_().clamp_(0, 255).to(torch.uint8)

    def _sample_positions(self, start: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
        """cv2.resize's bilinear source positions for each window, clamped inside the window."""
        extent = (stop - start)[:, None]
        local = (self._pixel_centres[None, :] * extent - 0.5).clamp(min=0.0)
        return start[:, None] + torch.minimum(local, extent - 1)

    def close(self) -> None:
        """Nothing to release; here so both croppers share one interface."""
