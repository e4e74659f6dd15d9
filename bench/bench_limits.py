"""What a slow or hanging submission costs: real seconds of `autograder grade` for one student's
lab 02, as a TA runs it with the default limits, for the reference and for softmaxes that sleep
4 s or 55 s a call, hang in a call, or sleep at import. Each student is graded alone, so the
seconds are that student's; the gradebook's lab seconds (time answering, less waits for a CPU)
and the row's message are printed beside them. These are the README's figures.

    python bench/bench_limits.py [--sandbox auto|namespaces|uid]
"""
from __future__ import annotations

import argparse
import csv
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.course import find_course, nbgrader_meta

LAB = "lab02_softmax"
SLOW = "import time\ndef softmax(x, dim=-1):\n    time.sleep({})\n    e = torch.exp(x - x.amax(dim, keepdim=True))\n" \
       "    return e / e.sum(dim, keepdim=True)\n"
STUDENTS = {
    "reference": None,
    "sleeps_4s_a_call": SLOW.format(4),
    "sleeps_55s_a_call": SLOW.format(55),
    "hangs_in_a_call": "import time\ndef softmax(x, dim=-1):\n    while True:\n        time.sleep(1)\n",
    "hangs_at_import": "import time\ntime.sleep(3600)\n",
}


def write_student(course, folder: Path, softmax: str | None) -> None:
    lab = next(lab for lab in course.labs if lab.name == LAB)
    nb = nbformat.read(lab.exercise, 4)
    if softmax is not None:
        next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "softmax").source = softmax
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / lab.exercise.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sandbox", default="auto")
    args = parser.parse_args()
    course = find_course()
    print(f"{'student':<20} {'real s':>7} {'lab s':>6} {'softmax':>7}  message")
    with tempfile.TemporaryDirectory() as root:
        for student, softmax in STUDENTS.items():
            class_dir, out = Path(root) / student / "class", Path(root) / student / "out"
            write_student(course, class_dir / student, softmax)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root), "grade",
                                   str(class_dir), "--out", str(out), "--lab", LAB, "--sandbox", args.sandbox, "-q"],
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"grading {student} failed:\n{done.stderr[-2000:]}")
            with open(out / "grades.csv", newline="") as f:
                row = next(csv.DictReader(f))
            db = sqlite3.connect(out / "gradebook.sqlite")
            lab_seconds, = db.execute("SELECT seconds FROM labs WHERE student = ? AND lab = ?", (student, LAB)).fetchone()
            db.close()
            print(f"{student:<20} {seconds:7.1f} {lab_seconds:6.1f} {row['softmax']:>7}  {row['status'][:110]}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
