"""`autograder bundle`: the same grader as a Gradescope autograder zip.

Gradescope unzips the bundle into /autograder/source, runs setup.sh once to build the image, and
run_autograder for each submission, which must leave /autograder/results/results.json. Our
run_autograder grades /autograder/submission with the very same checks and copies the student's
results.json there. The zip is reproducible: fixed order and timestamps.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from .course import Course

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install /autograder/source
/autograder/venv/bin/autograder --course /autograder/source data fashion-mnist
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade /autograder/submission, leave results.json.
set -uo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
python="${AUTOGRADER_PYTHON:-$root/venv/bin/python}"
out="$(mktemp -d)"
mkdir -p "$root/results"
if "$python" -m autograder --course "$root/source" grade "$root/submission" --out "$out" --quiet > "$out/log.txt" 2>&1
then
    results=("$out"/*/results.json)
    cp "${results[0]}" "$root/results/results.json"
else
    "$python" - "$out/log.txt" "$root/results/results.json" <<'PY'
import json, sys
last = (open(sys.argv[1]).read().strip().splitlines() or ["no output"])[-1]
json.dump({"score": 0, "tests": [], "output": f"The autograder could not grade this submission: {last}"},
          open(sys.argv[2], "w"))
PY
fi
"""

_PACKAGE_FILES = ("pyproject.toml", "README.md")


def _members(course: Course) -> list[tuple[str, Path]]:
    package = course.root / "autograder"
    files = [(f"autograder/{p.relative_to(package)}", p) for p in sorted(package.rglob("*.py"))]
    files += [(f"source/{p.relative_to(course.source)}", p) for p in sorted(course.source.rglob("*"))
              if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    files += [(name, course.root / name) for name in _PACKAGE_FILES if (course.root / name).is_file()]
    return files


def bundle(course: Course, out: Path) -> Path:
    """Write the Gradescope autograder zip to `out`."""
    if not (course.root / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{course.root}: no pyproject.toml; bundle from the course's checkout")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP), ("run_autograder", RUN)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o755 << 16
            z.writestr(info, text)
        for name, path in _members(course):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return out
