"""`autograder grade`: submissions -> extract -> sandboxed workers -> checks -> gradebook -> reports.

The checks run in pytest processes of the grader's own (one per job), each with its own
pre-warmed worker server, each recording a student's lab into the gradebook as soon as it is
done. This process finds the submissions, extracts their code, hands each process the run (on a
pipe: no file holds every student's code) and then the students one at a time as they ask (a
work queue: a process that drew quick students takes more), shows progress, and then makes every
report from the gradebook in one pass. A run that is killed and started again grades only what is
missing or changed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import artifacts, confine
from .course import Course, CourseError
from .extract import LabCode, extract
from .gradebook import Gradebook
from .reports import GRADEBOOK, RESERVED, Report, keep_extensions, write_reports
from .sandbox import Level, Limits
from .submissions import Submission, discover, gradescope_times, nbgrader_feedback


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
    leaderboard: bool = False  # results.json carries Gradescope's leaderboard (test accuracy)


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
    return int(hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest(), 16) % n == k - 1


def _labs_held(course: Course, code: dict[str, dict[str, LabCode]]) -> list[str]:
    held = {lab for labs in code.values() for lab, c in labs.items() if c.notebook is not None}
    return [lab.name for lab in course.labs if lab.name in held]


def _cost(labs: dict) -> int:
    """How long a student's labs take, roughly: the labs that train take the longest."""
    return sum(1 + 10 * ("train" in lab) for lab, code in labs.items() if code["notebook"] is not None)


def run_checks(course: Course, spec: dict, jobs: int) -> None:
    """Every check of `spec` in `jobs` pytest processes; each records into the gradebook. Each
    process holds the whole run and asks for its next student when it is done with one."""
    students = sorted(spec["todo"], key=lambda s: (-_cost(spec["students"][s]["labs"]), s))
    spec = {**spec, "order": students}
    handed, lock = iter(range(len(students))), threading.Lock()
    procs = []
    for _ in range(jobs):
        read, write = os.pipe()
        ours, theirs = socket.socketpair()
        modules = [str(course.checks / f"{lab}.py") for lab in spec["labs"]]  # the run's labs' checks only
        command = [sys.executable, "-m", "pytest", *modules, "-p", "autograder.harness",
                   "-p", "no:cacheprovider", "--assert=plain", "-o", "python_files=lab*.py", "-q", "--no-header",
                   "-rN", f"--rootdir={course.checks}", f"--autograder-spec-fd={read}",
                   f"--autograder-queue-fd={theirs.fileno()}"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=course.checks,
                                pass_fds=[read, theirs.fileno()], preexec_fn=lambda: confine.die_with_parent(None),
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        os.close(read)
        theirs.close()
        threading.Thread(target=_feed, args=(write, json.dumps(spec).encode()), daemon=True).start()
        threading.Thread(target=_hand_out, args=(ours, handed, lock), daemon=True).start()
        tail: list[bytes] = []
        threading.Thread(target=_keep_tail, args=(proc.stdout, tail), daemon=True).start()
        procs.append((proc, tail))
    failed = [(proc.wait(), tail) for proc, tail in procs]
    if os.environ.get("AUTOGRADER_DEBUG"):
        for _, tail in procs:
            sys.stderr.write(b"".join(tail).decode(errors="replace"))
    failed = [(code, tail) for code, tail in failed if code not in (0, 1, 5)]  # 1: a check failed; 5: none ran
    if failed:
        code, tail = failed[0]
        time.sleep(0.2)
        text = b"".join(tail).decode(errors="replace")[-3000:]
        raise GradingError(f"a grading process failed (exit {code}); the labs graded so far are kept in the "
                           f"gradebook. Its output ends:\n{text}")


def _hand_out(sock: socket.socket, handed, lock: threading.Lock) -> None:
    """Answer a pytest process's requests for its next student (an index into the run's order;
    -1 when there is none left), in increasing order across all processes."""
    with sock, sock.makefile("rwb", buffering=0) as stream:
        for _ in stream:
            with lock:
                index = next(handed, -1)
            stream.write(f"{index}\n".encode())


def _feed(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _keep_tail(stream, tail: list[bytes]) -> None:
    for line in stream:
        tail.append(line)
        del tail[:-200]


def _lab_print(settings: str, lab_version: str, lab: str, code: LabCode, facts: dict) -> str:
    """What a lab's grade depends on: the settings, the lab's checks and exercise, the code the
    student's notebook gives it, and when it was submitted."""
    graded = json.dumps([settings, lab_version, lab, asdict(code), facts], sort_keys=True)
    return hashlib.sha256(graded.encode("utf-8", "surrogateescape")).hexdigest()


def _times(submission: Submission, code: LabCode, gradescope: tuple[str | None, str | None] | None) -> dict:
    """When this lab was submitted (and due, where the submission says so)."""
    if gradescope is not None:
        return {"submitted_at": gradescope[0], "due": gradescope[1]}
    return {"submitted_at": submission.submitted.get(str(_notebook(submission, code))), "due": None}


def _notebook(submission: Submission, code: LabCode) -> Path | None:
    """The notebook of the submission that gave this lab its code."""
    return next((p for p in submission.notebooks if p.name == code.notebook), None)


def grade(course: Course, paths: list[Path], out: Path, run: Run, regrade: bool = False,
          shard: tuple[int, int] | None = None, students: tuple[str, ...] = (), as_student: str | None = None,
          gradescope: Path | None = None, extensions: Path | None = None, progress=None, pages: bool = True) -> Report:
    """Grade every submission under `paths` into `out`, then report on every student `out` holds.

    Labs already in the gradebook with the same fingerprint are not graded again, unless
    `regrade`; with `students`, only those students are graded (or regraded), and every other row
    stays as it was. `as_student`: the one folder given is that student's, whatever its layout;
    `gradescope`: that submission's submission_metadata.json (when it was made, when it is due).
    `progress(done, total)` is called as labs finish; without `pages`, no feedback page or summary
    is drawn (a student's self-check reads only the results)."""
    out = out.resolve()
    if out in [p.resolve() for p in paths]:
        raise CourseError(f"{out}: the output folder cannot be a submissions folder")
    everyone = discover(paths, {lab.name for lab in course.labs}, as_student, RESERVED)
    missing = [s for s in students if s not in {s.student for s in everyone}]
    if missing:
        raise CourseError(f"no submission of {', '.join(map(repr, missing))} under {', '.join(map(str, paths))}")
    code = {s.student: extract(course, s.notebooks) for s in everyone if s.problem is None}
    # The labs of the whole class, whatever part of it this run grades: shards and one student's
    # regrade grade the labs a run of everyone would.
    labs = list(run.labs) if run.labs else _labs_held(course, code)
    submissions = [s for s in everyone if in_shard(s.student, shard) and (not students or s.student in students)]
    code = {s.student: code[s.student] for s in submissions if s.problem is None}
    times = gradescope_times(gradescope) if gradescope else None
    for lab in labs:
        course.lab(lab)  # an unknown lab is a one-line error here
    if not labs:
        raise CourseError("no submission holds a notebook of any lab; pass --lab NAME to grade one anyway")
    out.mkdir(parents=True, exist_ok=True)
    keep_extensions(out, extensions, course)
    reference = artifacts.load(course)
    settings = {"course": artifacts.fingerprint(course), "labs": json.dumps(labs), "sandbox": run.level.describe(),
                "device": run.device, "limits": json.dumps(asdict(run.limits), sort_keys=True),
                "public_only": str(run.public_only), "hidden_visibility": run.hidden_visibility,
                "leaderboard": str(run.leaderboard)}
    # What decides a lab's findings (not the course's whole version, the labs of this run, or how
    # the reports show them).
    graded_with = json.dumps({k: v for k, v in settings.items()
                              if k not in ("course", "labs", "hidden_visibility", "leaderboard")}, sort_keys=True)
    versions = {lab: artifacts.fingerprint(course, lab) for lab in labs}
    book = Gradebook(out / GRADEBOOK)
    try:
        book.set_settings(settings)
        for s in submissions:
            if s.problem is not None and book.ungraded().get(s.student) != s.problem:
                book.record_ungraded(s.student, s.problem)
        facts = {s.student: {lab: _times(s, code[s.student][lab], times) for lab in labs}
                 for s in submissions if s.problem is None}
        prints = {student: {lab: _lab_print(graded_with, versions[lab], lab, code[student][lab], facts[student][lab])
                            for lab in labs} for student in code}
        known = book.fingerprints()
        todo = {student: [lab for lab in labs if regrade or known.get((student, lab)) != prints[student][lab]]
                for student in code}
        todo = {s: ls for s, ls in todo.items() if ls}
        if todo:
            spec = {"course": str(course.root), "gradebook": str(out / GRADEBOOK), "device": run.device,
                    "secret": os.urandom(16).hex(), "sandbox": run.level.name,
                    "level": asdict(run.level), "limits": asdict(run.limits), "labs": labs, "todo": todo,
                    "units": {lab.name: list(lab.units) for lab in course.labs}, "public_only": run.public_only,
                    "costs": reference.costs if reference else {},
                    "protected": [str(p) for p in protected_paths(course, paths, out)],
                    "students": {s: {"fingerprints": prints[s],
                                     "labs": {lab: {**asdict(c), **facts[s].get(lab, {})}
                                              for lab, c in code[s].items()}}
                                 for s in todo}}
            stop = _watch(book.path, sum(len(ls) for ls in todo.values()), progress)
            try:
                run_checks(course, spec, max(1, min(run.jobs, len(todo))))
            finally:
                stop()
        for s in submissions:  # nbgrader feedback: where each lab's notebook was collected from
            if s.problem is None:
                notebooks = {lab: _notebook(s, code[s.student][lab]) for lab in labs}
                book.record_nbgrader(s.student, labs, {lab: nb.absolute() for lab, nb in notebooks.items()
                                                       if nb is not None and nbgrader_feedback(nb) is not None})
        return write_reports(course, out, book, pages)
    finally:
        book.close()


@contextlib.contextmanager
def open_output(out: Path):
    """The gradebook of an output folder that grading made (a one-line error for any other)."""
    out = out.resolve()
    if not (out / GRADEBOOK).is_file():
        raise CourseError(f"{out}: not a grading output folder (no {GRADEBOOK})")
    book = Gradebook(out / GRADEBOOK)
    try:
        yield book
    finally:
        book.close()


def report(course: Course, out: Path, extensions: Path | None = None) -> Report:
    """Every output file again from the gradebook, the policy and the overrides; nothing graded."""
    with open_output(out) as book:
        keep_extensions(out.resolve(), extensions, course)
        return write_reports(course, out.resolve(), book)


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


def merge(course: Course, parts: list[Path], out: Path, extensions: Path | None = None) -> Report:
    """One output folder from the output folders of shards, equal to grading them all at once."""
    out = out.resolve()
    books = [part / GRADEBOOK for part in parts]
    missing = [str(b) for b in books if not b.is_file()]
    if missing:
        raise CourseError(f"not a grading output folder (no {GRADEBOOK}): {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    keep_extensions(out, extensions, course)
    book = Gradebook(out / GRADEBOOK)
    try:
        for part in books:
            if part.resolve() != (out / GRADEBOOK).resolve():
                book.merge_from(part)
        return write_reports(course, out, book)
    finally:
        book.close()
