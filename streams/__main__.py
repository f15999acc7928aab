"""`python -m streams [--app-id ID] [--loglevel LEVEL]`: the same as `keye streams`."""

import argparse
import logging

from keye.settings import Settings
from streams.app import run_streams

parser = argparse.ArgumentParser(prog="python -m streams")
parser.add_argument("--app-id", default="keye-streams")
parser.add_argument("--loglevel", default="info")
args = parser.parse_args()
logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
run_streams(Settings(), app_id=args.app_id, loglevel=args.loglevel)
