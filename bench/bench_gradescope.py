"""What a Gradescope autograder of each lab needs, measured on the image as Gradescope builds it:
the bundle's own setup.sh in a fresh Debian root, then run_autograder on the lab's reference
solution as root without CAP_SYS_ADMIN ("uid" level), in a fresh container each time, with 1 CPU
and with half a CPU (a CFS quota, as Gradescope's CPU setting is). tests/gradescope_image.py
builds and runs the image, exactly as tests/test_deploy.py does.

Peak memory is the largest sum, sampled every 50 ms, of the proportional set size (PSS: shared
pages split between their users) of every process of the run: the grader, its pytest process, the
warm server and the workers; what the container's memory setting must hold. The largest worker is
the most resident memory (RSS, the pages it shares with the server included) the processes of one
worker held at once: what the grader compares with run_autograder's --memory-gib where it cannot
make a cgroup (as on Gradescope). One image serves every lab: per-lab bundles of a course differ
only in run_autograder, which each run puts in place. Needs root, debootstrap and capsh.

    python bench/bench_gradescope.py [--lab NAME ...] [--cpus 1 0.5]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from autograder.bundle import bundle  # noqa: E402
from autograder.confine import UID_BASE  # noqa: E402
from autograder.course import find_course  # noqa: E402
from gradescope_image import build, cpu_quota, results  # noqa: E402

CACHE = Path.home() / ".cache" / "autograder-tests"


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return 0


def processes() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent, uid, resident bytes) of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss = int(fields["VmRSS"].split()[0]) * 1024 if "VmRSS" in fields else 0
            found[int(entry)] = (int(fields["PPid"]), int(fields["Uid"].split()[0]), rss)
    return found


def tree(root: int, table: dict[int, tuple[int, int, int]]) -> list[int]:
    """`root` and its descendants: the run's PID namespace holds every process of the run, and
    what leaves its parent is adopted inside it."""
    found, todo = set(), [root] if root in table else []
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += [child for child, (p, _, _) in table.items() if p == pid and child not in found]
    return sorted(found)


def measure(image, submission: dict[str, bytes], run_autograder: str, cpus: float) -> tuple[float, int, int, dict]:
    """(seconds, peak PSS of the run, peak RSS of its largest worker, results.json)."""
    with cpu_quota(cpus) as procs:
        started = time.perf_counter()
        proc, upper = image.start(submission, run_autograder=run_autograder, cgroup_procs=procs,
                                  env={"AUTOGRADER_SANDBOX": "uid"}, output=subprocess.DEVNULL)
        peak, worker, stop = [0], [0], threading.Event()

        def sample():
            while not stop.wait(0.05):
                table = processes()
                pids = tree(proc.pid, table)
                peak[0] = max(peak[0], sum(pss(pid) for pid in pids))
                # What the grader compares with --memory-gib where it has no cgroup (Gradescope):
                # the resident memory of a worker's processes, the pages it shares with the server too.
                by_uid = {}
                for pid in pids:
                    if table[pid][1] >= UID_BASE:
                        by_uid[table[pid][1]] = by_uid.get(table[pid][1], 0) + table[pid][2]
                worker[0] = max([worker[0], *by_uid.values()])
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
    found = results(upper)
    image.discard(upper)
    return seconds, peak[0], worker[0], found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", action="append", help="default: every lab")
    parser.add_argument("--cpus", type=float, nargs="+", default=[1, 0.5])
    args = parser.parse_args()
    course = find_course()
    labs = args.lab or [lab.name for lab in course.labs]
    with tempfile.TemporaryDirectory(prefix="bench-gradescope-") as tmp:
        zips = {name: bundle(course, Path(tmp) / f"{name}.zip", name) for name in labs}
        image = build(Path(tmp) / "image", zips[labs[0]], CACHE)
        venv = image.venv_bytes() / 2**20
        print(f"image built by setup.sh in {image.build_seconds:.0f} s; its venv: {venv:.0f} MiB (du)\n")
        print("| lab | points | CPUs | seconds | peak memory (MiB, PSS) | largest worker (MiB, RSS) |")
        print("|---|---|---|---|---|---|")
        for name in labs:
            lab = course.lab(name)
            with zipfile.ZipFile(zips[name]) as z:
                run_autograder = z.read("run_autograder").decode()
            submission = {f"{name}/{lab.exercise.name}": lab.exercise.read_bytes()}
            points = sum(lab.test_cells().values())
            for cpus in args.cpus:
                seconds, peak, worker, found = measure(image, submission, run_autograder, cpus)
                assert found is not None and found["score"] == points, f"{name}: {found}"
                print(f"| {name} | {points:g} | {cpus:g} | {seconds:.1f} | {peak / 2**20:.0f} | {worker / 2**20:.0f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
