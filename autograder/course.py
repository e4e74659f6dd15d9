"""What the course is, read from its folders and its course.toml: labs, notebooks, graded units,
the cells a worker runs, the dataset, the checks.

Nothing about a particular lab is written here: a lab is a `source/<lab>/` folder, its exercise
is the notebook whose name ends in `_exercise.ipynb`, a graded unit is a solution cell whose
grade_id is the name it defines at top level (one cell per unit), and the provided cells are the
exercise's locked cells that are not tests.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

HELPERS = "utils.py"
CONFIG = "course.toml"
EXERCISE_SUFFIX = "_exercise.ipynb"


class CourseError(RuntimeError):
    """The course folders are not what the tool needs; the message says what and where."""


class Node(dict):
    """A notebook, or a part of one, as its JSON: keys are attributes too, as in nbformat's nodes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def read_notebook(path: Path) -> Node:
    """The notebook at `path`, or a CourseError saying why not.

    A notebook of the current format (4) is read as JSON, its cells' sources joined as nbformat
    does: importing nbformat (and the jsonschema it validates with) costs one to three seconds,
    more than everything else `autograder review` does. Older formats go through nbformat."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"), object_hook=Node)
        if not isinstance(nb, dict) or not isinstance(nb.get("nbformat"), int):
            raise ValueError("it names no nbformat version: it is JSON, but not a Jupyter notebook")
        if nb["nbformat"] != 4:
            nb = json.loads(json.dumps(_upgraded(nb)), object_hook=Node)
        cells = nb.get("cells")
        if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
            raise ValueError("its cells are not a list of cells")
        for cell in cells:
            if isinstance(cell.get("source"), list):
                cell["source"] = "".join(str(line) for line in cell["source"])
        return nb
    except FileNotFoundError:
        raise CourseError(f"{path}: no such notebook") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CourseError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from None
    except json.JSONDecodeError as e:
        raise CourseError(f"{path}: not a readable notebook (not JSON: {e})") from None
    except ValueError as e:
        raise CourseError(f"{path}: not a readable notebook ({e})") from None


def nbformat_module():
    """nbformat, imported for what only it does (upgrading, writing, running notebooks)."""
    # Where Jupyter's extras installed rfc3987_syntax, jsonschema builds a grammar for IRIs when
    # nbformat imports it (3 s); a notebook's schema has no IRI, and jsonschema does without it.
    sys.modules.setdefault("rfc3987_syntax", None)
    import nbformat

    return nbformat


def load_notebook(path: Path):
    """The notebook at `path` as nbformat's NotebookNode, for nbgrader's preprocessors and nbclient;
    a CourseError saying why not."""
    read_notebook(path)  # the errors a user can act on, in the same words
    nbformat = nbformat_module()
    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:  # nbformat raises json, unicode and validation errors alike
        raise CourseError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from None


def _upgraded(nb: dict) -> dict:
    nbformat = nbformat_module()
    try:
        return nbformat.convert(nbformat.from_dict(nb), 4)
    except Exception as e:  # nbformat's conversions raise whatever the old notebook trips
        raise ValueError(f"a notebook of format {nb.get('nbformat')} that cannot be upgraded ({e})") from None


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def top_level_names(source: str) -> set[str]:
    """Names a cell defines at top level (def, class, assignment); empty if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def unit_cells(nb) -> dict[str, int]:
    """grade_id -> cell index of the solution cells that define a name equal to their grade_id."""
    units = {}
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and meta.get("grade_id") in top_level_names(cell.source):
            units[meta["grade_id"]] = index
    return units


def is_test(cell) -> bool:
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution")


def provided_cells(nb) -> list[str]:
    """The code cells a student is given and may rely on: locked, and not tests."""
    return [c.source for c in nb.cells if c.cell_type == "code" and nbgrader_meta(c).get("locked")
            and not nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")]


@dataclass(frozen=True)
class Lab:
    name: str
    folder: Path
    exercise: Path
    units: tuple[str, ...]

    @property
    def notebooks(self) -> list[Path]:
        return sorted(self.folder.glob("*.ipynb"))

    @cached_property
    def setup(self) -> tuple[str, ...]:
        """The provided cells of the source exercise, which every worker of this lab runs first."""
        return tuple(provided_cells(read_notebook(self.exercise)))

    def test_cells(self) -> dict[str, float]:
        """grade_id -> points of the exercise's test cells."""
        return {nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c).get("points", 0))
                for c in read_notebook(self.exercise).cells if is_test(c)}


@dataclass(frozen=True)
class Course:
    root: Path

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def release(self) -> Path:
        return self.root / "release"

    @cached_property
    def config(self) -> dict:
        path = self.root / CONFIG
        try:
            return tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise CourseError(f"{path}: missing; it names the course's checks folder and dataset") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise CourseError(f"{path}: not valid TOML ({e})") from None

    def _setting(self, section: str, key: str) -> str:
        value = self.config.get(section, {}).get(key)
        if not isinstance(value, str) or not value:
            raise CourseError(f"{self.root / CONFIG}: [{section}] {key} is missing")
        return value

    @property
    def checks(self) -> Path:
        """One pytest module per lab, named like the lab's folder."""
        return self.root / self._setting("course", "checks")

    @property
    def dataset(self) -> str:
        return self._setting("data", "dataset")

    @property
    def train_split(self) -> str:
        return self._setting("data", "train")

    @property
    def withheld_split(self) -> str:
        return self._setting("data", "withheld")

    def lab(self, name: str) -> Lab:
        for lab in self.labs:
            if lab.name == name:
                return lab
        raise CourseError(f"no lab {name!r}: the labs are {', '.join(lab.name for lab in self.labs)}")

    def lab_of(self, unit: str) -> Lab:
        return next(lab for lab in self.labs if unit in lab.units)

    @cached_property
    def labs(self) -> tuple[Lab, ...]:
        if not self.source.is_dir():
            raise CourseError(f"{self.source}: no source/ folder; pass --course DIR (the folder holding source/)")
        labs, owner = [], {}
        for folder in sorted(p for p in self.source.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))):
            exercises = sorted(folder.glob(f"*{EXERCISE_SUFFIX}"))
            if len(exercises) != 1:
                raise CourseError(f"{folder}: expected one *{EXERCISE_SUFFIX}, found {len(exercises)}")
            units = tuple(unit_cells(read_notebook(exercises[0])))
            for unit in units:
                if unit in owner:
                    raise CourseError(f"unit {unit!r} is defined in both {owner[unit]} and {exercises[0]}")
                owner[unit] = exercises[0]
            labs.append(Lab(folder.name, folder, exercises[0], units))
        if not labs:
            raise CourseError(f"{self.source}: no lab folders with notebooks")
        return tuple(labs)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(unit for lab in self.labs for unit in lab.units)

    def stubs(self) -> dict[str, str]:
        """unit -> its solution cell as released (what every student starts from); none unreleased."""
        found = {}
        for lab in self.labs:
            path = self.release / lab.name / lab.exercise.name
            if path.is_file():
                nb = read_notebook(path)
                found.update({unit: nb.cells[index].source for unit, index in unit_cells(nb).items()})
        return found

    def unit_points(self) -> dict[str, float]:
        """What each unit is worth: the points of its exercise's test cells (`test_<unit>_...`)."""
        points = {unit: 0.0 for unit in self.units}
        for lab in self.labs:
            for cell, value in lab.test_cells().items():
                matches = [u for u in lab.units if cell.startswith(f"test_{u}_")]
                if matches:
                    points[max(matches, key=len)] += value
        return points

    def helpers(self) -> ModuleType:
        """The course's utils.py, imported once under the name the notebooks use."""
        path = self.source / HELPERS
        if not path.is_file():
            raise CourseError(f"{path}: the course helper module is missing")
        return import_helpers(path)


def import_helpers(path: Path) -> ModuleType:
    """The helper module at `path`, imported once as `utils` (the name the notebooks use)."""
    loaded = sys.modules.get("utils")
    if loaded is not None and Path(getattr(loaded, "__file__", "")) == path:
        return loaded
    spec = importlib.util.spec_from_file_location("utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["utils"] = module
    return module


def secret_class_order(secret: str, n: int):
    """The run's renaming of n classes: class c is called order[c] in the workers' training labels."""
    import hashlib

    import torch

    seed = int.from_bytes(hashlib.sha256(f"classes:{secret}".encode()).digest()[:8], "big")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def find_course(start: Path | None = None) -> Course:
    """The course given by $AUTOGRADER_COURSE, else the first of cwd and its parents holding
    source/, else the checkout this package was installed from."""
    if os.environ.get("AUTOGRADER_COURSE"):
        return Course(Path(os.environ["AUTOGRADER_COURSE"]).resolve())
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "source" / HELPERS).is_file():
            return Course(folder)
    return Course(Path(__file__).resolve().parent.parent)
