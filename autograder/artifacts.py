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
import torch

from .course import CONFIG, HELPERS, Course

REFERENCE = "reference"  # the student id the reference solution is graded as


@dataclass(frozen=True)
class Artifacts:
    costs: dict[str, dict[str, float]]  # lab -> check name (or "load") -> CPU seconds
    kept: dict[str, tuple[str | None, torch.Tensor]]  # name -> (picture kind, tensor)


def fingerprint(course: Course) -> str:
    """The course version: the grader's code, the checks, the source exercises and helpers."""
    files = sorted(Path(__file__).parent.glob("*.py")) + sorted(course.checks.glob("*.py"))
    files += [lab.exercise for lab in course.labs] + [course.source / HELPERS, course.root / CONFIG]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _folder(course: Course) -> Path:
    return course.helpers().cache_dir() / "reference" / fingerprint(course)[:24]


def load(course: Course) -> Artifacts | None:
    """The artifacts of this course version, or None when they were not built."""
    folder = _folder(course)
    try:
        costs = json.loads((folder / "costs.json").read_text())
        meta = json.loads((folder / "kept.json").read_text())
        with np.load(folder / "kept.npz", allow_pickle=False) as arrays:
            kept = {name: (picture, torch.from_numpy(arrays[key].copy())) for key, (name, picture) in meta.items()}
    except (OSError, ValueError, KeyError):
        return None
    return Artifacts(costs, kept)


def build(course: Course, grade_reference) -> Artifacts:
    """Grade the source exercises with `grade_reference(folder_of_one_student, out) -> Gradebook`
    and keep what grading needs; the result replaces any earlier build of this version."""
    with tempfile.TemporaryDirectory(prefix="autograder-reference-") as tmp:
        student = Path(tmp) / "class" / REFERENCE
        student.mkdir(parents=True)
        for lab in course.labs:
            shutil.copyfile(lab.exercise, student / lab.exercise.name)
        book = grade_reference(Path(tmp) / "class", Path(tmp) / "out")
        try:
            costs = {lab: {c["check"]: c["cpu_seconds"] for c in book.checks(REFERENCE, lab)}
                     for lab in book.labs(REFERENCE)}
            for lab, summary in book.labs(REFERENCE).items():
                costs[lab]["load"] = summary["load_cpu"]
            kept = book.artifacts(REFERENCE)
        finally:
            book.close()
    folder = _folder(course)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    (staging / "costs.json").write_text(json.dumps(costs, indent=1, sort_keys=True))
    keys = {f"t{i}": (name, picture) for i, (name, (picture, _)) in enumerate(sorted(kept.items()))}
    (staging / "kept.json").write_text(json.dumps(keys, indent=1))
    np.savez(staging / "kept.npz", **{key: kept[name][1].numpy() for key, (name, _) in keys.items()})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return Artifacts(costs, kept)
