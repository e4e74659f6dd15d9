"""The gradebook: what the checks found, lab by lab, in SQLite beside the reports.

A lab of a student (its checks, what stopped it, the tensors its checks kept, the source of its
units, when it was submitted) is written in one transaction when that lab is done, with a
fingerprint of what was graded (the student's notebooks, the lab's checks, the settings). So a run
killed at any moment leaves only whole labs behind, and the next run grades exactly the labs whose
fingerprint is missing or changed. These are facts: nothing here is edited by hand, and nothing
here is a final grade (final.py makes that from these facts, the course's late policy and the
humans' overrides). The totals each report pass showed are kept too, to say whose total changed.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labs (
    student TEXT NOT NULL, lab TEXT NOT NULL, fingerprint TEXT NOT NULL, graded_at REAL NOT NULL,
    seconds REAL NOT NULL, load_cpu REAL, notebook TEXT, problem TEXT, stopped TEXT, output TEXT, reviews TEXT NOT NULL,
    sandbox TEXT, submitted_at TEXT, due TEXT,
    PRIMARY KEY (student, lab));
CREATE TABLE IF NOT EXISTS checks (
    student TEXT NOT NULL, lab TEXT NOT NULL, position INTEGER NOT NULL, unit TEXT, check_name TEXT,
    label TEXT, cell TEXT, points REAL, hidden INTEGER, passed INTEGER, seconds REAL, cpu_seconds REAL, message TEXT,
    rule INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (student, lab, position));
CREATE TABLE IF NOT EXISTS artifacts (
    student TEXT NOT NULL, lab TEXT NOT NULL, name TEXT NOT NULL, picture TEXT, shape TEXT, data BLOB,
    PRIMARY KEY (student, lab, name));
CREATE TABLE IF NOT EXISTS sources (
    student TEXT NOT NULL, lab TEXT NOT NULL, unit TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (student, lab, unit));
CREATE TABLE IF NOT EXISTS ungraded (student TEXT PRIMARY KEY, problem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reported (student TEXT PRIMARY KEY, total REAL NOT NULL, max_total REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nbgrader (
    student TEXT NOT NULL, lab TEXT NOT NULL, notebook BLOB NOT NULL, PRIMARY KEY (student, lab));
"""
CHECK_FIELDS = ("unit", "check", "label", "cell", "points", "hidden", "passed", "seconds", "cpu_seconds", "message",
                "rule")
LAB_FIELDS = ("load_cpu", "notebook", "problem", "stopped", "output", "sandbox", "submitted_at", "due")
TABLES = ("labs", "checks", "artifacts", "sources")  # a lab's rows, replaced together


class GradebookError(RuntimeError):
    """Gradebooks that cannot be combined or read; the message says why."""


class Gradebook:
    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(labs)")}
        if columns and "sandbox" not in columns:
            self.db.close()
            raise GradebookError(f"{path} was written by an older version of the autograder; grade into a new "
                                 "folder (or delete it to grade everyone again)")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- the run -------------------------------------------------------------------------------
    def settings(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM run"))

    def set_settings(self, settings: dict[str, str]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO run VALUES (?, ?)", settings.items())

    # -- recording -----------------------------------------------------------------------------
    def fingerprints(self) -> dict[tuple[str, str], str]:
        return {(s, lab): f for s, lab, f in self.db.execute("SELECT student, lab, fingerprint FROM labs")}

    def record(self, student: str, lab: str, fingerprint: str, seconds: float, checks: list[dict], summary: dict,
               reviews: list[str], artifacts: list[tuple[str, str | None, np.ndarray]], sources: dict[str, str],
               graded_at: float) -> None:
        """Replace everything known of `student`'s `lab` in one transaction."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for table in TABLES:
                self.db.execute(f"DELETE FROM {table} WHERE student = ? AND lab = ?", (student, lab))
            self.db.execute("DELETE FROM ungraded WHERE student = ?", (student,))
            self.db.executemany(f"INSERT INTO checks VALUES (?, ?, ?, {', '.join('?' * len(CHECK_FIELDS))})",
                                [(student, lab, i, *(c.get(f, 0) if f == "rule" else c[f] for f in CHECK_FIELDS))
                                 for i, c in enumerate(checks)])
            for name, picture, array in artifacts:
                array = np.asarray(array, dtype=np.float32)
                self.db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?)",
                                (student, lab, name, picture, json.dumps(list(array.shape)), array.tobytes()))
            self.db.executemany("INSERT INTO sources VALUES (?, ?, ?, ?)",
                                [(student, lab, unit, source) for unit, source in sources.items()])
            self.db.execute(f"INSERT INTO labs VALUES (?, ?, ?, ?, ?, {', '.join('?' * len(LAB_FIELDS))}, ?)",
                            (student, lab, fingerprint, graded_at, seconds, *(summary.get(f) for f in LAB_FIELDS[:5]),
                             json.dumps(reviews), *(summary.get(f) for f in LAB_FIELDS[5:])))

    def record_ungraded(self, student: str, problem: str) -> None:
        """A student who could not be graded at all (a folder name the output needs), with why."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO ungraded VALUES (?, ?)", (student, problem))

    def record_reported(self, totals: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        """Keep the totals a report pass showed; returns what the previous pass showed."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            before = {s: (t, m) for s, t, m in self.db.execute("SELECT student, total, max_total FROM reported")}
            self.db.execute("DELETE FROM reported")
            self.db.executemany("INSERT INTO reported VALUES (?, ?, ?)",
                                [(s, t, m) for s, (t, m) in totals.items()])
        return before

    # -- nbgrader's exchange: where a lab's notebook was collected from, to put its feedback back ---
    def record_nbgrader(self, student: str, labs: list[str], notebooks: dict[str, Path]) -> None:
        """The submitted notebook of each of `labs` that nbgrader's exchange collected (lab -> path,
        kept as the file system's bytes: any folder name survives); the student's other labs stay."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM nbgrader WHERE student = ? AND lab = ?", [(student, lab) for lab in labs])
            self.db.executemany("INSERT INTO nbgrader VALUES (?, ?, ?)",
                                [(student, lab, os.fsencode(path)) for lab, path in notebooks.items()])

    def nbgrader_notebooks(self, student: str) -> dict[str, Path]:
        rows = self.db.execute("SELECT lab, notebook FROM nbgrader WHERE student = ? ORDER BY lab", (student,))
        return {lab: Path(os.fsdecode(path)) for lab, path in rows}

    # -- reading -------------------------------------------------------------------------------
    def students(self) -> list[str]:
        return [s for (s,) in self.db.execute(
            "SELECT student FROM labs UNION SELECT student FROM ungraded ORDER BY student")]

    def ungraded(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT student, problem FROM ungraded"))

    def graded_labs(self) -> list[str]:
        """Every lab some student of this gradebook was graded on."""
        return [lab for (lab,) in self.db.execute("SELECT DISTINCT lab FROM labs ORDER BY lab")]

    def graded_since(self, moment: float) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT student, lab FROM labs WHERE graded_at >= ?", (moment,)))

    def labs(self, student: str) -> dict[str, dict]:
        rows = self.db.execute(f"SELECT lab, seconds, graded_at, reviews, {', '.join(LAB_FIELDS)} FROM labs "
                               "WHERE student = ? ORDER BY lab", (student,))
        return {lab: {"seconds": seconds, "graded_at": graded_at, "reviews": json.loads(reviews),
                      **dict(zip(LAB_FIELDS, rest))} for lab, seconds, graded_at, reviews, *rest in rows}

    def checks(self, student: str, lab: str) -> list[dict]:
        columns = ", ".join("check_name" if f == "check" else f for f in CHECK_FIELDS)
        rows = self.db.execute(f"SELECT {columns} FROM checks WHERE student = ? AND lab = ? ORDER BY position",
                               (student, lab))
        return [dict(zip(CHECK_FIELDS, row), lab=lab) for row in rows]

    def unit_passed(self, student: str, unit: str) -> bool | None:
        """Whether every check of `unit` passed (None: it was not graded)."""
        row = self.db.execute("SELECT COUNT(*), SUM(passed) FROM checks WHERE student = ? AND unit = ?",
                              (student, unit)).fetchone()
        return None if not row[0] else row[0] == row[1]

    def artifacts(self, student: str) -> dict[str, tuple[str | None, np.ndarray]]:
        rows = self.db.execute("SELECT name, picture, shape, data FROM artifacts WHERE student = ? ORDER BY lab, name",
                               (student,))
        return {name: (picture, np.frombuffer(data, dtype=np.float32).reshape(json.loads(shape)).copy())
                for name, picture, shape, data in rows}

    def sources(self, unit: str) -> dict[str, str]:
        """student -> the source of their `unit`, as graded."""
        return dict(self.db.execute("SELECT student, source FROM sources WHERE unit = ? ORDER BY student", (unit,)))

    # -- combining -----------------------------------------------------------------------------
    def merge_from(self, other: Path) -> None:
        """Copy every lab of another gradebook (a shard) into this one; refused unless both were
        graded with the same settings (course, checks, labs, sandbox level)."""
        theirs = Gradebook(other)
        try:
            mine, their_settings = self.settings(), theirs.settings()
        finally:
            theirs.close()
        if mine and mine != their_settings:
            differ = sorted(k for k in set(mine) | set(their_settings) if mine.get(k) != their_settings.get(k))
            raise GradebookError(f"{other} was graded with other settings ({', '.join(differ)}) than the parts "
                                 "before it: merge only parts of one grading run")
        self.set_settings(their_settings)
        self.db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                for table in TABLES:
                    self.db.execute(f"DELETE FROM {table} WHERE (student, lab) IN (SELECT student, lab FROM other.labs)")
                    self.db.execute(f"INSERT INTO {table} SELECT * FROM other.{table}")
                self.db.execute("INSERT OR REPLACE INTO ungraded SELECT * FROM other.ungraded")
                self.db.execute("INSERT OR REPLACE INTO nbgrader SELECT * FROM other.nbgrader")
        finally:
            self.db.execute("DETACH DATABASE other")
