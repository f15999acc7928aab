"""`python -m workers [--group ID] [--batch-size N] [--analyzer module:Class]`: the same as `keye worker`.

By default the Keye model of KEYE_MODEL runs on KEYE_DEVICE; `--analyzer` builds another Analyzer
(the pipeline tests use a test-only subclass with hooks to slow it down).
"""

import argparse
import importlib
import os

from analysis.serving import load_analyzer
from service.logs import setup_logging
from service.settings import Settings
from workers.consumer import WorkerConfig, instance_id_for, run_worker

parser = argparse.ArgumentParser(prog="python -m workers")
parser.add_argument("--group", default="keye-workers")
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--max-attempts", type=int, default=3)
parser.add_argument("--session-timeout-ms", type=int, default=30000)
parser.add_argument("--metrics-port", type=int, default=None)
parser.add_argument("--analyzer", default=None, help="module:Class of an Analyzer, built as Class(settings, **options)")
parser.add_argument("--basic", action="store_true", help="summary + embedding only (analysis/serving.py KeyeAnalyzer)")
parser.add_argument("--max-frames", type=int, default=None, help="basic analyzer: frames per video")
parser.add_argument("--max-pixels", type=int, default=None, help="basic analyzer: pixels per frame")
parser.add_argument("--max-new-tokens", type=int, default=None, help="basic analyzer: summary length in tokens")
parser.add_argument(
    "--instance-id",
    default=os.environ.get("KEYE_WORKER_INSTANCE_ID"),
    help="static group member id (default KEYE_WORKER_INSTANCE_ID, else <host>-<device> on CUDA)",
)
parser.add_argument("--loglevel", default=None, help="debug, info, warning, error (default KEYE_LOG_LEVEL or info)")
args = parser.parse_args()
setup_logging(args.loglevel)
settings = Settings()
options = {
    k: v
    for k, v in (
        ("max_frames", args.max_frames),
        ("max_pixels", args.max_pixels),
        ("max_new_tokens", args.max_new_tokens),
    )
    if v is not None
}
if args.analyzer:
    module, _, cls = args.analyzer.partition(":")
    analyzer = getattr(importlib.import_module(module), cls)(settings, **options)
else:
    analyzer = load_analyzer(settings, "basic" if args.basic else "full", **options)
run_worker(
    settings,
    analyzer,
    WorkerConfig(
        group_id=args.group,
        batch_size=args.batch_size,
        max_attempts=args.max_attempts,
        metrics_port=args.metrics_port,
        session_timeout_ms=args.session_timeout_ms,
        instance_id=instance_id_for(settings, args.instance_id),
    ),
)
