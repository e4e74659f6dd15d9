"""`autograder grade`: submissions -> extract -> sandboxed workers -> checks -> gradebook -> reports.

The checks run in pytest processes of the grader's own (one per job), each with its own
pre-warmed worker server, each recording a student's lab into the gradebook as soon as it is
done. This process finds the submissions, extracts their code, hands each process its part (on
a pipe: no file holds every student's code), shows progress, and then renders every report
from the gradebook in one pass. A run that is killed and started again grades only what is
missing or changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import artifacts, confine
from .course import Course, CourseError
from .extract import extract
from .gradebook import Gradebook
from .reports import StudentResult, write_reports
from .sandbox import Level, Limits
from .submissions import discover

GRADEBOOK = "gradebook.sqlite"


class GradingError(CourseError):
    """A grading process of ours failed (not a submission: those only fail their checks)."""


@dataclass(frozen=True)
class Run:
    """How a grading run grades: where, with what isolation and limits, which labs."""
    level: Level
    limits: Limits = Limits()
    device: str = "cpu"
    jobs: int = 1
    labs: tuple[str, ...] | None = None  # None: every lab some submission holds
    public_only: bool = False
    hidden_visibility: str = "after_published"  # Gradescope's visibility of the hidden checks


def _digest(paths) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return h.hexdigest()


def protected_paths(course: Course, paths: list[Path], out: Path) -> list[Path]:
    """What no worker may read: the course (solutions, checks, history), its data and cache, the
    submissions and the output."""
    helpers = course.helpers()
    data = [helpers.cache_dir(), *(p / course.dataset for p in helpers.idx_search_path())]
    return sorted({p.resolve() for p in (course.root, course.checks, *data, *paths, out)})


def in_shard(student: str, shard: tuple[int, int] | None) -> bool:
    """A stable split of the students: the same student always falls in the same part."""
    if shard is None:
        return True
    k, n = shard
    return int(hashlib.sha256(student.encode()).hexdigest(), 16) % n == k - 1


def _labs_held(course: Course, code: dict[str, dict]) -> list[str]:
    held = {lab for labs in code.values() for lab, c in labs.items() if c.notebook is not None}
    return [lab.name for lab in course.labs if lab.name in held]


def run_checks(course: Course, spec: dict, jobs: int) -> None:
    """Every check of `spec` in `jobs` pytest processes; each records into the gradebook."""
    students = sorted(spec["todo"])
    groups = [students[i::jobs] for i in range(jobs) if students[i::jobs]]
    procs = []
    for group in groups:
        part = {**spec, "todo": {s: spec["todo"][s] for s in group},
                "students": {s: spec["students"][s] for s in group}}
        read, write = os.pipe()
        command = [sys.executable, "-m", "pytest", str(course.checks), "-p", "autograder.harness",
                   "-p", "no:cacheprovider", "--assert=plain", "-o", "python_files=lab*.py", "-q", "--no-header",
                   "-rN", f"--rootdir={course.checks}", f"--autograder-spec-fd={read}"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=course.checks,
                                pass_fds=[read], preexec_fn=lambda: confine.die_with_parent(None),
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        os.close(read)
        threading.Thread(target=_feed, args=(write, json.dumps(part).encode()), daemon=True).start()
        tail: list[bytes] = []
        threading.Thread(target=_keep_tail, args=(proc.stdout, tail), daemon=True).start()
        procs.append((proc, tail))
    failed = [(proc.wait(), tail) for proc, tail in procs]
    if os.environ.get("AUTOGRADER_DEBUG"):
        for _, tail in procs:
            sys.stderr.write(b"".join(tail).decode(errors="replace"))
    failed = [(code, tail) for code, tail in failed if code not in (0, 1)]  # 1: some check failed, as expected
    if failed:
        code, tail = failed[0]
        time.sleep(0.2)
        text = b"".join(tail).decode(errors="replace")[-3000:]
        raise GradingError(f"a grading process failed (exit {code}); the labs graded so far are kept in the "
                           f"gradebook. Its output ends:\n{text}")


def _feed(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _keep_tail(stream, tail: list[bytes]) -> None:
    for line in stream:
        tail.append(line)
        del tail[:-200]


def grade(course: Course, paths: list[Path], out: Path, run: Run, regrade: bool = False,
          shard: tuple[int, int] | None = None, student: str | None = None, progress=None) -> list[StudentResult]:
    """Grade every submission under `paths` into `out`; one result per student, in id order.

    Labs already in out/gradebook.sqlite with the same fingerprint are not graded again unless
    `regrade`. `progress(done, total)` is called as labs finish."""
    out = out.resolve()
    if out in [p.resolve() for p in paths]:
        raise CourseError(f"{out}: the output folder cannot be a submissions folder")
    submissions = [s for s in discover(paths, {lab.name for lab in course.labs}, student) if in_shard(s.student, shard)]
    code = {s.student: extract(course, s.notebooks) for s in submissions}
    labs = list(run.labs) if run.labs else _labs_held(course, code)
    for lab in labs:
        course.lab(lab)  # an unknown lab is a one-line error here
    if not labs:
        raise CourseError("no submission holds a notebook of any lab; pass --lab NAME to grade one anyway")
    out.mkdir(parents=True, exist_ok=True)
    reference = artifacts.load(course)
    settings = {"course": artifacts.fingerprint(course), "labs": json.dumps(labs), "sandbox": run.level.describe(),
                "device": run.device, "limits": json.dumps(asdict(run.limits), sort_keys=True),
                "public_only": str(run.public_only), "hidden_visibility": run.hidden_visibility}
    book = Gradebook(out / GRADEBOOK)
    try:
        book.set_settings(settings)
        setting_print = json.dumps(settings, sort_keys=True)
        prints = {s.student: {lab: hashlib.sha256(f"{setting_print}\0{lab}\0{_digest(s.notebooks)}".encode()).hexdigest()
                              for lab in labs} for s in submissions}
        known = book.fingerprints()
        todo = {s.student: [lab for lab in labs if regrade or known.get((s.student, lab)) != prints[s.student][lab]]
                for s in submissions}
        todo = {s: ls for s, ls in todo.items() if ls}
        if todo:
            spec = {"course": str(course.root), "gradebook": str(out / GRADEBOOK), "device": run.device,
                    "secret": os.urandom(16).hex(),
                    "level": asdict(run.level), "limits": asdict(run.limits), "labs": labs, "todo": todo,
                    "units": {lab.name: list(lab.units) for lab in course.labs}, "public_only": run.public_only,
                    "costs": reference.costs if reference else {},
                    "protected": [str(p) for p in protected_paths(course, paths, out)],
                    "students": {s: {"fingerprints": prints[s],
                                     "labs": {lab: {"setup": list(c.setup), "units": c.units, "notebook": c.notebook,
                                                    "problem": c.problem} for lab, c in code[s].items()}}
                                 for s in todo}}
            stop = _watch(book.path, sum(len(ls) for ls in todo.values()), progress)
            try:
                run_checks(course, spec, max(1, min(run.jobs, len(todo))))
            finally:
                stop()
        return write_reports(course, out, book, labs)
    finally:
        book.close()


def build_artifacts(course: Course, run: Run) -> artifacts.Artifacts:
    """Grade the reference solutions once and keep what later grading needs (artifacts.py)."""
    def grade_reference(folder: Path, out: Path) -> Gradebook:
        grade(course, [folder], out, replace(run, labs=tuple(lab.name for lab in course.labs), public_only=False))
        return Gradebook(out / GRADEBOOK)

    return artifacts.build(course, grade_reference)


def _watch(path: Path, total: int, progress):
    """Report progress from the gradebook while the checks run; returns the function that stops it."""
    if progress is None:
        return lambda: None
    stop, started = threading.Event(), time.time()

    def loop():
        book = Gradebook(path)
        while True:
            progress(len(book.graded_since(started)), total)
            if stop.wait(0.5):
                break
        progress(len(book.graded_since(started)), total)
        book.close()

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
        return write_reports(course, out, book, json.loads(book.settings()["labs"]))
    finally:
        book.close()
