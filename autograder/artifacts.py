"""Course artifacts: what grading needs from the reference solution, built once per course version.

`build` grades the source exercises (the reference) in the sandbox like any submission and
keeps, under the course's fingerprint in the data cache: the CPU seconds each check and each
lab's loading took (the limits of a student's checks are set from them), and the tensors the
checks kept (the reference's learned templates, drawn beside a student's in feedback). It is an
explicit step (`autograder release`, the Gradescope bundle's setup); grading and reports only
read what it left.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .course import HELPERS, Course

REFERENCE = "reference"  # the student id the reference solution is graded as
GRADED = ("problem", "stopped", "reviews")  # what of the reference's grading, besides its checks, validate reads


@dataclass(frozen=True)
class Artifacts:
    costs: dict[str, dict[str, float]]  # lab -> check name (or "load") -> CPU seconds; "lab" -> wall seconds
    kept: dict[str, tuple[str | None, np.ndarray]]  # name -> (picture kind, array)
    # lab -> how the reference graded: its checks, and what stopped it or asks for review (validate reads it)
    graded: dict[str, dict]


# The grader's modules that decide what a check finds (not how it is reported or rendered).
GRADING_CODE = ("assertions", "cgroups", "confine", "course", "extract", "harness", "messages", "reap", "rules",
                "sandbox", "server", "worker")


def fingerprint(course: Course, lab: str | None = None) -> str:
    """The version of the course, or of one of its labs, as far as grading goes: the grader's
    grading code, the checks (of that lab, and the files its checks share), the source exercises
    and the helpers, and what course.toml says of the course and its data (not its due dates or
    late rule, which apply when reports are made)."""
    package = Path(__file__).parent
    checks = sorted(p for p in course.checks.glob("*.py") if lab is None or p.stem == lab
                    or p.stem not in {other.name for other in course.labs})
    files = [package / f"{name}.py" for name in GRADING_CODE] + checks
    files += [other.exercise for other in course.labs if lab is None or other.name == lab] + [course.source / HELPERS]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    graded = {key: course.config.get(key) for key in ("course", "data", "rules")}
    digest.update(json.dumps(graded, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _folder(course: Course) -> Path:
    return course.helpers().cache_dir() / "reference" / fingerprint(course)[:24]


def load(course: Course) -> Artifacts | None:
    """The artifacts of this course version, or None when they were not built."""
    folder = _folder(course)
    try:
        costs = json.loads((folder / "costs.json").read_text())
        graded = json.loads((folder / "graded.json").read_text())
        meta = json.loads((folder / "kept.json").read_text())
        with np.load(folder / "kept.npz", allow_pickle=False) as arrays:
            kept = {name: (picture, arrays[key].copy()) for key, (name, picture) in meta.items()}
    except (OSError, ValueError, KeyError):
        return None
    return Artifacts(costs, kept, graded)


def build(course: Course, grade_reference) -> Artifacts:
    """Grade the source exercises with `grade_reference(folder_of_one_student, out) -> Gradebook`
    and keep what grading needs, and how the reference graded (so that `autograder validate` need
    not grade it again); the result replaces any earlier build of this version."""
    with tempfile.TemporaryDirectory(prefix="autograder-reference-") as tmp:
        student = Path(tmp) / "class" / REFERENCE
        student.mkdir(parents=True)
        for lab in course.labs:
            shutil.copyfile(lab.exercise, student / lab.exercise.name)
        book = grade_reference(Path(tmp) / "class", Path(tmp) / "out")
        try:
            labs = book.labs(REFERENCE)
            costs = {lab: {c["check"]: c["cpu_seconds"] for c in book.checks(REFERENCE, lab)} for lab in labs}
            for lab, summary in labs.items():
                costs[lab]["load"] = summary["load_cpu"]
                costs[lab]["lab"] = summary["seconds"]
            graded = {lab: {"checks": book.checks(REFERENCE, lab), **{k: summary[k] for k in GRADED}}
                      for lab, summary in labs.items()}
            kept = book.artifacts(REFERENCE)
        finally:
            book.close()
    folder = _folder(course)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    (staging / "costs.json").write_text(json.dumps(costs, indent=1, sort_keys=True))
    (staging / "graded.json").write_text(json.dumps(graded, indent=1, sort_keys=True))
    keys = {f"t{i}": (name, picture) for i, (name, (picture, _)) in enumerate(sorted(kept.items()))}
    (staging / "kept.json").write_text(json.dumps(keys, indent=1))
    np.savez(staging / "kept.npz", **{key: kept[name][1] for key, (name, _) in keys.items()})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return Artifacts(costs, kept, graded)
