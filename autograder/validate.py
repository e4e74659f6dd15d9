"""`autograder validate`: the course is consistent before any student sees it.

- release/ is what `autograder release` makes from source/ now;
- every source exercise runs top to bottom with its solutions and all its test cells pass;
- every released exercise runs to its first stub, and from there each test cell fails with
  NotImplementedError (never a crash: NameError, a bad import, a broken helper).
"""
from __future__ import annotations

from pathlib import Path

from .course import Course
from .execute import CellOutcome, execute
from .release import stale


def check_source(path: Path) -> list[str]:
    return [f"{path}: {o.name}: {o.message}" for o in execute(path) if o.error]


def check_released(path: Path) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing; run `autograder release`"]
    outcomes = execute(path)
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


def _checks(course: Course) -> list[tuple[str, Path]]:
    return [(kind, path) for lab in course.labs
            for kind, path in (("source", lab.exercise),
                               ("release", course.release / lab.name / lab.exercise.name))]


def validate(course: Course, progress=print) -> list[str]:
    """Every problem found, one line each; an empty list means the course is valid."""
    course.helpers().ensure("fashion-mnist")
    problems = stale(course)
    for kind, path in _checks(course):
        found = check_source(path) if kind == "source" else check_released(path)
        progress(f"{'ok  ' if not found else 'FAIL'} {kind:7} {path.relative_to(course.root)}")
        problems += found
    return problems
