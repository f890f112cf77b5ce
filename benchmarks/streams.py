"""Many streams, one engine: total and per-stream FPS for 1, 2, 4, 8 ... copies of one clip.

Every run goes through pipeline.app.run with the same warmed-up detector, and is read in the
many-stream layout (RunReport.streams_summary, one stream too), so the figures compare like with
like: N file streams share one detector and one refiner, and each cycle's crops go through one
batched refiner call. The report shows how throughput, the
refiner's batch size and its calls per second change with the number of streams. The detector
still runs once per frame, so on a CPU it sets the total; what grows with N is the refiner's batch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from benchmarks.report import environment, markdown_table, write_report
from pipeline.app.run import RunConfig, run
from pipeline.app.streams import DEFAULT_BATCH_TIMEOUT_MS
from pipeline.backends import KINDS
from pipeline.core.errors import DefaultModelError
from pipeline.core.types import Frame
from pipeline.io.detectors import open_detector
from pipeline.io.sources import FrameSource, open_source
from pipeline.model.defaults import default_detector, default_refiner

DEFAULT_SOURCE = Path("assets/one-by-one-person-detection.mp4")
DEFAULT_START = 70  # the clip's first person walks in at about frame 65: before it there is nothing to refine


class FromFrame(FrameSource):
    """A file source read from frame `start` on (decoded and skipped: OpenCV seeking is not frame-exact)."""

    def __init__(self, path: Path, start: int) -> None:
        self._source = open_source(str(path))
        self._start = start
        self.fps, self.description = self._source.fps, f"{path} from frame {start}"
        count = self._source.frame_count
        self.frame_count = None if count is None else max(count - start, 0)

    def __iter__(self) -> Iterator[Frame]:
        return islice(iter(self._source), self._start, None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help=f"video read by every stream (default: {DEFAULT_SOURCE})"
    )
    parser.add_argument("--streams", default="1,2,4,8", help="stream counts to run, comma-separated (default: 1,2,4,8)")
    parser.add_argument("--max-frames", type=int, default=30, help="frames per stream (default: 30)")
    parser.add_argument(
        "--start", type=int, default=DEFAULT_START, help=f"first frame of every stream (default: {DEFAULT_START})"
    )
    parser.add_argument("--detector", type=Path, default=None, help="default: the app's, models/")
    parser.add_argument("--refiner", type=Path, default=None, help="default: the app's, engines/refiner-person-*.safetensors")
    parser.add_argument("--backend", choices=KINDS, default="auto")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--batch-timeout-ms", type=float, default=DEFAULT_BATCH_TIMEOUT_MS)
    parser.add_argument("--out", type=Path, default=None, help="report JSON (a .md is written beside it)")


def stream_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f"--streams {text!r}: pass positive stream counts separated by commas, e.g. 1,2,4,8")
    return counts


def main(args: argparse.Namespace) -> None:
    env = environment(args.argv)
    counts = stream_counts(args.streams)
    if not args.source.is_file():
        raise SystemExit(f"source {args.source} does not exist; pass --source")
    try:
        refiner = args.refiner or default_refiner()
        detector_path = args.detector or default_detector()
    except DefaultModelError as error:
        raise SystemExit(str(error)) from None
    detector = open_detector(detector_path, device=args.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as scratch:
        for count in counts:
            config = RunConfig(
                source=str(args.source), detector=detector_path, refiner=refiner, backend=args.backend, device=args.device,
                output=Path(scratch) / f"streams-{count}", max_frames=args.max_frames, progress=False,
                batch_timeout_ms=args.batch_timeout_ms,
            )  # fmt: skip
            sources = [FromFrame(args.source, args.start) for _ in range(count)]
            summary = run(config, sources=sources, detector=detector).streams_summary
            if summary["status"] != "completed":
                raise SystemExit(f"the {count}-stream run did not complete: {summary['error']}")
            rows.append(stream_row(count, summary))
    results = {"source": str(args.source), "refiner": str(refiner), "detector": str(detector_path),
               "frames_per_stream": args.max_frames, "start_frame": args.start,
               "batch_timeout_ms": args.batch_timeout_ms, "runs": rows}  # fmt: skip
    write_report(args.out, "Many streams, one engine: throughput by stream count", env, results, streams_markdown(results))


def stream_row(count: int, summary: dict[str, Any]) -> dict[str, Any]:
    """One run's figures: totals, the spread over streams, the refiner's batching and the load at its end."""
    per_stream = [stream["fps"] for stream in summary["streams"] if stream["fps"] is not None]
    latency = [stream["latency_ms"]["p50_ms"] for stream in summary["streams"] if stream["latency_ms"]["p50_ms"] is not None]
    calls = summary["refiner_calls"]
    return {
        "streams": count,
        "frames": summary["frames"]["processed"],
        "cycles": summary["frames"]["cycles"],
        "elapsed_s": summary["elapsed_s"],
        "fps_total": summary["fps"],
        "fps_per_stream_mean": round(sum(per_stream) / len(per_stream), 3) if per_stream else None,
        "fps_per_stream_min": min(per_stream, default=None),
        "latency_p50_ms_mean": round(sum(latency) / len(latency), 1) if latency else None,
        "refiner_calls": calls["calls"],
        "refiner_calls_per_s": calls["calls_per_s"],
        "refiner_mean_batch": calls["mean_batch_size"],
        "streams_per_call": calls["mean_streams_per_call"],
        "detect_ms_per_frame": _per(summary["latency_ms"]["detect"]["p50_ms"], count),
        "refine_ms_per_crop": _per(summary["latency_ms"].get("refine", {}).get("p50_ms"), calls["mean_batch_size"]),
        "stage_p50_ms": {stage: values["p50_ms"] for stage, values in summary["latency_ms"].items()},
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def _per(total_ms: float | None, count: float | None) -> float | None:
    """A cycle's p50 stage time shared out over its frames or crops."""
    return round(total_ms / count, 2) if total_ms is not None and count else None


def streams_markdown(results: dict[str, Any]) -> str:
    runs = results["runs"]
    base = runs[0]["fps_total"] if runs and runs[0]["streams"] == 1 else None
    rows = [
        [
            run["streams"], run["frames"], run["fps_total"],
            None if not base or not run["fps_total"] else round(run["fps_total"] / base, 2),
            run["fps_per_stream_mean"], run["fps_per_stream_min"], run["latency_p50_ms_mean"],
            run["refiner_calls_per_s"], run["refiner_mean_batch"], run["streams_per_call"], run["detect_ms_per_frame"],
            run["refine_ms_per_crop"], run["load_average_1m_at_end"],
        ]
        for run in runs
    ]  # fmt: skip
    stage_names = sorted({stage for run in runs for stage in run["stage_p50_ms"]})
    stage_rows = [[run["streams"], *(run["stage_p50_ms"].get(stage) for stage in stage_names)] for run in runs]
    return (
        f"{results['frames_per_stream']} frames per stream of `{results['source']}` from frame {results['start_frame']}, "
        "every stream a file "
        f"(lossless), batch timeout {results['batch_timeout_ms']:g} ms; detector `{results['detector']}`, "
        f"refiner `{results['refiner']}`.\n\n"
        + markdown_table(
            ["streams", "frames", "total FPS", "x 1 stream", "FPS per stream (mean)", "FPS per stream (min)",
             "latency p50 ms", "refiner calls/s", "crops per call", "streams per call", "detect ms/frame",
             "refine ms/crop", "load 1m at end"],
            rows,
        )  # fmt: skip
        + "\n\nDetect ms/frame and refine ms/crop: the stage's p50 per cycle over the frames or crops it held "
        "(one batched call each). Latency: read by the stream's reader to written; file streams read ahead "
        "into full queues, so it measures queueing, not a camera's delay."
        + "\n\nStage latency p50 per cycle (ms; a cycle holds one frame of every stream):\n\n"
        + markdown_table(["streams", *stage_names], stage_rows)
        + "\n"
    )
