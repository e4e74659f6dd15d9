"""Throughput, side by side in one run: `nbgrader autograde` against `autograder grade -j CORES`.

Both grade the same N reference submissions (the source notebooks, solutions filled in). nbgrader
runs every notebook top to bottom in a kernel (its test cells, training included); we run the
thorough checks in sandboxed workers. Prints seconds per submission for both, the ratio, and our
time split into the checks' own training, the other checks, and everything else (start-up,
extraction, forks, reports).

    python bench/bench_nbgrader.py --students 8 [--jobs 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.course import find_course

def run(command: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def bench_nbgrader(course, students: list[str], root: Path, env: dict) -> float:
    nbgrader = [sys.executable, "-m", "nbgrader"]
    config = [f"--CourseDirectory.root={root}", "--ExecutePreprocessor.timeout=1200"]
    for lab in course.labs:
        shutil.copytree(lab.folder, root / "source" / lab.name)
        run([*nbgrader, "generate_assignment", lab.name, "--force", *config], root, env)
    for student in students:
        run([*nbgrader, "db", "student", "add", student, *config], root, env)
        for lab in course.labs:
            target = root / "submitted" / student / lab.name
            target.mkdir(parents=True)
            shutil.copyfile(lab.exercise, target / lab.exercise.name)
    return sum(run([*nbgrader, "autograde", lab.name, "--force", *config], root, env) for lab in course.labs)


def bench_ours(course, students: list[str], root: Path, jobs: int, env: dict) -> tuple[float, dict]:
    for student in students:
        (root / "class" / student).mkdir(parents=True)
        for lab in course.labs:
            shutil.copyfile(lab.exercise, root / "class" / student / lab.exercise.name)
    wall = run([sys.executable, "-m", "autograder", "--course", str(course.root), "grade", str(root / "class"),
                "--out", str(root / "out"), "-j", str(jobs), "--quiet"], root, env)
    db = sqlite3.connect(root / "out" / "gradebook.sqlite")
    checks = db.execute("SELECT unit, check_name, seconds FROM checks WHERE student != '(reference)'").fetchall()
    totals = db.execute("SELECT min(score) FROM (SELECT sum(points * passed) AS score FROM checks "
                        "WHERE student != '(reference)' GROUP BY student)").fetchone()
    training = sum(s for _, name, s in checks if "recipe" in name or "your_one_layer_net" in name)
    other = sum(s for _, _, s in checks) - training
    return wall, {"training": training, "other_checks": other, "lowest_score": totals[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    course = find_course()
    students = [f"s{i:03d}" for i in range(args.students)]
    env = {**os.environ, "PYTHONPATH": str(course.source),  # the notebooks' `import utils` under nbgrader too
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs alembic
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        ours, split = bench_ours(course, students, tmp / "ours", args.jobs, env)
        theirs = bench_nbgrader(course, students, tmp / "nbgrader", env)
    n, busy = args.students, ours * args.jobs
    print(f"{n} reference submissions, {os.cpu_count()} cores")
    print(f"nbgrader autograde          : {theirs / n:7.2f} s per submission ({theirs:.1f} s)")
    print(f"autograder grade -j {args.jobs:<8d}: {ours / n:7.2f} s per submission ({ours:.1f} s, lowest score "
          f"{split['lowest_score']:g}/100)")
    print(f"throughput ratio            : {theirs / ours:7.2f}x")
    print(f"our worker-seconds ({busy:.1f} = wall x jobs): accuracy training {split['training']:.1f} "
          f"({split['training'] / busy:.0%}), other checks {split['other_checks']:.1f} "
          f"({split['other_checks'] / busy:.0%}), everything else "
          f"{busy - split['training'] - split['other_checks']:.1f} "
          f"({1 - (split['training'] + split['other_checks']) / busy:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
