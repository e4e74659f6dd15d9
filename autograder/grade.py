"""`autograder grade`: submissions -> extract -> sandboxed workers -> pytest checks -> reports.

The checks run in pytest processes of the grader's own (one per job), each with its own
pre-warmed worker server; this process only prepares their input and collects their output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from .course import Course, CourseError
from .extract import extract
from .reports import StudentResult, collect, write_reports
from .sandbox import Limits
from .submissions import Student, discover


def manifest(course: Course, students: list[Student], limits: Limits) -> dict:
    return {
        "course": str(course.root),
        "limits": asdict(limits),
        "units": {lab.name: list(lab.units) for lab in course.labs},
        "students": {s.id: {lab: code.manifest() for lab, code in extract(course, s.notebooks).items()}
                     for s in students},
    }


def run_checks(course: Course, students: list[Student], jobs: int, device: str, limits: Limits,
               workdir: Path) -> list[dict]:
    """Run every check for `students` in `jobs` pytest processes; their raw results."""
    groups = [students[i::jobs] for i in range(jobs) if students[i::jobs]]
    procs = []
    for index, group in enumerate(groups):
        spec, results = workdir / f"manifest-{index}.json", workdir / f"results-{index}.json"
        spec.write_text(json.dumps(manifest(course, group, limits)))
        command = [sys.executable, "-m", "pytest", str(course.checks), "-p", "autograder.plugin",
                   "-p", "no:cacheprovider", "--assert=plain", "-o", "python_files=lab*.py", "-q", "--no-header", "-rN",
                   f"--rootdir={course.checks}", f"--autograder-manifest={spec}",
                   f"--autograder-results={results}", f"--autograder-device={device}"]
        log = open(workdir / f"pytest-{index}.log", "w")
        procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}), results, log))
    raw = []
    for proc, results, log in procs:
        proc.wait()
        log.close()
        if not results.is_file():
            tail = (workdir / log.name).read_text()[-2000:]
            raise RuntimeError(f"a grading process failed (exit {proc.returncode}):\n{tail}")
        raw.append(json.loads(results.read_text()))
    return raw


def grade(course: Course, paths: list[Path], out: Path, jobs: int = 1, device: str = "auto",
          limits: Limits = Limits()) -> list[StudentResult]:
    """Grade every student under `paths` into `out`; one result per student, in id order."""
    students = discover(paths)
    if out.resolve() in [p.resolve() for p in paths]:
        raise CourseError(f"{out}: the output folder cannot be a submissions folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autograder-grade-") as tmp:
        raw = run_checks(course, students, max(1, jobs), device, limits, Path(tmp))
    results = collect(course, [s.id for s in students], raw, time.monotonic() - started)
    write_reports(out, results)
    return results
