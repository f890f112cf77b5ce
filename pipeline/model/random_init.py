"""Random-init refiners and inputs under which parity checks and speed benchmarks still mean something.

Used by the engine build (paper backbones without a checkpoint), the latency benchmark and the
backend tests: one definition, so every parity check draws the same kind of weights and crops.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pipeline.core.spec import RefinerSpec
from pipeline.model.net import RefinerNet


def random_inputs(spec: RefinerSpec, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random crops and plausible mixture vectors: one-hot class, centre near 0.5, size below 1."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (batch, spec.input_size, spec.input_size, 3), dtype=np.uint8)
    vectors = np.zeros((batch, spec.vector_size), dtype=np.float32)
    vectors[np.arange(batch), rng.integers(0, spec.num_classes, batch)] = 1.0
    vectors[:, spec.num_classes :] = rng.uniform(0.3, 0.7, (batch, spec.vector_size - spec.num_classes))
    return crops, vectors


def random_refiner(spec: RefinerSpec, seed: int = 0) -> RefinerNet:
    """Random-init weights under which a parity check still means something.

    Fresh EfficientNet statistics shrink the pooled features to ~1e-5 and the heads start almost
    constant (at the input box, on purpose), so every backend would agree trivially. One train-mode
    pass sets BatchNorm statistics from data; the heads are then redrawn from eval-mode features so
    that logits are ~1: outputs move with the input without saturating the sigmoid.
    """
    torch.manual_seed(seed)
    model = RefinerNet(spec).train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    with torch.no_grad():
        crops, vectors = (torch.from_numpy(array) for array in random_inputs(spec, 2, seed))
        model(crops, vectors)
        model.eval()
        # Measured on other images: features of unseen crops are what the heads will see.
        crops, vectors = (torch.from_numpy(array) for array in random_inputs(spec, 2, seed + 1))
        features = model.embed(crops, vectors)
        scale = 1.0 / (features.square().mean().sqrt().item() * math.sqrt(features.shape[1]))
        for head in (model.box_head, model.quality_head):
            if head is not None:
                nn.init.normal_(head.weight, std=scale)
    return model
