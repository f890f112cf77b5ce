"""Triton Inference Server client: the refiner's tensors over gRPC to a model build_engine.py --triton-repo wrote.

Why a client backend: one server (and its GPU) can serve many pipelines and batch their calls. The
spec comes from the served model's config parameters (pipeline.model.triton_repo), so the crops are cut
exactly as the served model expects; a server that serves another spec than the caller's refiner
file is refused at open time, not discovered as wrong boxes. Each call is one synchronous
`infer` per chunk of at most max_batch crops (the pipeline makes one call per frame or cycle), with a
deadline (`timeout_s`, --triton-timeout-s): a hung server is an error in seconds, not a frozen run.
A failed call says which of three things happened, because each has another fix: the server is
down (refused), hung (no answer by the deadline) or saturated (its queue policy rejected the request).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.backends.base import BackendOptions, RefinerBackend
from pipeline.core.errors import BackendError, SpecError
from pipeline.core.spec import RefinerSpec
from pipeline.model.artifacts import BOXES, CROPS, VECTORS, ModelFile
from pipeline.model.triton_repo import TRITON_SPEC_KEY

CONNECT_TIMEOUT_S = 5.0  # readiness and config look-ups: an absent server is reported in seconds
# One batch's deadline: a refiner batch takes milliseconds to a few hundred on a busy CPU server, so a call
# still unanswered after this is a hung or hopelessly overloaded server; the run stops instead of waiting.
DEFAULT_INFER_TIMEOUT_S = 5.0
CONNECT_HINT = "start it or pass --triton-url HOST:PORT / --triton-model NAME"
DOWN_HINT = "the server is down or unreachable: start it (or check --triton-url) and run again"
HUNG_HINT = "the server did not answer within the deadline (hung or overloaded): check it, or raise --triton-timeout-s"
# "Request timeout expired": the model's queue policy (pipeline.model.triton_repo.Batching) rejected it.
SATURATED_HINT = "the server is saturated and rejected a request queued past its timeout: add instances or raise --triton-queue-timeout-ms"


class TritonBackend(RefinerBackend):
    name = "triton"
    device = "remote"

    def __init__(
        self, url: str, model_name: str, expected_spec: RefinerSpec | None = None, max_batch: int = 32,
        timeout_s: float = DEFAULT_INFER_TIMEOUT_S,
    ) -> None:
        """`url` HOST:PORT of Triton's gRPC endpoint; `expected_spec` (the caller's refiner file) must equal the served one;
        `timeout_s`: the deadline of one batch."""
        if not timeout_s > 0:
            raise BackendError(f"--triton-timeout-s must be positive, not {timeout_s}")
        self.timeout_s = timeout_s
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError as error:
            raise BackendError("the triton backend needs tritonclient; pip install 'tritonclient[grpc]'") from error
        self._grpc, self._error_type = grpcclient, InferenceServerException
        self.url, self.model_name = url, model_name
        self.client = grpcclient.InferenceServerClient(url)
        try:
            config = self._ask(self._ready_config, f"Triton server at {url} is unreachable or not serving {model_name!r}")
            spec = served_spec(config, url, model_name)
            if expected_spec is not None and spec != expected_spec:
                raise BackendError(
                    f"Triton model {model_name!r} at {url} serves {spec.name}, not {expected_spec.name}; "
                    "pass the --refiner it was built from or another --triton-model"
                )
        except BackendError:
            self.client.close()
            raise
        served_max = config.max_batch_size or max_batch
        super().__init__(spec, min(max_batch, served_max))

    @classmethod
    def open(cls, artifact: ModelFile, device: str, max_batch: int, options: BackendOptions) -> TritonBackend:
        """The served model `options.triton_model` (default: the model file's stem, the name build_engine.py
        --triton-repo gives it) at `options.triton_url`; `device` is the server's business."""
        if not options.triton_url:
            raise BackendError("the triton backend needs the server's gRPC address; pass --triton-url HOST:PORT")
        return cls(options.triton_url, options.triton_model or artifact.path.stem, artifact.spec, max_batch,
                   options.triton_timeout_s or DEFAULT_INFER_TIMEOUT_S)

    def _ready_config(self) -> Any:
        if not self.client.is_model_ready(self.model_name, client_timeout=CONNECT_TIMEOUT_S):
            raise BackendError(f"model {self.model_name!r} is not ready")
        return self.client.get_model_config(self.model_name, client_timeout=CONNECT_TIMEOUT_S).config

    def _ask(self, call: Any, what: str, hint: str | None = CONNECT_HINT) -> Any:
        """Run a client call; a gRPC failure becomes one BackendError line that says what to do (`hint` None: by cause)."""
        try:
            return call()
        except (self._error_type, BackendError) as error:
            reason = (str(error).strip().splitlines() or ["no answer"])[0]
            raise BackendError(f"{what} ({reason}); {hint or infer_hint(error)}") from None

    def _run(self, crops: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        inputs = [
            self._grpc.InferInput(CROPS, list(crops.shape), "UINT8"),
            self._grpc.InferInput(VECTORS, list(vectors.shape), "FP32"),
        ]
        inputs[0].set_data_from_numpy(crops)
        inputs[1].set_data_from_numpy(vectors)
        outputs = [self._grpc.InferRequestedOutput(BOXES)]
        result = self._ask(
            lambda: self.client.infer(self.model_name, inputs, outputs=outputs, client_timeout=self.timeout_s),
            f"Triton model {self.model_name!r} at {self.url} failed a batch of {len(crops)}",
            None,
        )
        return result.as_numpy(BOXES)

    def server_statistics(self) -> dict[str, Any]:
        """Server-side time of this model since the server started: requests, batches, mean queue and compute ms.

        Queue time is what dynamic batching and other clients cost; compute is input + infer + output
        on the server. Counted over every client of the model, not only this one.
        """
        stats = self._ask(
            lambda: self.client.get_inference_statistics(self.model_name, as_json=True, client_timeout=CONNECT_TIMEOUT_S),
            f"Triton server at {self.url} gave no statistics for {self.model_name!r}",
        )
        model = next(iter(stats.get("model_stats", [])), {})
        inference = model.get("inference_stats", {})
        requests = int(inference.get("success", {}).get("count", 0))
        batches = int(model.get("execution_count", 0))

        def mean_ms(*keys: str) -> float | None:
            total_ns = sum(int(inference.get(key, {}).get("ns", 0)) for key in keys)
            return round(total_ns / requests / 1e6, 3) if requests else None

        return {
            "url": self.url,
            "model": self.model_name,
            "requests": requests,
            "batches": batches,
            "mean_batch_size": round(int(model.get("inference_count", 0)) / batches, 2) if batches else None,
            "queue_ms_mean": mean_ms("queue"),
            "compute_ms_mean": mean_ms("compute_input", "compute_infer", "compute_output"),
        }

    def close(self) -> None:
        self.client.close()


def infer_hint(error: Exception) -> str:
    """What to do about a failed infer call, from its gRPC status and message: server down, hung or saturated."""
    status = str(getattr(error, "status", lambda: None)() or "")
    text = str(error).lower()
    if "timeout expired" in text:
        return SATURATED_HINT
    if "DEADLINE_EXCEEDED" in status or "deadline exceeded" in text:
        return HUNG_HINT
    if "UNAVAILABLE" in status or "connection refused" in text or "failed to connect" in text:
        return DOWN_HINT
    return "see the server's log"


def served_spec(config: Any, url: str, model_name: str) -> RefinerSpec:
    """The RefinerSpec in a served model's config parameters (a ModelConfig protobuf)."""
    if TRITON_SPEC_KEY not in config.parameters:
        raise BackendError(
            f"Triton model {model_name!r} at {url} has no {TRITON_SPEC_KEY} parameter; "
            "serve a repository from build_engine.py --triton-repo"
        )
    try:
        return RefinerSpec.from_json(config.parameters[TRITON_SPEC_KEY].string_value)
    except SpecError as error:
        raise BackendError(f"Triton model {model_name!r} at {url}: {error}") from None
