"""Serve one model of a build_engine.py --triton-repo repository with PyTriton, on the CPU, with ONNX Runtime.

    python tools/pytriton_refiner_server.py --model-dir DIR/<name> --grpc-port 8001 --http-port 8000 --metrics-port 8002

Why: nvidia-pytriton bundles a real tritonserver (2.51) with only the Python backend, so a machine
without Docker or a GPU can still run the pipeline's Triton client against a real server. The
model's name, tensors, max batch size, dynamic batching, queue policy and parameters (the refiner
spec) are read from the generated config.pbtxt; the model itself (1/model.onnx) runs in ONNX
Runtime inside the Python backend instead of Triton's onnxruntime backend.

Runs in its own virtualenv (pytriton pins numpy<2): nvidia-pytriton==0.7.0, onnxruntime, numpy<2.
It imports nothing from this project. Prints "serving ..." once the model is ready; stops on SIGINT or SIGTERM.
The bundled tritonserver links libpython: put the interpreter's lib folder on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path

import numpy as np
import onnxruntime
from google.protobuf import text_format
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor, TimeoutAction
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig
from tritonclient.grpc import model_config_pb2

REJECT = model_config_pb2.ModelQueuePolicy.REJECT
NUMPY_TYPES = {model_config_pb2.TYPE_UINT8: np.uint8, model_config_pb2.TYPE_FP32: np.float32}


def read_config(model_dir: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def tensors(entries) -> list[Tensor]:
    return [Tensor(name=entry.name, dtype=NUMPY_TYPES[entry.data_type], shape=tuple(entry.dims)) for entry in entries]


def batcher(config: model_config_pb2.ModelConfig) -> DynamicBatcher:
    """The config's dynamic batching and rejecting queue policy, in PyTriton's terms."""
    dynamic, policy = config.dynamic_batching, config.dynamic_batching.default_queue_policy
    return DynamicBatcher(
        max_queue_delay_microseconds=dynamic.max_queue_delay_microseconds,
        preferred_batch_size=list(dynamic.preferred_batch_size),
        default_queue_policy=QueuePolicy(
            timeout_action=TimeoutAction.REJECT if policy.timeout_action == REJECT else TimeoutAction.DELAY,
            default_timeout_microseconds=policy.default_timeout_microseconds,
            allow_timeout_override=policy.allow_timeout_override,
            max_queue_size=policy.max_queue_size,
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="one model folder of the repository (config.pbtxt, 1/model.onnx)"
    )
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl+C: Triton's __exit__ cleans up

    config = read_config(options.model_dir)
    session_options = onnxruntime.SessionOptions()
    session_options.intra_op_num_threads = options.threads
    session = onnxruntime.InferenceSession(
        str(options.model_dir / "1" / "model.onnx"), session_options, providers=["CPUExecutionProvider"]
    )
    input_names = [entry.name for entry in config.input]
    output_names = [entry.name for entry in config.output]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        results = session.run(output_names, {name: inputs[name] for name in input_names})
        return dict(zip(output_names, results))

    triton_config = TritonConfig(
        http_address=options.address, http_port=options.http_port,
        grpc_address=options.address, grpc_port=options.grpc_port,
        metrics_address=options.address, metrics_port=options.metrics_port,
    )  # fmt: skip
    # PyTriton guards the statistics endpoint with a token by default; the pipeline reads queue and
    # compute time from it, as from a plain tritonserver. The other guarded endpoints stay guarded.
    security = TritonSecurityConfig(restricted_endpoints=[name for name in DEFAULT_PROTECTED_ENDPOINTS if name != "statistics"])
    # Not `with Triton(...)`: entering starts the server, and bind() would then load the model before
    # add_parameters() could add the spec.
    triton = Triton(config=triton_config, security_config=security)
    try:
        triton.bind(
            model_name=config.name,
            infer_func=infer,
            inputs=tensors(config.input),
            outputs=tensors(config.output),
            config=ModelConfig(max_batch_size=config.max_batch_size, batcher=batcher(config)),
        )
        add_parameters(triton, config)
        triton.run()  # starts tritonserver and loads the model; returns once it is ready
        print(f"serving {config.name} on {options.address}:{options.grpc_port} (gRPC)", flush=True)
        while triton.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        triton.stop()  # stops tritonserver and removes its workspace


def add_parameters(triton: Triton, config: model_config_pb2.ModelConfig) -> None:
    """The config's parameters (the refiner spec) into the served config; PyTriton's ModelConfig has no field for them.

    Called between bind() and run(): the model is sent to the server, with this config, when it starts.
    """
    for model in triton._model_manager.models:  # noqa: SLF001  # the one way in: the generated TritonModelConfig
        triton_model_config = model._get_triton_model_config()  # noqa: SLF001  # cached: later reads see the update
        for key, value in config.parameters.items():
            triton_model_config.backend_parameters[key] = value.string_value


if __name__ == "__main__":
    main()
