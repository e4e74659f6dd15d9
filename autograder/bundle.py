"""`autograder bundle`: the same grader as a Gradescope autograder zip, for the course or one lab.

Gradescope unzips the bundle into /autograder/source, runs setup.sh once to build the image, and
run_autograder for each submission, which must leave /autograder/results/results.json. setup.sh
builds everything a run needs once: the package, the data, the reference artifacts (each check's
CPU cost and the reference's pictures; grading them also warms every cache), compiled bytecode,
and lays the course out readable by root only (a worker at the "uid" level has a uid of its
own). run_autograder grades /autograder/submission as one student, whatever its layout, with the
very same checks, prints the grader's log, and copies the student's results.json. The zip is
reproducible: fixed order and timestamps.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from .course import CONFIG, Course, CourseError

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
root="${AUTOGRADER_ROOT:-/autograder}"
apt-get update
apt-get install -y python3 python3-venv python3-pip
apt-get install -y dataset-DATASET || true  # Debian's package, where there is one; else a download
python3 -m venv "$root/venv"
"$root/venv/bin/pip" install "$root/source"
"$root/venv/bin/autograder" --course "$root/source" data DATASET
# Grade the reference once: each check's CPU cost (its time limit) and the reference's pictures,
# and every cache (bytecode, fonts) warm before the first student.
"$root/venv/bin/autograder" --course "$root/source" release --artifacts-only
"$root/venv/bin/python" -m compileall -q "$root/source" "$root/venv" || true
chmod -R go-rwx "$root/source"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade /autograder/submission, leave results.json.
# A fault of the grader's (a broken image, a sandbox that cannot be set up) is not the student's 0:
# then this exits non-zero, Gradescope shows that the autograder failed, and staff can rerun it.
set -uo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
python="${AUTOGRADER_PYTHON:-$root/venv/bin/python}"
out="$(mktemp -d)"
mkdir -p "$root/results"
chmod 700 "$root/results" "$out"
metadata=()
[ -f "$root/submission_metadata.json" ] && metadata=(--gradescope-metadata "$root/submission_metadata.json")
# A worker may use 1 GiB (the reference needs far less), so that a student's memory hog is stopped
# by the grader with a message before the container's own limit kills the whole run.
"$python" -m autograder --course "$root/source" grade "$root/submission" --as student --out "$out" \\
    --memory-gib 1 --require-artifacts "${metadata[@]}" LAB_OPTION 2>&1
status=$?
if [ "$status" -eq 0 ] && [ -f "$out/student/results.json" ]; then
    cp "$out/student/results.json" "$root/results/results.json"
else
    echo "autograder: the autograder itself failed (exit $status), not the submission: its log is above." \\
         "Fix the autograder (rebuild the image if setup.sh failed), then rerun the submission on Gradescope."
    status=1
fi
rm -rf "$out"
exit "$status"
"""

_PACKAGE_FILES = ("pyproject.toml", "README.md", CONFIG)


def _members(course: Course) -> list[tuple[str, Path]]:
    package = course.root / "autograder"
    files = [(f"autograder/{p.relative_to(package)}", p) for p in sorted(package.rglob("*.py"))]
    files += [(f"source/{p.relative_to(course.source)}", p) for p in sorted(course.source.rglob("*"))
              if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    files += [(name, course.root / name) for name in _PACKAGE_FILES if (course.root / name).is_file()]
    return files


def bundle(course: Course, out: Path, lab: str | None = None, hidden_visibility: str = "after_published",
           leaderboard: bool = False) -> Path:
    """Write the Gradescope autograder zip to `out`; with `lab`, it grades that lab alone (without,
    every lab: a student who hands in fewer scores 0 on the others)."""
    if not (course.root / "pyproject.toml").is_file():
        raise CourseError(f"{course.root}: no pyproject.toml; bundle from the course's checkout")
    if lab is not None:
        course.lab(lab)  # an unknown lab is a one-line error
    labs = [lab] if lab else [other.name for other in course.labs]
    options = [*(f"--lab {name}" for name in labs), f"--hidden-visibility {hidden_visibility}"]
    run = RUN.replace("LAB_OPTION", " ".join(options + (["--leaderboard"] if leaderboard else [])))
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP.replace("DATASET", course.dataset)), ("run_autograder", run)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o755 << 16
            z.writestr(info, text)
        for name, path in _members(course):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return out
