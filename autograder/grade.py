"""`autograder grade`: submissions -> extract -> sandboxed workers -> pytest checks -> reports.

The checks run in pytest processes of the grader's own (one per job), each with its own
pre-warmed worker server; each commits a student to the gradebook as soon as that student is
done. This process prepares their input, shows progress, and writes the reports from the
gradebook, so a run that is killed and started again grades only what is missing or changed.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from .course import Course, CourseError
from .extract import extract
from .gradebook import Gradebook, course_fingerprint, fingerprint
from .feedback import Pages
from .reports import StudentResult, from_gradebook, write_reports
from .sandbox import Limits
from .submissions import Student, discover

GRADEBOOK = "gradebook.sqlite"


class GradingError(CourseError):
    """A grading process of ours failed (not a submission: those only fail their checks)."""


def manifest(course: Course, students: list[Student], prints: dict[str, str], limits: Limits,
             hide: list[Path]) -> dict:
    return {
        "course": str(course.root),
        "hide": [str(p.resolve()) for p in hide],
        "limits": asdict(limits),
        "units": {lab.name: list(lab.units) for lab in course.labs},
        "fingerprints": {s.id: prints[s.id] for s in students},
        "students": {s.id: {lab: code.manifest() for lab, code in extract(course, s.notebooks).items()}
                     for s in students},
    }


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a killed grader leaves no orphans


def run_checks(course: Course, students: list[Student], prints: dict[str, str], book: Path, jobs: int,
               device: str, limits: Limits, workdir: Path, hide: list[Path]) -> None:
    """Run every check for `students` in `jobs` pytest processes, each recording into `book`."""
    groups = [students[i::jobs] for i in range(jobs) if students[i::jobs]]
    procs = []
    for index, group in enumerate(groups):
        spec = workdir / f"manifest-{index}.json"
        spec.write_text(json.dumps(manifest(course, group, prints, limits, hide)))
        command = [sys.executable, "-m", "pytest", str(course.checks), "-p", "autograder.plugin",
                   "-p", "no:cacheprovider", "--assert=plain", "-o", "python_files=lab*.py", "-q", "--no-header",
                   "-rN", f"--rootdir={course.checks}", f"--autograder-manifest={spec}",
                   f"--autograder-gradebook={book}", f"--autograder-device={device}"]
        log = workdir / f"pytest-{index}.log"
        with open(log, "w") as out:
            procs.append((subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                           preexec_fn=_die_with_parent,
                                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}), log))
    failed = [(proc.wait(), log) for proc, log in procs]
    failed = [(code, log) for code, log in failed if code not in (0, 1)]  # 1: some check failed, as expected
    if failed:
        code, log = failed[0]
        raise GradingError(f"a grading process failed (exit {code}); students graded so far are kept in the "
                           f"gradebook. Its log ends:\n{log.read_text()[-3000:]}")


def in_shard(student: str, shard: tuple[int, int] | None) -> bool:
    """A stable split of the students: the same student always falls in the same part."""
    if shard is None:
        return True
    k, n = shard
    return int(hashlib.sha256(student.encode()).hexdigest(), 16) % n == k - 1


def grade(course: Course, paths: list[Path], out: Path, jobs: int = 1, device: str = "auto",
          limits: Limits = Limits(), regrade: bool = False, shard: tuple[int, int] | None = None,
          progress=None) -> list[StudentResult]:
    """Grade every student under `paths` into `out`; one result per student, in id order.

    Students already in out/gradebook.sqlite with the same fingerprint are not graded again
    unless `regrade`. `progress(done, total, book)` is called as students finish."""
    out = out.resolve()  # the grading processes run elsewhere
    students = [s for s in discover(paths) if in_shard(s.id, shard)]
    if out.resolve() in [p.resolve() for p in paths]:
        raise CourseError(f"{out}: the output folder cannot be a submissions folder")
    out.mkdir(parents=True, exist_ok=True)
    book = Gradebook(out / GRADEBOOK)
    try:
        course_print = course_fingerprint(course, json.dumps(asdict(limits), sort_keys=True), device)
        prints = {s.id: fingerprint(course_print, s) for s in students}
        known = book.fingerprints()
        todo = [s for s in students if regrade or known.get(s.id) != prints[s.id]]
        pages = Pages(course, book)
        if todo:
            pages.reference()  # trained now if not cached, not by every grading process at once
            with tempfile.TemporaryDirectory(prefix="autograder-grade-") as tmp:
                watcher = _watch(book, todo, progress)
                try:
                    run_checks(course, todo, prints, out / GRADEBOOK, max(1, min(jobs, len(todo))), device,
                               limits, Path(tmp), hide=[*paths, out])
                finally:
                    watcher()
        results = from_gradebook(course, book, [s.id for s in students])
        write_reports(course, out, results, book, pages)
        return results
    finally:
        book.close()


def _watch(book: Gradebook, todo: list[Student], progress):
    """Report progress from the gradebook while the checks run; returns the function that stops it."""
    if progress is None:
        return lambda: None
    stop = threading.Event()
    ids = {s.id for s in todo}
    started = time.time()

    def loop():
        watcher = Gradebook(book.path)
        while True:
            done = [s for s in watcher.graded_since(started) if s in ids]
            progress(len(done), len(ids), done)
            if stop.wait(0.5):
                break
        watcher.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return lambda: (stop.set(), thread.join())


def merge(course: Course, parts: list[Path], out: Path) -> list[StudentResult]:
    """One output folder from the output folders of shards, equal to grading them all at once."""
    out = out.resolve()
    books = [part / GRADEBOOK for part in parts]
    missing = [str(b) for b in books if not b.is_file()]
    if missing:
        raise CourseError(f"not a grading output folder (no {GRADEBOOK}): {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    book = Gradebook(out / GRADEBOOK)
    try:
        for part in books:
            if part.resolve() != (out / GRADEBOOK).resolve():
                book.merge_from(part)
        results = from_gradebook(course, book, book.students())
        write_reports(course, out, results, book)
        return results
    finally:
        book.close()
