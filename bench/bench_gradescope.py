"""What a Gradescope autograder of each lab needs: seconds and peak memory for the reference
solution, on 1 and on 2 CPUs, in a simulated /autograder layout, as root without CAP_SYS_ADMIN
(the "uid" sandbox level, as on Gradescope).

Peak memory is the largest sum, sampled every 50 ms, of the proportional set size (PSS: shared
pages split between their users) of every process of the run: the grader, its pytest process,
the warm server and the workers. Needs root (capsh, taskset) and the course artifacts built
(`autograder release`).

    python bench/bench_gradescope.py [--lab NAME ...] [--cpus 1 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from autograder.bundle import bundle
from autograder.course import find_course


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return 0


def tree(root: int) -> list[int]:
    """`root` and its descendants, and every worker process (uid >= 200000 at the "uid" level)."""
    parent, workers = {}, []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            parent[int(entry)] = int(fields["PPid"])
            if int(fields["Uid"].split()[0]) >= 200_000:
                workers.append(int(entry))
    found, todo = set(workers), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += [child for child, p in parent.items() if p == pid and child not in found]
    return sorted(found)


def run_once(root: Path, cpus: int, env: dict) -> tuple[float, int]:
    cores = ",".join(str(i) for i in range(cpus))
    started = time.perf_counter()
    proc = subprocess.Popen(["taskset", "-c", cores, "capsh", "--drop=cap_sys_admin", "--",
                             str(root / "source" / "run_autograder")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], sum(pss(pid) for pid in tree(proc.pid)))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    stop.set()
    sampler.join()
    return time.perf_counter() - started, peak[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", action="append", help="default: every lab")
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    course = find_course()
    labs = args.lab or [lab.name for lab in course.labs]
    print("| lab | points | CPUs | seconds | peak memory (MiB, PSS) |")
    print("|---|---|---|---|---|")
    for name in labs:
        lab = course.lab(name)
        with tempfile.TemporaryDirectory(prefix="bench-gradescope-") as tmp:
            root = Path(tmp) / "autograder"
            with zipfile.ZipFile(bundle(course, Path(tmp) / "autograder.zip", name)) as z:
                z.extractall(root / "source")
            (root / "submission" / name).mkdir(parents=True)
            (root / "submission" / name / lab.exercise.name).write_bytes(lab.exercise.read_bytes())
            env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable,
                   "AUTOGRADER_SANDBOX": "uid"}
            for cpus in args.cpus:
                seconds, peak = run_once(root, cpus, env)
                score = (root / "results" / "results.json").read_text()
                points = sum(lab.test_cells().values())
                assert f'"score": {points:g}' in score, score[:300]
                print(f"| {name} | {points:g} | {cpus} | {seconds:.1f} | {peak / 2**20:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
