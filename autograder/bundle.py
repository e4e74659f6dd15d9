"""`autograder bundle`: the same grader as a Gradescope autograder zip, for the course or one lab.

Gradescope unzips the bundle into /autograder/source, runs setup.sh once to build the image, and
run_autograder for each submission, which must leave /autograder/results/results.json. setup.sh
builds everything a run needs once: a venv holding only what grading imports, with PyTorch's CPU
build ($AUTOGRADER_TORCH_INDEX names another index), the data (the distribution's package, else a
download), the reference artifacts (each check's CPU cost and the reference's pictures; grading
them also warms every cache), compiled bytecode, and lays the course and the data out readable by
root only (a worker at the "uid" level has a uid of its own). run_autograder grades
/autograder/submission as one student, whatever its layout, with the very same checks, prints the
grader's log, and copies the student's results.json. The zip is reproducible: fixed order and
timestamps.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from .course import CONFIG, Course, CourseError

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder image (Ubuntu 22.04; any Debian or
# Ubuntu with Python 3.10 or later will do).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
root="${AUTOGRADER_ROOT:-/autograder}"
export AUTOGRADER_DATA="${AUTOGRADER_DATA:-$root/data}"
# PyTorch's CPU-only build: a container without a GPU has no use for the CUDA libraries of PyPI's
# (gigabytes). PyPI's torch only when that index cannot be reached.
index="${AUTOGRADER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
cpu_index=(--index-url "$index" --timeout 15 --retries 1)
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv
apt-get install -y --no-install-recommends dataset-DATASET || true  # where the distribution packages it
python3 -m venv "$root/venv"
pip="$root/venv/bin/pip"
autograder=("$root/venv/bin/autograder" --course "$root/source")
"$pip" install --no-deps "${cpu_index[@]}" torch || echo "setup.sh: no torch from $index; PyPI's instead"
# Only what grading imports (pyproject's base dependencies); torch's own dependencies from PyPI.
"$pip" install "$root/source"
if ! "${autograder[@]}" data DATASET --offline; then
    echo "setup.sh: no package for the data: downloading it with torchvision, which grading does not need"
    torch="torch==$("$root/venv/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')"
    "$pip" install "${cpu_index[@]}" torchvision "$torch" || "$pip" install torchvision "$torch"
    "${autograder[@]}" data DATASET
    "$pip" uninstall -y torchvision
fi
# Grade the reference once: each check's CPU cost (its time limit) and the reference's pictures,
# and every cache (bytecode, fonts) warm before the first student.
"${autograder[@]}" release --artifacts-only
"$root/venv/bin/python" -m compileall -q "$root/source"  # pip compiled what it installed
chmod -R go-rwx "$root/source" "$AUTOGRADER_DATA"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade /autograder/submission, leave results.json.
# A fault of the grader's (a broken image, a sandbox that cannot be set up) is not the student's 0:
# then this exits non-zero, Gradescope shows that the autograder failed, and staff can rerun it.
set -uo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
export AUTOGRADER_DATA="${AUTOGRADER_DATA:-$root/data}"
python="${AUTOGRADER_PYTHON:-$root/venv/bin/python}"
out="$(mktemp -d)"
mkdir -p "$root/results"
chmod 700 "$root/results" "$out"
metadata=()
[ -f "$root/submission_metadata.json" ] && metadata=(--gradescope-metadata "$root/submission_metadata.json")
# A worker may hold 1 GiB: where the grader cannot make a cgroup (Gradescope's container), that is
# its resident memory, what it shares with the warm server included (a reference worker holds at
# most 0.5 GB so). A student's memory hog is then stopped by the grader with a message before the
# container's own limit (2 GB, see the README) kills the whole run.
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
