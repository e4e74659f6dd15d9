"""Run a whole notebook in a Jupyter kernel (nbclient) and report what each code cell raised.

This is for the course's own notebooks (validate, tests). Student submissions never run here:
the grader executes only their solution cells, in sandboxed workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbclient
import nbformat

from .course import load_notebook, nbgrader_meta


@dataclass(frozen=True)
class CellOutcome:
    index: int
    grade_id: str | None
    is_test: bool      # an nbgrader grade cell with code: a test cell
    is_solution: bool
    error: str | None  # exception class name, None if the cell ran cleanly
    message: str = ""

    @property
    def name(self) -> str:
        return f"cell {self.index}" + (f" ({self.grade_id})" if self.grade_id else "")


def execute(path: Path, timeout: int = 900, nb: nbformat.NotebookNode | None = None,
            env: dict[str, str] | None = None) -> list[CellOutcome]:
    """Execute the notebook at `path` (or `nb`, as if it were there) from its own folder, its
    kernel in `env` (default: this process's environment).

    Every cell runs even after an error, so the caller sees what each one did.
    """
    nb = nb if nb is not None else load_notebook(path)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(Path(path).parent)}},
                                     extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no warnings on stderr
    client.execute(**({"env": env} if env is not None else {}))
    outcomes = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = nbgrader_meta(cell)
        error = next((o for o in cell.get("outputs", []) if o.output_type == "error"), None)
        outcomes.append(CellOutcome(
            index=index, grade_id=meta.get("grade_id"),
            is_test=bool(meta.get("grade")) and not meta.get("solution"),
            is_solution=bool(meta.get("solution")),
            error=error.ename if error else None,
            message=f"{error.ename}: {error.evalue}".splitlines()[0] if error else ""))
    return outcomes
