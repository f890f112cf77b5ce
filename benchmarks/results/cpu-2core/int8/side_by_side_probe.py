"""Throwaway probe (not project code), run as-is for side-by-side.md: interleaved rounds in one process, ORT FP32 vs OpenVINO FP32/BF16/INT8, and 160 vs 128 px (random init; speed does not depend on weights). Paths are this session's scratch files."""
import sys, time
import numpy as np, openvino as ov, onnxruntime as ort
sys.path.insert(0, "/work/wt-int8")
from pipeline.model.export import cached_onnx
from pipeline.model.random_init import random_inputs
from pipeline.model.artifacts import ModelFile
m160 = "/work/wt-int8/engines/refiner-person-lite0-160-edges.safetensors"
m128 = "/work/wt-int8/engines/cache/benchmarks/refiner-tf_efficientnet_lite0-128-edges-random.safetensors"
int8 = "/tmp/int8exp/out2/refiner-person-lite0-160-edges.int8.onnx"
core = ov.Core()
def ort_runner(path):
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"]); return lambda c, v: s.run(["boxes"], {"crops": c, "vectors": v})
def ov_runner(path, hint):
    r = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}).create_infer_request()
    return lambda c, v: r.infer({"crops": c, "vectors": v})
inputs = {s: random_inputs(ModelFile.of(p).spec, 32, 0) for s, p in ((160, m160), (128, m128))}
# real crops for 160 px would not change speed; random crops of the right shape
runners = {
    ("ORT fp32", 160): ort_runner(cached_onnx(m160)),
    ("OV fp32", 160): ov_runner(cached_onnx(m160), "f32"),
    ("OV bf16", 160): ov_runner(cached_onnx(m160), "bf16"),
    ("OV int8 (+bf16 heads)", 160): ov_runner(int8, "bf16"),
    ("OV int8 (+fp32 heads)", 160): ov_runner(int8, "f32"),
    ("ORT int8 QDQ", 160): ort_runner(int8),
    ("ORT fp32", 128): ort_runner(cached_onnx(m128)),
    ("OV bf16", 128): ov_runner(cached_onnx(m128), "bf16"),
}
times = {(k, n): [] for k in runners for n in (8, 32)}
for rnd in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
    for k, f in runners.items():
        c, v = inputs[k[1]]
        for n in (8, 32):
            f(c[:n], v[:n]); t = time.perf_counter(); f(c[:n], v[:n]); times[(k, n)].append(time.perf_counter() - t)
base = {n: np.median(times[(("ORT fp32", 160), n)]) for n in (8, 32)}
print("| runtime, precision | input px | 8 crops p50 ms | x ORT FP32 160 | 32 crops p50 ms | x ORT FP32 160 |\n|---|---|---|---|---|---|")
for k in runners:
    m = {n: np.median(times[(k, n)]) for n in (8, 32)}
    print(f"| {k[0]} | {k[1]} | {1000*m[8]:.1f} | {base[8]/m[8]:.2f} | {1000*m[32]:.1f} | {base[32]/m[32]:.2f} |")
