"""Throughput, side by side in one run: this grader, an earlier version of it, and nbgrader.

All grade the same N reference submissions (the source notebooks, solutions filled in):
`autograder grade -j JOBS` from this checkout; with --baseline COMMIT, the same command from a
git worktree of that commit (its own code, its own defaults); and, unless --no-nbgrader,
`nbgrader autograde`, which runs every notebook top to bottom in a kernel. Prints seconds per
submission for each, the ratios, and our time split into the recipe training, the other checks
and everything else (start-up, extraction, forks, reports).

    python bench/bench_nbgrader.py --students 8 [--jobs 2] [--baseline c9cafb9] [--no-nbgrader]
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
        sys.exit(f"{' '.join(command[:6])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def make_class(course, students: list[str], folder: Path) -> Path:
    for student in students:
        (folder / student).mkdir(parents=True)
        for lab in course.labs:
            shutil.copyfile(lab.exercise, folder / student / lab.exercise.name)
    return folder


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


def bench_grader(checkout: Path, class_dir: Path, out: Path, jobs: int, env: dict) -> float:
    """Wall seconds of `autograder grade` as `checkout` has it (its package first on the path),
    after one untimed run on one student that fills whatever caches that version keeps."""
    env = {**env, "PYTHONPATH": str(checkout)}
    command = [sys.executable, "-m", "autograder", "--course", str(checkout), "grade"]
    first = sorted(class_dir.iterdir())[0]
    run([*command, str(first), "--out", str(out.parent / "warm-up"), "--quiet"], out.parent, env)
    return run([*command, str(class_dir), "--out", str(out), "-j", str(jobs), "--quiet"], out.parent, env)


def split(out: Path) -> dict:
    db = sqlite3.connect(out / "gradebook.sqlite")
    checks = db.execute("SELECT check_name, seconds, points * passed FROM checks").fetchall()
    training = sum(s for name, s, _ in checks if "recipe" in name)  # the lab's recipe, trained once per trainer
    scores = db.execute("SELECT sum(points * passed) FROM checks GROUP BY student").fetchall()
    return {"training": training, "other_checks": sum(s for _, s, _ in checks) - training,
            "lowest_score": min(s for (s,) in scores)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--baseline", metavar="COMMIT", help="also time this commit's grader, in a git worktree")
    parser.add_argument("--no-nbgrader", action="store_true")
    args = parser.parse_args()
    course = find_course()
    students = [f"s{i:03d}" for i in range(args.students)]
    env = {**os.environ, "PYTHONPATH": str(course.source),  # the notebooks' `import utils` under nbgrader too
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # nbgrader runs alembic
    times = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        class_dir = make_class(course, students, tmp / "class")
        if args.baseline:
            worktree = tmp / "baseline"
            subprocess.run(["git", "-C", str(course.root), "worktree", "add", "--detach", str(worktree), args.baseline],
                           check=True, capture_output=True)
            try:
                (tmp / "b").mkdir()
                times[f"autograder at {args.baseline}"] = bench_grader(worktree, class_dir, tmp / "b" / "out", args.jobs, env)
            finally:
                subprocess.run(["git", "-C", str(course.root), "worktree", "remove", "--force", str(worktree)],
                               check=True, capture_output=True)
        (tmp / "o").mkdir()
        times["autograder (this checkout)"] = ours = bench_grader(course.root, class_dir, tmp / "o" / "out", args.jobs, env)
        parts = split(tmp / "o" / "out")
        if not args.no_nbgrader:
            times["nbgrader autograde"] = bench_nbgrader(course, students, tmp / "nbgrader", env)
    n, busy = args.students, ours * args.jobs
    print(f"{n} reference submissions, {os.cpu_count()} cores, -j {args.jobs}")
    for name, seconds in times.items():
        print(f"{name:34}: {seconds / n:7.2f} s per submission ({seconds:.1f} s); "
              f"ours is {seconds / ours:.2f}x its speed")
    print(f"lowest score (this checkout): {parts['lowest_score']:g}/100")
    print(f"our worker-seconds ({busy:.1f} = wall x jobs): recipe training {parts['training']:.1f} "
          f"({parts['training'] / busy:.0%}), other checks {parts['other_checks']:.1f} "
          f"({parts['other_checks'] / busy:.0%}), everything else "
          f"{busy - parts['training'] - parts['other_checks']:.1f} "
          f"({1 - (parts['training'] + parts['other_checks']) / busy:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
