"""OpenVINO on the CPU: the refiner's ONNX in BF16 where the CPU computes it natively, FP32 otherwise.

Why: on CPUs with AVX512_BF16 or AMX, BF16 halves the refiner's time at ~1e-3 of FP32's outputs.
The precision comes from the runtime (`OPTIMIZATION_CAPABILITIES`), never from /proc; "fp32"
forces full precision. Compiled models are cached under engines/cache/openvino/, so a restart
skips the compile (the cache is keyed by the ONNX content and the settings). Threads follow the
CPU runtimes' one policy (pipeline.backends.base.default_cpu_threads): half the cores. Batch sizes
a run keeps asking for get a static-shape copy, 15-40% faster (pipeline.backends.openvino_shapes).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pipeline.backends.openvino_shapes import MAX_SIZES, StaticShapes
from pipeline.backends.base import CPU_PRECISIONS, FP32_TOLERANCE, HALF_TOLERANCE, BackendOptions, BackendUnavailable, RefinerBackend, default_cpu_threads
from pipeline.core.errors import BackendError
from pipeline.model.artifacts import BOXES, CROPS, VECTORS, ModelFile
from pipeline.model import defaults

try:
    import openvino
except ImportError:  # `auto` falls back to ONNX Runtime
    openvino = None

PRECISIONS = CPU_PRECISIONS
# |difference| from FP32 torch on real crops (128 COCO person crops, the committed person refiner): FP32 max
# 1.2e-6; BF16 max 1.1e-2 on the box outputs and 4.7e-2 on the predicted IoUs, mean 6e-4 and 3.7e-3.
# Both precisions must stay within these (tests/benchmarks/test_real_crops.py).
REAL_CROPS_MAX_TOLERANCE = 6e-2
REAL_CROPS_MEAN_TOLERANCE = 5e-3
# Random-init weights (parity checks without a checkpoint) are less regular: BF16 reached 3.1e-2 on a B0
# at 128 px, so BF16 gets the reduced-precision bound, which still catches a broken graph.
BF16_TOLERANCE = HALF_TOLERANCE


def compiled_cache_dir() -> Path:
    """Where compiled models are kept between runs: engines/cache/openvino/ in a checkout (installed: under the user's cache)."""
    return defaults.writable_root() / "engines" / "cache" / "openvino"


# OpenVINO sets and restores the process's C locale (setlocale, process-wide) while it reads and compiles
# models: two threads doing so at once can leave the locale at "C" for good, and Python then decodes
# subprocess output as ASCII (seen in the test suite). Every read, compile and property query here holds it.
OPENVINO_LOCK = threading.Lock()
_CORE = None


def shared_core() -> openvino.Core:
    """The process's one OpenVINO Core, created once and never released.

    Why: each Core's CPU plugin swaps the signal stack of the thread that creates it for a larger one
    (AMX state must fit) and unmaps it when the plugin goes, restoring the previous one only if it is
    still current. With a Core per backend, Cores released out of order or on another thread left a
    thread's signal stack unmapped, and the next signal to it (the CLI's SIGTERM) killed the process
    with SIGSEGV. One Core that lives as long as the process never unmaps anything.
    """
    global _CORE
    with OPENVINO_LOCK:
        if _CORE is None:
            _CORE = openvino.Core()
        return _CORE


def supported_precisions() -> tuple[str, ...]:
    """What this CPU computes natively, as the runtime reports it: ("bf16", "fp32") or ("fp32",)."""
    if openvino is None:
        return ()
    core = shared_core()
    with OPENVINO_LOCK:
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ("bf16", "fp32") if "BF16" in capabilities else ("fp32",)


class OpenVinoBackend(RefinerBackend):
    """The ONNX graph compiled by OpenVINO for the CPU; one infer request per calling thread."""

    name = "openvino"

    def __init__(
        self,
        onnx: ModelFile,
        device: str = "cpu",
        max_batch: int = 32,
        threads: int | None = None,
        precision: str | None = None,
        cache_dir: Path | None = None,
        static_sizes: int = MAX_SIZES,
    ) -> None:
        """`precision` None: BF16 where the CPU supports it, else FP32; `cache_dir` None: no compiled-model cache;
        `static_sizes`: batch sizes that may get a static-shape copy (pipeline.backends.openvino_shapes; 0: none)."""
        if openvino is None:
            raise BackendUnavailable("openvino is not installed; pip install openvino")
        if device != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU, not {device}; use --backend tensorrt or onnxruntime")
        if precision not in (None, *PRECISIONS):
            raise BackendError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        super().__init__(onnx.spec, max_batch)
        self.precision = precision or supported_precisions()[0]
        if self.precision not in supported_precisions():
            raise BackendError(f"this CPU has no native {self.precision}; use precision fp32")
        self.threads = threads or default_cpu_threads()
        self.parity_tolerance = BF16_TOLERANCE if self.precision == "bf16" else FP32_TOLERANCE
        config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",  # one stream: a refiner batch is one request
        }
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        self._core, self._config, self._path = shared_core(), config, onnx.path
        try:
            with OPENVINO_LOCK:
                self.compiled = self._core.compile_model(str(onnx.path), "CPU", config)
        except RuntimeError as error:
            reason = (str(error).strip().splitlines() or ["no reason given"])[0]
            raise BackendError(f"OpenVINO could not compile {onnx.path.name} ({reason}); use --backend onnxruntime") from None
        self._requests = threading.local()
        self.static_shapes = StaticShapes(self._compile_static, max_sizes=static_sizes)

    @classmethod
    def open(cls, artifact: ModelFile, device: str, max_batch: int, options: BackendOptions) -> OpenVinoBackend:
        return cls(artifact, device, max_batch, options.threads, options.precision, compiled_cache_dir())

    def _compile_static(self, size: int) -> object:
        """The model compiled for exactly `size` crops (on StaticShapes' background thread)."""
        side = self.spec.input_size
        with OPENVINO_LOCK:
            model = self._core.read_model(str(self._path))
            model.reshape({CROPS: [size, side, side, 3], VECTORS: [size, self.spec.vector_size]})
            return self._core.compile_model(model, "CPU", self._config)

    def _run(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        compiled = self.static_shapes.compiled(len(crops)) or self.compiled
        requests = getattr(self._requests, "by_model", None)
        if requests is None:
            requests = self._requests.by_model = {}  # per calling thread: id(compiled model) -> (request, boxes port)
        request, boxes = requests.get(id(compiled)) or (None, None)
        if request is None:
            request, boxes = requests[id(compiled)] = compiled.create_infer_request(), compiled.output(BOXES)
        outputs = request.infer({CROPS: crops, VECTORS: vectors}, share_inputs=True)
        return np.array(outputs[boxes], dtype=np.float32)  # a copy: the request reuses its output buffer

    def settle(self) -> None:
        self.static_shapes.wait()

    def close(self) -> None:
        self.static_shapes.close()
