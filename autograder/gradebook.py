"""The gradebook: every check of every submission, in SQLite beside the reports.

A student's record (checks, labs, kept tensors) is written in one transaction when the last of
their labs is done, with a fingerprint of what was graded (their notebooks, and the course's
checks and source). So a run killed at any moment leaves only whole students behind, and the
next run grades exactly those whose fingerprint is missing or changed. Reports are written from
the gradebook, never from memory.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import torch

from .course import Course
from .submissions import Student

SCHEMA = """
CREATE TABLE IF NOT EXISTS students (
    student TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, seconds REAL NOT NULL, graded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checks (
    student TEXT NOT NULL, position INTEGER NOT NULL, lab TEXT, unit TEXT, check_name TEXT, label TEXT,
    points REAL, hidden INTEGER, passed INTEGER, seconds REAL, message TEXT, PRIMARY KEY (student, position));
CREATE TABLE IF NOT EXISTS labs (
    student TEXT NOT NULL, lab TEXT NOT NULL, problem TEXT, stopped TEXT, output TEXT, PRIMARY KEY (student, lab));
CREATE TABLE IF NOT EXISTS artifacts (
    student TEXT NOT NULL, name TEXT NOT NULL, dtype TEXT, shape TEXT, data BLOB, PRIMARY KEY (student, name));
"""
CHECK_FIELDS = ("lab", "unit", "check", "label", "points", "hidden", "passed", "seconds", "message")
LAB_FIELDS = ("lab", "problem", "stopped", "output")
REFERENCE = "(reference)"  # owner of the reference solution's tensors (no row in students)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def course_fingerprint(course: Course, *settings: str) -> str:
    """What grading depends on besides the submission: the grader's code, the checks, the source
    exercises, and `settings` (limits, device)."""
    code = sorted(Path(__file__).parent.glob("*.py")) + sorted(course.checks.glob("*.py"))
    digest = _digest(code + [lab.exercise for lab in course.labs])
    return hashlib.sha256("\0".join((digest, *settings)).encode()).hexdigest()


def fingerprint(course_print: str, student: Student) -> str:
    return hashlib.sha256((course_print + _digest(list(student.notebooks))).encode()).hexdigest()


class Gradebook:
    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def fingerprints(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT student, fingerprint FROM students"))

    def record(self, student: str, fingerprint: str, seconds: float, checks: list[dict], labs: list[dict],
               artifacts: dict[str, torch.Tensor], graded_at: float) -> None:
        """Replace everything known of `student` in one transaction."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for table in ("students", "checks", "labs", "artifacts"):
                self.db.execute(f"DELETE FROM {table} WHERE student = ?", (student,))
            self.db.executemany(f"INSERT INTO checks VALUES (?, ?, {', '.join('?' * len(CHECK_FIELDS))})",
                                [(student, i, *(c[f] for f in CHECK_FIELDS)) for i, c in enumerate(checks)])
            self.db.executemany("INSERT INTO labs VALUES (?, ?, ?, ?, ?)",
                                [(student, *(lab.get(f) for f in LAB_FIELDS)) for lab in labs])
            for name, t in artifacts.items():
                self._insert_artifact(student, name, t)
            self.db.execute("INSERT INTO students VALUES (?, ?, ?, ?)", (student, fingerprint, seconds, graded_at))

    def graded_at(self) -> dict[str, float]:
        return dict(self.db.execute("SELECT student, graded_at FROM students"))

    def graded_since(self, moment: float) -> list[str]:
        return [s for (s,) in self.db.execute("SELECT student FROM students WHERE graded_at >= ?", (moment,))]

    def students(self) -> list[str]:
        return [s for (s,) in self.db.execute("SELECT student FROM students ORDER BY student")]

    def checks(self, student: str) -> list[dict]:
        rows = self.db.execute(f"SELECT {', '.join(f if f != 'check' else 'check_name' for f in CHECK_FIELDS)} "
                               "FROM checks WHERE student = ? ORDER BY position", (student,))
        return [dict(zip(CHECK_FIELDS, row), student=student) for row in rows]

    def labs(self, student: str) -> list[dict]:
        rows = self.db.execute(f"SELECT {', '.join(LAB_FIELDS)} FROM labs WHERE student = ? ORDER BY lab", (student,))
        return [dict(zip(LAB_FIELDS, row), student=student) for row in rows]

    def seconds(self, student: str) -> float:
        row = self.db.execute("SELECT seconds FROM students WHERE student = ?", (student,)).fetchone()
        return row[0] if row else 0.0

    def _insert_artifact(self, student: str, name: str, t: torch.Tensor) -> None:
        array = t.detach().cpu().float().numpy()
        self.db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?)",
                        (student, name, "float32", json.dumps(list(array.shape)), array.tobytes()))

    def keep(self, student: str, name: str, t: torch.Tensor) -> None:
        with self.db:
            self._insert_artifact(student, name, t)

    def artifact(self, student: str, name: str) -> torch.Tensor | None:
        row = self.db.execute("SELECT shape, data FROM artifacts WHERE student = ? AND name = ?",
                              (student, name)).fetchone()
        if row is None:
            return None
        return torch.from_numpy(np.frombuffer(row[1], dtype=np.float32).reshape(json.loads(row[0])).copy())

    def merge_from(self, other: Path) -> None:
        """Copy every student of another gradebook (a shard) into this one."""
        self.db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                for table in ("students", "checks", "labs", "artifacts"):
                    self.db.execute(f"DELETE FROM {table} WHERE student IN (SELECT student FROM other.students)")
                    self.db.execute(f"INSERT INTO {table} SELECT * FROM other.{table} "
                                    "WHERE student IN (SELECT student FROM other.students)")
        finally:
            self.db.execute("DETACH DATABASE other")
