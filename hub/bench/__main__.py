"""``python -m hub.bench ROLE CONFIG ARGS`` runs a bench worker; anything else is ``hub bench``."""

import sys

from hub.bench.workers import WORKERS, worker_main

if len(sys.argv) > 1 and sys.argv[1] in WORKERS:
    sys.exit(worker_main(sys.argv[1:]))

from hub.bench.cli import bench  # noqa: E402 - a worker need not import the command

bench()
