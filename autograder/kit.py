"""`autograder kit`: what a student installs for `autograder check`, without the hidden checks.

The kit is a pip-installable project (a zip, or its unzipped folder): this package, and inside it
a course (`kit_course/`) made of the released exercises in place of source/ (a worker's provided
cells come from the exercise's locked cells, which the release keeps as they are), course.toml,
and the course's checks with every hidden check cut out of the source text. Nothing else of the
checkout goes in: no source notebook, no reference artifacts (their CPU costs name every check),
no compiled file. The kit's `autograder` command grades with that course unless told otherwise.
"""
from __future__ import annotations

import ast
import os
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .course import CONFIG, HELPERS, Course, CourseError

PACKAGE = Path(__file__).resolve().parent
COURSE = "kit_course"  # the course's folder inside the installed package
_STAMP = (2020, 1, 1, 0, 0, 0)  # fixed, so that the same course makes the same zip

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "autograder"
version = "VERSION"
description = "Self-check for the course's exercises: its public checks, run in the grader's sandbox"
readme = "README.md"
requires-python = "PYTHON"
dependencies = DEPENDENCIES

[project.scripts]
autograder = "autograder.kit:main"

[tool.setuptools]
packages = ["autograder"]

[tool.setuptools.package-data]
autograder = ["COURSE/**/*"]
"""

README = """\
# Self-check for the course's exercises

    pip install KIT.zip
    autograder data DATASET           # once (a download needs torchvision; on Debian/Ubuntu,
                                      # apt-get install dataset-DATASET instead)
    autograder check my_exercise.ipynb

`autograder check` runs your exercise notebook through the grader's public checks, in the same
sandbox as grading, and prints each verdict and your score so far. The hidden checks are not in
this kit: they run when your work is graded.
"""


def _is_hidden_mark(node: ast.expr) -> bool:
    """`pytest.mark.hidden`, `mark.hidden`, or either called."""
    node = node.func if isinstance(node, ast.Call) else node
    return isinstance(node, ast.Attribute) and node.attr == "hidden" and (
        (isinstance(node.value, ast.Attribute) and node.value.attr == "mark")
        or (isinstance(node.value, ast.Name) and node.value.id == "mark"))


def public_checks(text: str, name: str = "<checks>") -> str:
    """The checks module `text` less each function or class marked hidden: its lines from the
    comments right above its first decorator to its last, and the blank lines after it. Every other
    line stays as it is. A hidden mark used any other way (pytestmark, a parameter's marks) is a
    CourseError: the kit would carry a hidden check."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise CourseError(f"{name}: does not parse ({e.msg}, line {e.lineno})") from None
    lines = text.splitlines(keepends=True)
    cut, marks = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            hidden = [d for d in node.decorator_list if _is_hidden_mark(d)]
            if hidden:
                marks.update(id(d.func if isinstance(d, ast.Call) else d) for d in hidden)
                first = min(d.lineno for d in node.decorator_list) - 1
                while first > 0 and lines[first - 1].lstrip().startswith("#"):
                    first -= 1
                last = node.end_lineno
                while last < len(lines) and not lines[last].strip():
                    last += 1
                cut.update(range(first, last))
    stray = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _is_hidden_mark(n) and id(n) not in marks]
    if stray:
        raise CourseError(f"{name}, line {stray[0].lineno}: a hidden mark that is not a check's decorator; "
                          f"mark each hidden check with @pytest.mark.hidden")
    return "".join(line for i, line in enumerate(lines) if i not in cut)


def _released(course: Course) -> list[tuple[str, Path]]:
    """(path in the kit course, file) for each released lab file and the course helpers: what
    students already have, standing in for source/."""
    from .release import stale  # nbgrader: an instructor's command

    problems = stale(course)
    if problems:
        raise CourseError(f"release/ is not what source/ makes ({problems[0]}{', ...' if len(problems) > 1 else ''}); "
                          f"run `autograder release` first")
    files = []
    for lab in course.labs:
        folder = course.release / lab.name
        files += [(f"source/{lab.name}/{p.name}", p) for p in sorted(folder.iterdir()) if p.is_file()]
    files.append((f"source/{HELPERS}", course.release / course.labs[0].name / HELPERS))
    return files


def _checks(course: Course) -> list[tuple[str, str]]:
    """(path in the kit course, text) of each checks module, its hidden checks cut out."""
    where = Path(course.config["course"]["checks"])
    return [(f"{where.as_posix()}/{p.name}", public_checks(p.read_text(), str(p)))
            for p in sorted(course.checks.glob("*.py"))]


def _pyproject(course: Course) -> str:
    """The kit's pyproject.toml: the checkout's name, version and grading dependencies."""
    path = course.root / "pyproject.toml"
    try:
        project = tomllib.loads(path.read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        raise CourseError(f"{path}: no [project] to take the kit's version and dependencies from ({e})") from None
    dependencies = "[\n" + "".join(f'    "{d}",\n' for d in project.get("dependencies", [])) + "]"
    return (PYPROJECT.replace("VERSION", project["version"]).replace("PYTHON", project.get("requires-python", ">=3.10"))
            .replace("DEPENDENCIES", dependencies).replace("COURSE", COURSE))


def _package(course: Course) -> list[tuple[str, Path]]:
    """The grader's modules (as the bundle takes them), less the checks folder when it lies inside."""
    package, checks = course.root / "autograder", course.checks.resolve()
    return [(f"autograder/{p.relative_to(package).as_posix()}", p) for p in sorted(package.rglob("*.py"))
            if checks not in p.resolve().parents]


def kit(course: Course, out: Path) -> Path:
    """Write the student kit of `course` to `out` (a zip pip installs)."""
    if not (course.root / "pyproject.toml").is_file():
        raise CourseError(f"{course.root}: no pyproject.toml; make the kit from the course's checkout")
    inside = f"autograder/{COURSE}"
    members: list[tuple[str, bytes]] = [("pyproject.toml", _pyproject(course).encode()),
                                        ("README.md", README.replace("DATASET", course.dataset).encode())]
    members += [(name, path.read_bytes()) for name, path in _package(course)]
    members.append((f"{inside}/{CONFIG}", (course.root / CONFIG).read_bytes()))
    members += [(f"{inside}/{name}", text.encode()) for name, text in _checks(course)]
    members += [(f"{inside}/{name}", path.read_bytes()) for name, path in _released(course)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_STAMP)
            info.external_attr = 0o644 << 16
            z.writestr(info, data, zipfile.ZIP_DEFLATED)
    return out


def main() -> int:
    """The kit's `autograder` command: the course installed with it, unless --course or
    $AUTOGRADER_COURSE names another."""
    if (PACKAGE / COURSE / CONFIG).is_file():
        os.environ.setdefault("AUTOGRADER_COURSE", str(PACKAGE / COURSE))
    from .cli import main as cli_main

    return cli_main()
