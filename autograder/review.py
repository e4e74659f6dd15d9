"""The review queue: every row a person should look at, one entry each, and how to act on it.

Made from the final grades and the gradebook by every report pass (summary.html shows it at the
top, `autograder review DIR` prints it): `review:` flags (a unit that reaches outside plain code, a
trainer that branches on its data's size, an accuracy beyond what the recipe reaches), labs that
were stopped or could not run, units that lost points only on rule checks, units nearly identical
to another student's (similarity.py), and late work. It informs; it changes no points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import rules, similarity
from .course import Course
from .final import Final
from .gradebook import Gradebook

ACT = {
    "review": "read the unit (summary.html shows it with the flagged lines); to change its points: "
              "autograder override DIR STUDENT UNIT POINTS --reason TEXT",
    "rules": "the unit works but breaks a rule of the lab; to give the points anyway: "
             "autograder override DIR STUDENT UNIT POINTS --reason TEXT",
    "stopped": "read the messages in DIR/STUDENT/feedback.html; after a fix on the grader's side: "
               "autograder grade SUBMISSIONS --out DIR --regrade --student STUDENT",
    "similar": "compare the units side by side in summary.html; similarity changes no points",
    "late": "an extension: a line STUDENT,LAB,DAYS in a CSV, then autograder report DIR --extensions FILE",
}


@dataclass(frozen=True)
class Entry:
    student: str
    kind: str  # a key of ACT
    text: str  # one line
    unit: str | None = None
    lines: tuple[int, ...] = ()  # of the unit's source, flagged
    messages: tuple[str, ...] = field(default_factory=tuple)  # "<check>: <message>" of the failing checks


def queue(course: Course, book: Gradebook, finals: list[Final]) -> list[Entry]:
    """Every entry, student by student in the order of `finals`, similar units last."""
    entries = []
    provided = {lab.name: rules.provided_names(lab.setup) for lab in course.labs}
    lab_of = {unit: lab.name for lab in course.labs for unit in lab.units}
    for f in finals:
        failing = {}
        for c in f.checks:
            if not c["passed"]:
                failing.setdefault(c["unit"], []).append(c)
        for flag in f.reviews:
            unit = flag.split()[0]
            source = book.sources(unit).get(f.student, "") if unit in lab_of else ""
            lines = rules.facts(source, provided[lab_of[unit]], rules.policy(course)).lines if source else ()
            entries.append(Entry(f.student, "review", f"review: {flag}", unit if unit in lab_of else None, lines,
                                 tuple(f"{c['label']}: {c['message']}" for c in failing.get(unit, []))))
        for problem in f.problems:
            if not problem.startswith("no notebook for"):
                entries.append(Entry(f.student, "stopped", problem))
        for unit, failed in failing.items():
            if all(c.get("rule") for c in failed) and not any(flag.split()[0] == unit for flag in f.reviews):
                lost = sum(c["points"] for c in failed)
                entries.append(Entry(f.student, "rules", f"{unit} lost {lost:g} point{'s' * (lost != 1)} on rule checks "
                                     f"only ({'; '.join(c['label'] for c in failed)})", unit,
                                     messages=tuple(f"{c['label']}: {c['message']}" for c in failed)))
        entries += [Entry(f.student, "late", change) for change in f.changes if change.startswith("late:")]
    stubs = course.stubs()
    for unit in course.units:
        sources = book.sources(unit)
        for group in similarity.similar(sources, stubs.get(unit, "")):
            for student in group.students:
                others = ", ".join(s for s in group.students if s != student)
                entries.append(Entry(student, "similar", f"similar: {unit} with {others} "
                                     f"(score {group.score:.2f})", unit))
    return entries


def render(entries: list[Entry]) -> str:
    """The queue as `autograder review` prints it: one line each, then how to act on each kind."""
    if not entries:
        return "nothing to review"
    lines = [f"{e.student}: {e.text}" for e in entries]
    lines.append("")
    lines += [f"{kind}: {ACT[kind]}" for kind in ACT if any(e.kind == kind for e in entries)]
    return "\n".join(lines)
