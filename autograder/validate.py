"""`autograder validate`: the course is consistent before any student sees it.

- release/ is what `autograder release` makes from source/ now;
- every source exercise runs top to bottom with its solutions and all its test cells pass;
- every released exercise runs to its first stub, and from there each test cell fails with
  NotImplementedError (never a crash: NameError, a bad import, a broken helper);
- through `autograder grade`, the source solutions get full marks and the untouched release
  zero, without a grader fault; each notebook test cell is worth what the checks standing for
  it (their `cell` marker) are.
"""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

from . import artifacts
from .confine import Level
from .course import Course
from .gradebook import Gradebook
from .execute import execute
from .grade import Run, grade
from .release import stale


def check_source(path: Path, env: dict[str, str] | None = None) -> list[str]:
    return [f"{path}: {o.name}: {o.message}" for o in execute(path, env=env) if o.error]


def check_released(path: Path, env: dict[str, str] | None = None) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing; run `autograder release`"]
    outcomes = execute(path, env=env)
    first_stub = next((o.index for o in outcomes if o.is_solution), None)
    problems = []
    for o in outcomes:
        if o.error and (first_stub is None or o.index < first_stub):
            problems.append(f"{path}: {o.name}: fails before the first exercise: {o.message}")
        elif o.error and o.error != "NotImplementedError":
            problems.append(f"{path}: {o.name}: crashes instead of stopping at a stub: {o.message}")
        elif o.is_test and not o.error:
            problems.append(f"{path}: {o.name}: test passes without a solution")
    return problems


def points_agree(course: Course, checks: list[dict], labs: tuple[str, ...] | None = None) -> list[str]:
    """Each test cell's points equal the points of the checks that stand for it."""
    problems = []
    for lab in (lab for lab in course.labs if labs is None or lab.name in labs):
        cells = lab.test_cells()
        graded = Counter()
        for c in checks:
            if c["lab"] == lab.name:
                if c["cell"] not in cells:
                    problems.append(f"{lab.name}: check {c['check']} stands for {c['cell']!r}, which is not a test "
                                    "cell of the exercise")
                graded[c["cell"]] += c["points"]
        problems += [f"{lab.name}: test cell {cell} is worth {points:g} points but its checks {graded[cell]:g}"
                     for cell, points in cells.items() if graded[cell] != points]
    return problems


def check_grading(course: Course, level: Level, labs: tuple[str, ...], jobs: int = 2) -> list[str]:
    """The source solutions grade to full marks (as `autograder release` found when it built this
    version's artifacts, else graded now), the untouched release to zero, and points agree."""
    built = artifacts.load(course)
    graded = built.graded if built and all(lab in built.graded for lab in labs) else None
    with tempfile.TemporaryDirectory(prefix="autograder-validate-") as tmp:
        trees = (("untouched_release", course.release),) + ((("reference", course.source),) if graded is None else ())
        for student, tree in trees:
            (Path(tmp) / "class" / student).mkdir(parents=True)
            for lab in (course.lab(name) for name in labs):
                shutil.copyfile(tree / lab.name / lab.exercise.name, Path(tmp) / "class" / student / lab.exercise.name)
        book_path = Path(tmp) / "out" / "gradebook.sqlite"
        grade(course, [Path(tmp) / "class"], Path(tmp) / "out", Run(level, jobs=jobs, labs=labs), pages=False)
        book = Gradebook(book_path)
        try:
            release = {lab: {"checks": book.checks("untouched_release", lab), **book.labs("untouched_release")[lab]}
                       for lab in labs}
            graded = graded or {lab: {"checks": book.checks("reference", lab), **book.labs("reference")[lab]}
                                for lab in labs}
        finally:
            book.close()
    problems = []
    for lab in labs:
        for who, found in (("the source solutions", graded[lab]), ("the untouched release", release[lab])):
            problems += [f"grading {who}: {lab}: {line}" for line in _trouble(found)]
        problems += [f"grading the source solutions: {c['unit']}: {c['label']}: {c['message']}"
                     for c in graded[lab]["checks"] if not c["passed"]]
        problems += [f"grading the untouched release: {c['unit']}: {c['label']}: "
                     + ("passes" if c["passed"] else f"not a stub's failure: {c['message']}")
                     for c in release[lab]["checks"] if c["passed"] or "NotImplementedError" not in c["message"]]
    return problems + points_agree(course, [c for lab in labs for c in graded[lab]["checks"]], labs)


def _trouble(graded: dict) -> list[str]:
    """What stopped a lab or asks a TA to look at it."""
    return ([graded["problem"]] if graded["problem"] else []) + ([f"stopped: it {graded['stopped']}"]
            if graded["stopped"] else []) + [f"review: {r}" for r in graded["reviews"]]


def _notebooks(course: Course, labs: tuple[str, ...]) -> list[tuple[str, Path]]:
    return [(kind, path) for lab in (course.lab(name) for name in labs)
            for kind, path in (("source", lab.exercise),
                               ("release", course.release / lab.name / lab.exercise.name))]


def validate(course: Course, level: Level, progress=print, labs: tuple[str, ...] | None = None) -> list[str]:
    """Every problem found, one line each; an empty list means the course (or those of its `labs`)
    is valid."""
    labs = labs or tuple(lab.name for lab in course.labs)
    course.helpers().ensure(course.dataset)
    problems = [p for p in stale(course) if labs == tuple(lab.name for lab in course.labs) or
                any(p.startswith(f"release/{lab}/") for lab in labs)]
    for kind, path in _notebooks(course, labs):
        found = check_source(path) if kind == "source" else check_released(path)
        if progress:
            progress(f"{'ok  ' if not found else 'FAIL'} {kind:7} {path.relative_to(course.root)}")
        problems += found
    found = check_grading(course, level, labs)
    if progress:
        progress(f"{'ok  ' if not found else 'FAIL'} grading: source solutions to full marks, release to zero, "
                 "points agree")
    return problems + found
