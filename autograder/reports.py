"""One report pass, from the gradebook: grades.csv, each student's results.json (Gradescope's
format) and feedback.html, and summary.html. It runs after grading and after a merge, and is
the only writer of those files; a file is rewritten only when its content changed, and written
beside its target then renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .course import Course
from .feedback import Pages
from .gradebook import Gradebook

CSV_TAIL = ["total", "max_total", "status"]
CHECK_TEXT, STUDENT_TEXT = 2000, 16000  # characters of messages a check, a student


@dataclass
class StudentResult:
    student: str
    labs: list[str]  # the labs graded
    units: dict[str, float]
    max_units: dict[str, float]
    checks: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reviews: list[str] = field(default_factory=list)
    sandbox: str = ""
    execution_time: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.units.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_units.values())

    @property
    def status(self) -> str:
        parts = [*self.problems, *(f"review: {r}" for r in self.reviews)]
        if self.sandbox == "none":
            parts.append("no sandbox")
        return "; ".join(parts) or "ok"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _capped(checks: list[dict]) -> list[dict]:
    """Messages cut to CHECK_TEXT each and STUDENT_TEXT in all: what a worker can make a check
    say is bounded in every output file."""
    left, out = STUDENT_TEXT, []
    for c in checks:
        message = c["message"] or ""
        if len(message) > CHECK_TEXT:
            message = message[: CHECK_TEXT - 16] + " [... cut short]"
        if len(message) > left:
            message = "(message left out: this submission's messages reached their size limit)"
        left -= len(message)
        out.append({**c, "message": message})
    return out


def results(course: Course, book: Gradebook, labs: list[str]) -> list[StudentResult]:
    """Each student's result over `labs`, as the gradebook holds it (only students it holds)."""
    sandbox = book.settings().get("sandbox", "")
    units = [u for lab in course.labs if lab.name in labs for u in lab.units]
    found = []
    for student in book.students():
        recorded = book.labs(student)
        result = StudentResult(student, labs, {u: 0.0 for u in units}, {u: 0.0 for u in units},
                               sandbox=sandbox.split(":")[0])
        checks, missing = [], []
        for lab in labs:
            if lab not in recorded:
                continue
            checks += book.checks(student, lab)
            summary = recorded[lab]
            reason = summary["problem"] or (f"stopped: it {summary['stopped']}" if summary["stopped"] else None)
            if summary["notebook"] is None:
                missing.append(lab)
            elif reason:
                result.problems.append(f"{lab}: {_short(reason)}")
            result.reviews += summary["reviews"]
            result.execution_time += summary["seconds"]
        if missing:
            result.problems.insert(0, f"no notebook for {', '.join(missing)}")
        if not checks and not result.problems:
            continue  # graded for other labs only
        for c in checks:
            if c["unit"] in result.units:
                result.max_units[c["unit"]] += c["points"]
                result.units[c["unit"]] += c["points"] if c["passed"] else 0.0
        result.checks = _capped(checks)
        found.append(result)
    return found


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 2)


def results_json(result: StudentResult, hidden_visibility: str = "after_published") -> dict:
    tests = [{
        "name": f"{c['unit']}: {c['label']}",
        "score": _number(c["points"] if c["passed"] else 0),
        "max_score": _number(c["points"]),
        "status": "passed" if c["passed"] else "failed",
        "output": "passed" if c["passed"] else c["message"],
        "visibility": hidden_visibility if c["hidden"] else "visible",
    } for c in result.checks]
    return {"score": _number(result.total), "execution_time": round(result.execution_time, 2),
            "output": "All checks ran." if result.status == "ok" else "Not every check could run, or a TA "
            "will look at the code: " + result.status, "tests": tests}


def grades_csv(results: list[StudentResult], course: Course) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *course.units, *CSV_TAIL])
    for r in results:
        writer.writerow([r.student, *(_number(r.units[u]) if u in r.units else "" for u in course.units),
                         _number(r.total), _number(r.max_total), r.status])
    return buffer.getvalue()


def _write(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it already holds it; True when it was written."""
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def write_reports(course: Course, out: Path, book: Gradebook, labs: list[str]) -> list[StudentResult]:
    """Every file of the output folder, from the gradebook; returns the results."""
    found = results(course, book, labs)
    pages = Pages(course, book, labs)
    settings = book.settings()
    hidden = settings.get("hidden_visibility", "after_published")
    for r in found:
        data = json.dumps(results_json(r, hidden), indent=1) + "\n"
        _write(out / r.student / "results.json", data)
        # A page is drawn again only when what it shows changed (pictures take time to draw).
        kept = book.artifacts(r.student)
        key = hashlib.sha256("\0".join([data, r.status, settings.get("course", ""), *labs, *(
            f"{name}:{hashlib.sha256(t.numpy().tobytes()).hexdigest()}" for name, (_, t) in sorted(kept.items()))])
            .encode()).hexdigest()[:32]
        page = out / r.student / "feedback.html"
        try:
            current = f'content="{key}"' in page.read_text()
        except OSError:
            current = False
        if not current:
            _write(page, pages.student(r, key))
    _write(out / "grades.csv", grades_csv(found, course))
    if found:
        _write(out / "summary.html", pages.summary(found))
    return found
