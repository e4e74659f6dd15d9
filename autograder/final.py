"""The final grade: one pure function (`final_grade`) of three inputs that never overwrite one another.

1. Facts: what the checks found, as the gradebook holds them (autograded, never edited by hand).
2. Policy: the course's due dates and late rule (course.toml) and the extensions (a CSV).
3. Overrides: the humans' decisions, `DIR/overrides.csv`.

Every report pass (after `grade`, `merge`, `report`, `override`) applies it, so a regrade, which
replaces facts only, keeps the policy and the overrides, and a changed due date or extension needs
a report pass, not a regrade. Points: autograded, then overrides, then the late penalty. This
module also reads the policy and the overrides, and says in one line what is wrong with them.
"""
from __future__ import annotations

import csv
import datetime
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

OVERRIDES = "overrides.csv"
OVERRIDE_COLUMNS = ["student", "unit", "points", "reason", "by", "at"]
EXTENSIONS = "extensions.csv"  # the extensions the last `--extensions FILE` gave, kept with the output
TOTAL = "total"  # an override's unit for the whole grade
DAY = datetime.timedelta(days=1)


class PolicyError(ValueError):
    """The late policy, the extensions or the overrides are not usable; the message says where."""


# ---- the inputs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Facts:
    """One student's facts from the gradebook: per lab what was recorded (problem, stopped,
    notebook, reviews, sandbox, submitted_at, due), the checks, or why they were not graded."""
    student: str
    labs: dict[str, dict]
    checks: list[dict]
    ungraded: str | None = None


@dataclass(frozen=True)
class Policy:
    due: dict[str, datetime.datetime] = field(default_factory=dict)  # lab -> when it is due
    per_day: float = 0.0  # fraction of a lab's points lost per day or part of a day
    max_days: float = math.inf  # later than this, the lab scores 0
    grace_minutes: float = 0.0
    extensions: dict[tuple[str, str], float] = field(default_factory=dict)  # (student, lab) -> days


@dataclass(frozen=True)
class Override:
    student: str
    unit: str  # a unit, or "total"
    points: float
    reason: str
    by: str = ""
    at: str = ""
    line: int = 0  # of overrides.csv, where it was read from one


# ---- the output ------------------------------------------------------------------------------

@dataclass
class Final:
    """A student's final grade over the labs of the output folder."""
    student: str
    labs: list[str]
    auto: dict[str, float]  # unit -> autograded points
    units: dict[str, float]  # unit -> final points
    max_units: dict[str, float]
    total: float
    max_total: float
    late_days: float = 0.0
    late_penalty: float = 0.0
    problems: list[str] = field(default_factory=list)  # what kept checks from running
    reviews: list[str] = field(default_factory=list)  # where a TA should look
    changes: list[str] = field(default_factory=list)  # what changed the autograded points, and why
    notes: list[str] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        parts = [*self.problems, *(f"review: {r}" for r in self.reviews), *self.changes, *self.notes]
        return "; ".join(parts) or "ok"


def _number(x: float) -> str:
    return f"{x:g}" if float(x).is_integer() else f"{x:.2f}".rstrip("0")


def _short(text: str, where: str, limit: int = 160) -> str:
    """One line; where it has to be cut, cut between words and say where the rest is."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + f" ... (the rest in {where})"


def late_days(submitted: datetime.datetime, due: datetime.datetime, grace_minutes: float) -> int:
    """Days late, a part of a day counting as a day; 0 when on time or within the grace."""
    late = submitted - due - datetime.timedelta(minutes=grace_minutes)
    return 0 if late <= datetime.timedelta(0) else math.ceil(late / DAY)


def final_grade(units_of: dict[str, tuple[str, ...]], unit_points: dict[str, float], facts: Facts,
                policy: Policy, overrides: list[Override]) -> Final:
    """The final grade of one student over the labs `units_of` names (lab -> its units, in the
    course's order), whose units are worth `unit_points` where the facts hold no checks. Pure: the
    same inputs give the same grade."""
    units = [u for lab_units in units_of.values() for u in lab_units]
    result = Final(facts.student, list(units_of), {u: 0.0 for u in units}, {u: 0.0 for u in units},
                   {u: unit_points.get(u, 0.0) for u in units}, 0.0, 0.0)
    result.max_total = sum(result.max_units.values())
    if facts.ungraded:
        result.problems.append(facts.ungraded)
        return result
    where = f"{facts.student}/feedback.html"
    graded = {c["unit"] for c in facts.checks}
    for u in graded & set(units):
        result.max_units[u] = 0.0
    for c in facts.checks:
        if c["unit"] in result.auto:
            result.max_units[c["unit"]] += c["points"]
            result.auto[c["unit"]] += c["points"] if c["passed"] else 0.0
    result.max_total = sum(result.max_units.values())
    result.checks = facts.checks
    missing = [lab for lab in units_of if facts.labs.get(lab, {}).get("notebook") is None]
    if missing:
        result.problems.append(f"no notebook for {', '.join(missing)}")
    for lab in units_of:
        recorded = facts.labs.get(lab)
        if recorded is None:
            continue
        reason = recorded["problem"] or (f"stopped: it {recorded['stopped']}" if recorded["stopped"] else None)
        if recorded["notebook"] is not None and reason:
            result.problems.append(_short(f"{lab}: {reason}", where))
        result.reviews += [r for r in recorded["reviews"] if r not in result.reviews]
        if recorded.get("sandbox") == "none" and "no sandbox" not in result.notes:
            result.notes.append("no sandbox")

    # Overrides: the latest of each (student, unit) replaces the autograded points.
    final = dict(result.auto)
    latest = {o.unit: o for o in overrides if o.student == facts.student}
    for unit, o in latest.items():
        if unit in final:
            result.changes.append(f"overridden: {unit} {_number(final[unit])} -> {_number(o.points)} ({o.reason})")
            final[unit] = o.points

    # The late penalty, lab by lab: a fraction of the lab's points per day late.
    unknown = False
    for lab, lab_units in units_of.items():
        recorded = facts.labs.get(lab) or {}
        due = _moment(recorded.get("due")) or policy.due.get(lab)
        if due is None or recorded.get("notebook") is None:
            continue
        submitted = _moment(recorded.get("submitted_at"))
        if submitted is None:
            unknown = True
            continue
        due += policy.extensions.get((facts.student, lab), 0.0) * DAY
        days = late_days(submitted, due, policy.grace_minutes)
        if days == 0:
            continue
        fraction = 1.0 if days > policy.max_days else min(1.0, policy.per_day * days)
        penalty = 0.0
        for u in lab_units:
            lost = min(final[u], fraction * result.max_units[u])
            final[u] -= lost
            penalty += lost
        result.late_days += days
        result.late_penalty += penalty
        result.changes.append(f"late: {lab} {days} day{'s' * (days > 1)}" + (
            f" (over {_number(policy.max_days)}: scores 0)" if days > policy.max_days else "")
            + f" (-{_number(penalty)})")
    if unknown:
        result.notes.append("submission time unknown: no late penalty")
    result.units = final
    result.total = sum(final.values())
    if TOTAL in latest:
        o = latest[TOTAL]
        before = result.total + result.late_penalty
        result.total = max(0.0, o.points - result.late_penalty)
        result.changes.insert(0, f"overridden: total {_number(before)} -> {_number(o.points)} ({o.reason})")
    return result


def _moment(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text)


# ---- reading the policy and the overrides ----------------------------------------------------

def read_policy(config: dict, labs: list[str], extensions: Path | None, where: str = "course.toml") -> Policy:
    """The late policy of course.toml (`[labs.<lab>] due`, `[late]`) and the extensions CSV."""
    due = {}
    for lab, table in (config.get("labs") or {}).items():
        if lab not in labs:
            raise PolicyError(f"{where}: [labs.{lab}]: no such lab (the labs are {', '.join(labs)})")
        if "due" in table:
            due[lab] = _due(table["due"], f"{where}: [labs.{lab}] due")
    late = config.get("late") or {}
    unknown = set(late) - {"per_day", "max_days", "grace_minutes"}
    if unknown:
        raise PolicyError(f"{where}: [late] has unknown keys {', '.join(sorted(unknown))} "
                          "(per_day, max_days, grace_minutes)")
    numbers = {}
    for key, default in (("per_day", 0.0), ("max_days", math.inf), ("grace_minutes", 0.0)):
        value = late.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PolicyError(f"{where}: [late] {key} must be a number, 0 or more, not {value!r}")
        numbers[key] = float(value)
    if numbers["per_day"] > 1:
        raise PolicyError(f"{where}: [late] per_day is a fraction of the lab's points (0.1 is 10% a day), "
                          f"not {numbers['per_day']:g}")
    return Policy(due, extensions=read_extensions(extensions, labs) if extensions else {}, **numbers)


def _due(value, where: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        try:
            moment = datetime.datetime.fromisoformat(str(value))
        except ValueError:
            raise PolicyError(f"{where}: {value!r} is not a date and time (ISO 8601, e.g. "
                              "2026-10-07T23:59:00-04:00)") from None
    if moment.tzinfo is None:
        raise PolicyError(f"{where}: {value!r} names no time zone; add one, e.g. -04:00 or Z")
    return moment


def _rows(path: Path, columns: list[str]) -> list[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise PolicyError(f"{path}: the columns are {','.join(columns)}; missing {', '.join(missing)}")
            return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PolicyError(f"{path}: cannot be read ({e})") from None


def read_extensions(path: Path, labs: list[str]) -> dict[tuple[str, str], float]:
    """student,lab,days: extra days for a student's lab."""
    found = {}
    for line, row in _rows(path, ["student", "lab", "days"]):
        if row["lab"] not in labs:
            raise PolicyError(f"{path} line {line}: no lab {row['lab']!r}")
        try:
            days = float(row["days"])
        except (TypeError, ValueError):
            raise PolicyError(f"{path} line {line}: days {row['days']!r} is not a number") from None
        found[(row["student"], row["lab"])] = days
    return found


def read_overrides(folder: Path) -> list[Override]:
    """The overrides of an output folder, in the order they were made (none: no file)."""
    path = folder / OVERRIDES
    if not path.is_file():
        return []
    found = []
    for line, row in _rows(path, OVERRIDE_COLUMNS[:4]):
        try:
            points = float(row["points"])
        except (TypeError, ValueError):
            raise PolicyError(f"{path} line {line}: points {row['points']!r} is not a number") from None
        found.append(Override(row["student"], row["unit"], points, row["reason"] or "", row.get("by") or "",
                              row.get("at") or "", line))
    return found


def check_overrides(overrides: list[Override], maxima: dict[str, dict[str, float]], where: Path) -> None:
    """Each override names a student of the folder and one of their graded units (or total), with
    points between 0 and what the unit is worth; `maxima`: student -> unit -> points possible."""
    for o in overrides:
        at = f"{where} line {o.line}: " if o.line else ""
        if o.student not in maxima:
            raise PolicyError(f"{at}no student {o.student!r} in this output folder")
        possible = maxima[o.student]
        if o.unit != TOTAL and o.unit not in possible:
            raise PolicyError(f"{at}{o.student!r} has no graded unit {o.unit!r} "
                              f"(graded: {', '.join(possible) or 'none'}, or {TOTAL})")
        top = sum(possible.values()) if o.unit == TOTAL else possible[o.unit]
        if not 0 <= o.points <= top:
            raise PolicyError(f"{at}{o.points:g} points for {o.unit} of {o.student!r}; "
                              f"it is worth 0 to {top:g}")
        if not o.reason.strip():
            raise PolicyError(f"{at}an override needs a reason")


def add_override(folder: Path, override: Override) -> None:
    """Append one override to the folder's overrides.csv (made with its header if new)."""
    path = folder / OVERRIDES
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(OVERRIDE_COLUMNS)
        writer.writerow([override.student, override.unit, f"{override.points:g}", override.reason, override.by,
                         override.at])
        f.flush()
        os.fsync(f.fileno())
