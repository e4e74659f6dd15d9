"""What grading writes (SPEC §6): grades.csv, and results.json per student in Gradescope's format.

Files are written beside their target and renamed into place, so a crash never leaves half a file.
Hidden checks say only their own message (never their source or expected values).
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .course import Course
from .feedback import Pages
from .gradebook import Gradebook

CSV_TAIL = ["total", "max_total", "status"]


@dataclass
class StudentResult:
    student: str
    units: dict[str, float]
    max_units: dict[str, float]
    checks: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    execution_time: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.units.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_units.values())

    @property
    def status(self) -> str:
        return "ok" if not self.problems else "; ".join(self.problems)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def from_gradebook(course: Course, book: Gradebook, students: list[str]) -> list[StudentResult]:
    """Each student's result as the gradebook holds it (only students it holds)."""
    results = []
    held = set(book.students())
    for student in students:
        if student not in held:
            continue
        checks = book.checks(student)
        result = StudentResult(student, {u: 0.0 for u in course.units}, {u: 0.0 for u in course.units},
                               checks=checks, execution_time=book.seconds(student))
        for c in checks:
            if c["unit"] in result.units:
                result.max_units[c["unit"]] += c["points"]
                result.units[c["unit"]] += c["points"] if c["passed"] else 0.0
        for lab in book.labs(student):
            reason = lab.get("problem") or (f"stopped: it {lab['stopped']}" if lab.get("stopped") else None)
            if reason:
                result.problems.append(f"{lab['lab']}: {_short(reason)}")
        results.append(result)
    return results


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 2)


def results_json(result: StudentResult) -> dict:
    tests = []
    for c in result.checks:
        tests.append({
            "name": f"{c['unit']}: {c['label']}",
            "score": _number(c["points"] if c["passed"] else 0),
            "max_score": _number(c["points"]),
            "status": "passed" if c["passed"] else "failed",
            "output": "passed" if c["passed"] else c["message"],
            "visibility": "after_published" if c["hidden"] else "visible",
        })
    return {"score": _number(result.total), "execution_time": result.execution_time,
            "output": "All checks ran." if not result.problems else "Not every check could run: " + result.status,
            "tests": tests}


def grades_csv(results: list[StudentResult], units: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *units, *CSV_TAIL])
    for r in results:
        writer.writerow([r.student, *(_number(r.units[u]) for u in units),
                         _number(r.total), _number(r.max_total), r.status])
    return buffer.getvalue()


def write_student(out: Path, result: StudentResult, pages: Pages) -> None:
    """results.json and feedback.html of one student."""
    _atomic_write(out / result.student / "results.json", json.dumps(results_json(result), indent=1))
    _atomic_write(out / result.student / "feedback.html", pages.student(result))


def write_reports(course: Course, out: Path, results: list[StudentResult], book: Gradebook,
                  pages: Pages | None = None) -> None:
    """grades.csv and summary.html, and each student's files unless the grading process that
    graded them already wrote them since: all from the gradebook."""
    pages = pages or Pages(course, book)
    graded_at = book.graded_at()
    for r in results:
        files = [out / r.student / name for name in ("results.json", "feedback.html")]
        if not all(f.is_file() and f.stat().st_mtime >= graded_at[r.student] for f in files):
            write_student(out, r, pages)
    _atomic_write(out / "grades.csv", grades_csv(results, course.units))
    if results:
        _atomic_write(out / "summary.html", pages.summary(results))
