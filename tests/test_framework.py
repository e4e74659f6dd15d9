"""The grader is a framework: a lab is its notebooks plus one check module, nothing else.

In a scratch copy of the course, an instructor adds a training lab (a provided net, a trainer to
write, checks that judge the weights it leaves), releases and grades it, with no change to any
file of the grader.
"""
from __future__ import annotations

import hashlib
import textwrap

import nbformat
import pytest

from autograder.course import Course
from autograder.grade import Run, grade
from autograder.release import release
from autograder.sandbox import choose_level
from conftest import ROOT

CHECKS = textwrap.dedent('''
    """Lab 06 - a two-pixel perceptron trained by gradient descent."""
    import pytest
    import torch

    from autograder.assertions import assert_close
    from autograder.messages import Build


    def start(W):
        return Build("tiny_net", (2, 2), state={"layer.weight": W})


    @pytest.mark.points(6)
    @pytest.mark.cell("test_train_tiny_step")
    def test_train_tiny_one_step_follows_the_gradient(submission):
        """one step on one picture is W - lr * gradient of -log p[label]"""
        W, x, y = torch.tensor([[0.5, -0.5], [0.0, 1.0]]), torch.tensor([[1.0, 2.0]]), torch.tensor([1])
        after = submission.call("train_tiny", start(W), x, y, lr=0.1, n_iter=1).args[0].parameters["layer.weight"]
        Wg = W.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(x @ Wg.T, y).backward()
        assert_close(after, W - 0.1 * Wg.grad, "the weights after one step")


    @pytest.mark.points(4)
    @pytest.mark.cell("test_train_tiny_step")
    @pytest.mark.hidden
    def test_train_tiny_learns(submission):
        """100 steps separate two clusters"""
        x = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).repeat(10, 1)
        y = torch.tensor([0, 1]).repeat(10)
        after = submission.call("train_tiny", start(torch.zeros(2, 2)), x, y, lr=0.5, n_iter=100).args[0]
        W = after.parameters["layer.weight"]
        submission.keep("tiny weights", W)
        assert ((x @ W.T).argmax(1) == y).all(), "after 100 steps the two clusters should be told apart"
    ''')


def _meta(**kw):
    return {"nbgrader": {"grade": False, "solution": False, "locked": False, "schema_version": 3, **kw}}


def tiny_notebook(body: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    net = textwrap.dedent('''
        class tiny_net(nn.Module):
            def __init__(self, n_in, n_out):
                super().__init__()
                self.layer = nn.Linear(n_in, n_out, bias=False)

            def forward(self, x):
                return torch.softmax(self.layer(x), dim=1)''').strip()
    nb.cells = [
        nbformat.v4.new_code_cell("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F", id="imports",
                                  metadata=_meta(locked=True, grade_id="imports")),
        nbformat.v4.new_code_cell(net, id="tiny_net", metadata=_meta(locked=True, grade_id="tiny_net")),
        nbformat.v4.new_code_cell("def train_tiny(net, data, labels, lr=0.1, n_iter=100):\n"
                                  f"    ### BEGIN SOLUTION\n{textwrap.indent(body, '    ')}\n    ### END SOLUTION",
                                  id="train_tiny", metadata=_meta(solution=True, grade_id="train_tiny")),
        nbformat.v4.new_code_cell("net = tiny_net(2, 2)\ntrain_tiny(net, torch.eye(2), torch.tensor([0, 1]), n_iter=1)",
                                  id="test", metadata=_meta(grade=True, locked=True, points=10,
                                                            grade_id="test_train_tiny_step")),
    ]
    return nb


SOLUTION = textwrap.dedent('''
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(n_iter):
        optimizer.zero_grad()
        F.nll_loss(torch.log(net(data)), labels).backward()
        optimizer.step()
    return net''').strip()


def _framework_digest() -> str:
    files = sorted(p for p in (ROOT / "autograder").glob("*.py"))
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.fixture
def extended_course(course_copy: Course) -> Course:
    lab = course_copy.source / "lab06_tiny_trainer"
    lab.mkdir()
    (lab / "utils.py").symlink_to("../utils.py")
    nbformat.write(tiny_notebook(SOLUTION), lab / "tiny_exercise.ipynb")
    (course_copy.checks / "lab06_tiny_trainer.py").write_text(CHECKS)
    return Course(course_copy.root)


def test_a_training_lab_is_released_and_graded_with_no_change_to_the_grader(extended_course, data_env, tmp_path):
    before = _framework_digest()
    course = extended_course
    assert course.units[-1] == "train_tiny"
    assert course.lab("lab06_tiny_trainer").setup[1].startswith("class tiny_net")
    release(course)
    released = nbformat.read(course.release / "lab06_tiny_trainer" / "tiny_exercise.ipynb", 4)
    assert "raise NotImplementedError" in released.cells[2].source
    assert (course.release / "lab06_tiny_trainer" / "utils.py").is_file()
    for student, body in (("right", SOLUTION), ("no_step", "return net"), ("wrong_sign", SOLUTION.replace(
            "optimizer.step()", "for p in net.parameters():\n            p.data += lr * p.grad"))):
        (tmp_path / "class" / student).mkdir(parents=True)
        nbformat.write(tiny_notebook(body), tmp_path / "class" / student / "tiny_exercise.ipynb")
    results = {r.student: r for r in grade(course, [tmp_path / "class"], tmp_path / "out",
                                           Run(choose_level("auto"), device="cpu")).finals}
    assert results["right"].units == {"train_tiny": 10} and results["right"].status == "ok"
    assert results["no_step"].units["train_tiny"] == 0 and results["wrong_sign"].units["train_tiny"] == 0
    header = (tmp_path / "out" / "grades.csv").read_text().splitlines()[0]
    assert header.endswith(",train_minibatch,train_tiny,total,max_total,late_days,late_penalty,status")
    assert _framework_digest() == before
