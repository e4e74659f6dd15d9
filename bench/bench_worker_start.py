"""How long a sandboxed worker takes to be ready: fork from the warm server, confine (at the level
this machine gives), and load a lab's cells, measured by the grader from asking to `Loaded`.

    python bench/bench_worker_start.py [--n 30] [--sandbox auto|namespaces|uid]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autograder.course import find_course
from autograder.extract import extract
from autograder.grade import protected_paths
from autograder.messages import Confined, Load, Loaded, SetupDone
from autograder.sandbox import Limits, choose_level
from autograder.server import Server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--sandbox", default="auto")
    args = parser.parse_args()
    course = find_course()
    lab = course.labs[1]
    code = extract(course, (lab.exercise,))[lab.name]
    with tempfile.TemporaryDirectory() as out:
        protected = protected_paths(course, [], Path(out))
        level = choose_level(args.sandbox, protected)
        server = Server(course, level, Limits(), "cpu", protected)
        try:
            server.worker().close()  # the server's own start (torch, imports) is not a worker's
            spawn, ready = [], []
            for _ in range(args.n):
                started = time.perf_counter()
                worker = server.worker()
                forked = time.perf_counter()
                worker.exchange(None, Confined, "starting", 60, 60)
                worker.exchange(Load(code.setup, code.units), SetupDone, "setting up", 60, 60)
                worker.exchange(None, Loaded, "loading", 60, 60)
                done = time.perf_counter()
                worker.close()
                spawn.append(forked - started)
                ready.append(done - started)
        finally:
            server.close()
    print(f"sandbox: {level.describe()}")
    print(f"{args.n} workers for {lab.name}: forked in {1000 * statistics.median(spawn):.1f} ms (median), "
          f"ready with the cells loaded in {1000 * statistics.median(ready):.1f} ms (median; "
          f"90th percentile {1000 * sorted(ready)[int(0.9 * len(ready))]:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
