"""`python -m streams [--app-id ID] [--loglevel LEVEL] [--session-timeout S] [--instance-id ID]`: `keye streams`."""

import argparse
import logging
import os

from service.settings import Settings
from streams.app import SESSION_TIMEOUT_S, run_streams

parser = argparse.ArgumentParser(prog="python -m streams")
parser.add_argument("--app-id", default="keye-streams")
parser.add_argument("--loglevel", default="info")
parser.add_argument("--session-timeout", type=float, default=SESSION_TIMEOUT_S, help="consumer group session, seconds")
parser.add_argument(
    "--instance-id",
    default=os.environ.get("KEYE_STREAMS_INSTANCE_ID"),
    help="static group member id, one per streams process (default KEYE_STREAMS_INSTANCE_ID)",
)
args = parser.parse_args()
logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
run_streams(
    Settings(),
    app_id=args.app_id,
    loglevel=args.loglevel,
    session_timeout_s=args.session_timeout,
    instance_id=args.instance_id,
)
