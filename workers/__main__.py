"""`python -m workers [--group ID] [--batch-size N] [--analyzer module:Class]`: the same as `keye worker`.

`--analyzer` loads another Analyzer implementation (the pipeline tests use it for a deterministic
stand-in); by default the Keye model of KEYE_MODEL runs on KEYE_DEVICE.
"""

import argparse
import importlib
import logging

from keye.settings import Settings
from workers.consumer import WorkerConfig, run_worker

parser = argparse.ArgumentParser(prog="python -m workers")
parser.add_argument("--group", default="keye-workers")
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--max-attempts", type=int, default=3)
parser.add_argument("--session-timeout-ms", type=int, default=30000)
parser.add_argument("--metrics-port", type=int, default=None)
parser.add_argument("--analyzer", default=None, help="module:Class of an Analyzer (default: the Keye model)")
parser.add_argument("--loglevel", default="info")
args = parser.parse_args()
logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
analyzer = None
if args.analyzer:
    module, _, cls = args.analyzer.partition(":")
    analyzer = getattr(importlib.import_module(module), cls)()
run_worker(Settings(), analyzer, WorkerConfig(group_id=args.group, batch_size=args.batch_size,
                                              max_attempts=args.max_attempts, metrics_port=args.metrics_port,
                                              session_timeout_ms=args.session_timeout_ms))
