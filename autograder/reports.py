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


def collect(course: Course, students: list[str], raw: list[dict], seconds: float) -> list[StudentResult]:
    checks = [c for part in raw for c in part["checks"]]
    labs = [lab for part in raw for lab in part["labs"]]
    max_units: dict[str, float] = {unit: 0.0 for unit in course.units}
    for (unit, _), points in {(c["unit"], c["check"]): c["points"] for c in checks}.items():
        if unit in max_units:
            max_units[unit] += points
    results = {s: StudentResult(s, {u: 0.0 for u in course.units}, dict(max_units),
                                execution_time=round(seconds / max(len(students), 1), 2)) for s in students}
    for c in checks:
        result = results[c["student"]]
        result.checks.append(c)
        if c["passed"] and c["unit"] in result.units:
            result.units[c["unit"]] += c["points"]
    for lab in sorted(labs, key=lambda lab: lab["lab"]):
        reason = lab.get("problem") or (f"stopped: it {lab['stopped']}" if lab.get("stopped") else None)
        if reason:
            results[lab["student"]].problems.append(f"{lab['lab']}: {_short(reason)}")
    return [results[s] for s in students]


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


def write_reports(out: Path, results: list[StudentResult]) -> None:
    for r in results:
        _atomic_write(out / r.student / "results.json", json.dumps(results_json(r), indent=1))
    units = tuple(results[0].units) if results else ()
    _atomic_write(out / "grades.csv", grades_csv(results, units))
