"""`autograder validate`: the course is consistent before any student sees it.

- release/ is what `autograder release` makes from source/ now;
- every source exercise runs top to bottom with its solutions and all its test cells pass;
- every released exercise runs to its first stub, and from there each test cell fails with
  NotImplementedError (never a crash: NameError, a bad import, a broken helper);
- through `autograder grade`, the source solutions get full marks and the untouched release
  zero, without a grader fault; each unit's checks are worth what its notebook test cells are.
"""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

from .course import Course, nbgrader_meta, read_notebook
from .execute import execute
from .grade import grade
from .plugin import unit_of
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


def notebook_points(course: Course) -> Counter:
    """Points of each unit's test cells (grade_id test_<unit>_...) in the source exercises."""
    points: Counter = Counter()
    for lab in course.labs:
        for cell in read_notebook(lab.exercise).cells:
            meta = nbgrader_meta(cell)
            unit = unit_of(meta.get("grade_id") or "", list(lab.units))
            if meta.get("grade") and unit:
                points[unit] += meta.get("points", 0)
    return points


def check_grading(course: Course, jobs: int = 2) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="autograder-validate-") as tmp:
        for student, tree in (("reference", course.source), ("untouched_release", course.release)):
            (Path(tmp) / "class" / student).mkdir(parents=True)
            for lab in course.labs:
                shutil.copyfile(tree / lab.name / lab.exercise.name, Path(tmp) / "class" / student / lab.exercise.name)
        reference, release = grade(course, [Path(tmp) / "class"], Path(tmp) / "out", jobs=jobs)
    problems = [f"grading the source solutions: {c['unit']}: {c['label']}: {c['message']}"
                for c in reference.checks if not c["passed"]]
    if reference.total != reference.max_total or reference.status != "ok":
        problems.append(f"the source solutions grade {reference.total:g}/{reference.max_total:g} ({reference.status})")
    faults = [c for c in release.checks if "NotImplementedError" not in c["message"]]
    problems += [f"grading the untouched release: {c['unit']}: {c['label']}: not a stub's failure: {c['message']}"
                 for c in faults]
    if release.total != 0 or release.status != "ok":
        problems.append(f"the untouched release grades {release.total:g} ({release.status})")
    points = notebook_points(course)
    problems += [f"{unit}: the checks are worth {reference.max_units[unit]:g} points but its test cells {points[unit]:g}"
                 for unit in course.units if reference.max_units[unit] != points[unit]]
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
    found = check_grading(course)
    progress(f"{'ok  ' if not found else 'FAIL'} grading: source solutions to full marks, release to zero")
    return problems + found
