"""One report pass, from the gradebook: each student's final grade (final.py), then grades.csv,
each student's results.json (Gradescope's format) and feedback.html, and summary.html with the
review queue. It runs after grading, after a merge, after an override and on `autograder report`,
and is the only writer of those files; a file is rewritten only when its content changed, and
written beside its target then renamed, so a crash never leaves half a file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import review
from .course import Course
from .final import EXTENSIONS, OVERRIDES, Facts, Final, check_overrides, final_grade, read_overrides, read_policy
from .gradebook import Gradebook
from .submissions import NBGRADER_FILES, nbgrader_feedback

GRADEBOOK = "gradebook.sqlite"
CSV_TAIL = ["total", "max_total", "late_days", "late_penalty", "status"]
CHECK_TEXT, STUDENT_TEXT = 2000, 16000  # characters of messages a check, a student
# The output folder's own names: a student folder named so gets a row, not a folder of files.
RESERVED = {"grades.csv", "summary.html", GRADEBOOK, f"{GRADEBOOK}-wal", f"{GRADEBOOK}-shm", f"{GRADEBOOK}-journal",
            OVERRIDES, EXTENSIONS}


@dataclass
class Report:
    """What a report pass made: every student's final grade, the review queue, and whose total
    changed since the previous pass (student, old, new)."""
    finals: list[Final]
    queue: list[review.Entry] = field(default_factory=list)
    changed: list[tuple[str, float, float]] = field(default_factory=list)


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


def graded_labs(course: Course, book: Gradebook) -> list[str]:
    """The labs of the output folder: every lab some student was graded on, in the course's order."""
    held = set(book.graded_labs())
    return [lab.name for lab in course.labs if lab.name in held]


def facts(book: Gradebook, student: str, labs: list[str]) -> Facts:
    ungraded = book.ungraded().get(student)
    recorded = {lab: s for lab, s in book.labs(student).items() if lab in labs}
    checks = [c for lab in labs if lab in recorded for c in book.checks(student, lab)]
    return Facts(student, recorded, _capped(checks), ungraded)


def finals(course: Course, book: Gradebook, out: Path) -> list[Final]:
    """Every student's final grade, from the gradebook, the course's policy and the overrides."""
    labs = graded_labs(course, book)
    units_of = {lab.name: lab.units for lab in course.labs if lab.name in labs}
    policy = read_policy(course.config, [lab.name for lab in course.labs],
                         out / EXTENSIONS if (out / EXTENSIONS).is_file() else None, str(course.root / "course.toml"))
    overrides = read_overrides(out)
    points = course.unit_points()
    found = [final_grade(units_of, points, facts(book, student, labs), policy, []) for student in book.students()]
    check_overrides(overrides, {f.student: {u: f.max_units[u] for u in f.auto if f.student not in book.ungraded()}
                                for f in found}, out / OVERRIDES)
    if not overrides:
        return found
    return [final_grade(units_of, points, facts(book, f.student, labs), policy, overrides) for f in found]


def submitted_labs(result: Final) -> set[str]:
    """The labs a student handed in a notebook for."""
    missing = next((p for p in result.problems if p.startswith("no notebook for ")), "")
    return {lab for lab in result.labs if lab not in missing.removeprefix("no notebook for ").split(", ")}


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 2)


def results_json(result: Final, hidden_visibility: str = "after_published", leaderboard: bool = False,
                 kept: dict | None = None, seconds: float = 0.0) -> dict:
    tests = [{
        "name": f"{c['unit']}: {c['label']}",
        "score": _number(c["points"] if c["passed"] else 0),
        "max_score": _number(c["points"]),
        "status": "passed" if c["passed"] else "failed",
        "output": "passed" if c["passed"] else c["message"],
        "visibility": hidden_visibility if c["hidden"] else "visible",
    } for c in result.checks]
    lines = [f"Autograded {_number(sum(result.auto.values()))}, final {_number(result.total)} of "
             f"{_number(result.max_total)}."]
    lines += [f"{change[0].upper()}{change[1:]}." for change in result.changes]
    if result.problems or result.reviews:
        lines.append("Not every check could run, or a TA will look at the code: "
                     + "; ".join([*result.problems, *(f"review: {r}" for r in result.reviews)]))
    data = {"score": _number(result.total), "execution_time": round(seconds, 2), "output": " ".join(lines),
            "tests": tests}
    if leaderboard:
        accuracies = {name.split()[0]: float(value.reshape(-1)[0]) for name, (_, value) in (kept or {}).items()
                      if name.endswith("accuracy")}
        data["leaderboard"] = [{"name": "test accuracy" if len(accuracies) == 1 else f"test accuracy ({trainer})",
                                "value": round(value, 4), "order": "desc"} for trainer, value in sorted(accuracies.items())]
    return data


def grades_csv(results: list[Final], course: Course) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *course.units, *CSV_TAIL])
    for r in results:
        writer.writerow([r.student, *(_number(r.units[u]) if u in r.units else "" for u in course.units),
                         _number(r.total), _number(r.max_total), _number(r.late_days), _number(r.late_penalty),
                         r.status])
    return buffer.getvalue()


def write(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it already holds it; True when it was written."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def keep_extensions(out: Path, extensions: Path | None, course: Course) -> None:
    """`--extensions FILE`: checked, then kept in the output folder for every later report pass."""
    if extensions is None:
        return
    read_policy(course.config, [lab.name for lab in course.labs], extensions)
    out.mkdir(parents=True, exist_ok=True)
    if extensions.resolve() != (out / EXTENSIONS).resolve():
        shutil.copyfile(extensions, out / EXTENSIONS)


def write_reports(course: Course, out: Path, book: Gradebook, draw: bool = True) -> Report:
    """Every file of the output folder, from the gradebook (without `draw`, no page is drawn: only
    grades.csv and results.json); returns what it showed."""
    from .feedback import Pages

    found = finals(course, book, out)
    settings = book.settings()
    hidden, leaderboard = settings.get("hidden_visibility", "after_published"), settings.get("leaderboard") == "True"
    queue = review.queue(course, book, found)
    pages = Pages(course, book, graded_labs(course, book)) if draw else None
    drawing = hashlib.sha256(b"".join(path.read_bytes() for path in (Path(__file__).with_name("feedback.py"),
                                                                    course.checks / "pictures.py")
                                      if path.is_file())).hexdigest()
    for r in found:
        if r.student in RESERVED or r.student.startswith("."):
            continue  # its row says why it was not graded; the folder's name is the output's own
        kept = book.artifacts(r.student)
        seconds = sum(lab["seconds"] for lab in book.labs(r.student).values())
        data = json.dumps(results_json(r, hidden, leaderboard, kept, seconds), indent=1) + "\n"
        write(out / r.student / "results.json", data)
        # A page is drawn again only when what it shows, or how, changed (pictures take time to draw).
        key = hashlib.sha256("\0".join([data, r.status, settings.get("course", ""), drawing, *r.labs, *(
            f"{name}:{hashlib.sha256(t.tobytes()).hexdigest()}" for name, (_, t) in sorted(kept.items()))])
            .encode()).hexdigest()[:32]
        page = out / r.student / "feedback.html"
        try:
            current = f'content="{key}"' in page.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = False
        if pages is not None and not current:
            write(page, pages.student(r, key))
    before = book.record_reported({r.student: (r.total, r.max_total) for r in found})
    changed = [(r.student, before[r.student][0], r.total) for r in found
               if r.student in before and before[r.student][0] != r.total]
    write(out / "grades.csv", grades_csv(found, course))
    if found and pages is not None:
        write(out / "summary.html", pages.summary(found, queue, changed))
    for r in (r for r in found if pages is not None and r.student not in RESERVED and not r.student.startswith(".")):
        nbgrader_feedback_pages(book, r.student, out / r.student / "feedback.html")
    return Report(found, queue, changed)


def nbgrader_feedback_pages(book: Gradebook, student: str, page: Path) -> None:
    """The student's page where `nbgrader release_feedback` looks for it, for each notebook that
    nbgrader's exchange collected, beside a copy of that submission's timestamp and secret (with
    which release_feedback names the page so that only that submission's `fetch_feedback` finds
    it). Written last: a course root that cannot be written to costs no other output."""
    text = None
    for notebook in book.nbgrader_notebooks(student).values():
        target = nbgrader_feedback(notebook)
        if target is None:
            continue  # the submission is no longer where it was collected
        for name in NBGRADER_FILES:
            with open(notebook.parent / name, encoding="utf-8", errors="replace") as f:
                write(target.parent / name, f.read(4096))  # nbgrader's own are a line each
        text = text if text is not None else page.read_text(encoding="utf-8")
        write(target, text)
