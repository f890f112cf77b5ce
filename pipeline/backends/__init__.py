"""Refinement runtimes behind one interface, one registry of them, and `open_backend`, which picks one for a model file.

The registry (pipeline.backends.registry.REGISTRY) lists each runtime with its capabilities: the
model files it accepts, the devices it computes on, whether `auto` may pick it; runtimes are
imported only when opened, so importing this package needs neither onnxruntime nor tensorrt. The
model file arrives as a `ModelFile` (read once, by pipeline.model.artifacts) and each runtime gets
it, or the artifact derived from it (pipeline.backends.derived), with its spec and a resolved
device. Runtimes: tensorrt (the GPU default), openvino (the fast CPU one: BF16 where the CPU has
it), onnxruntime (portable; `auto` times it against openvino on the CPU and keeps the faster,
pipeline.backends.fastest), torch, and triton (a client: `auto` never picks it, it needs a server's URL).
"""

from __future__ import annotations

from pipeline.backends.base import BackendOptions, BackendUnavailable, RefinerBackend
from pipeline.backends.registry import BACKENDS, KINDS, REGISTRY, Registered, open_backend

__all__ = ["BACKENDS", "KINDS", "REGISTRY", "BackendOptions", "BackendUnavailable", "Registered", "RefinerBackend", "open_backend"]
