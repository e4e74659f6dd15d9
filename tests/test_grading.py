"""`autograder grade` on one class: the reference, the untouched release, a mutant for every
check, broken files and cells, and the files grading writes.

One grading run (two jobs, as a TA would) over a class of built submissions; each test then reads
that run's results for the students it is about. The sandbox's own attack suite is
test_sandbox.py, the fairness suite test_fairness.py, the universal payloads test_payloads.py.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from autograder.course import nbgrader_meta
from autograder.grade import GRADEBOOK
from autograder.gradebook import Gradebook
from conftest import (ROOT, code, finals_of, grade_class, in_background, reference_code, shared_root, unit_cell,
                      without_student_code, write_student)

FULL = {"Linear": 15, "softmax": 15, "one_layer_net": 15, "train_online": 15, "template_update": 15,
        "train_minibatch": 25}
SOFTMAX_OK = reference_code("softmax")


def mutant(unit: str, old: str, new: str) -> str:
    source = reference_code(unit)
    assert old in source, f"mutant anchor {old!r} not in the reference"
    return source.replace(old, new)


# student id -> (unit, its code); each check must be failed by at least one of them
MUTANTS = {
    "m_linear_plain_tensor": ("Linear", mutant("Linear", "self.weight = nn.Parameter(", "self.weight = (")),
    "m_linear_randn_init": ("Linear", mutant("Linear", "torch.empty(out_features, in_features).uniform_(-bound, bound)",
                                             "torch.randn(out_features, in_features)")),
    "m_linear_no_bias_added": ("Linear", mutant("Linear", "y = y + self.bias", "y = y")),
    "m_linear_always_bias": ("Linear", mutant("Linear", 'self.register_parameter("bias", None)',
                                              "self.bias = nn.Parameter(torch.zeros(out_features))")),
    "m_linear_no_bias_by_default": ("Linear", mutant("Linear", "bias=True):", "bias=False):")),
    "m_linear_detached": ("Linear", mutant("Linear", "y = x @ self.weight.T", "y = x @ self.weight.detach().T")),
    "m_linear_uses_F_linear": ("Linear", mutant("Linear", "y = x @ self.weight.T", "y = F.linear(x, self.weight)")),
    "m_softmax_exp2": ("softmax", mutant("softmax", "torch.exp(shifted)", "torch.exp2(shifted)")),
    "m_softmax_dim0": ("softmax", mutant("softmax", "e.sum(dim=dim, keepdim=True)", "e.sum(dim=0, keepdim=True)")),
    "m_softmax_unstable": ("softmax", mutant("softmax", "x - x.amax(dim=dim, keepdim=True)", "x")),
    "m_softmax_in_place": ("softmax", mutant("softmax", "shifted = x - x.amax(dim=dim, keepdim=True)",
                                             "shifted = x.sub_(x.amax(dim=dim, keepdim=True))")),
    "m_softmax_detached": ("softmax", mutant("softmax", "return e / e.sum(dim=dim, keepdim=True)",
                                             "return (e / e.sum(dim=dim, keepdim=True)).detach()")),
    "m_softmax_torch": ("softmax", mutant("softmax", "return e / e.sum(dim=dim, keepdim=True)",
                                          "return torch.softmax(x, dim)")),
    "m_net_two_layers": ("one_layer_net", mutant("one_layer_net", "self.mylayer = nn.Linear(input_size, output_size, bias=True)",
                                                 "self.mylayer = nn.Linear(input_size, output_size, bias=True)\n"
                                                 "        self.extra = nn.Linear(output_size, output_size)")),
    "m_net_computed_softmax": ("one_layer_net", mutant("one_layer_net", "p = torch.softmax(scores, dim=-1)",
                                                       "p = getattr(torch, 'soft' + 'max')(scores, dim=-1)")),
    "m_net_no_softmax": ("one_layer_net", mutant("one_layer_net", "p = torch.softmax(scores, dim=-1)", "p = scores")),
    "m_net_softmax_dim0": ("one_layer_net", mutant("one_layer_net", "p = torch.softmax(scores, dim=-1)",
                                                   "p = torch.softmax(scores, dim=0)")),
    "m_online_two_pictures": ("train_online", mutant("train_online", "x = data[idx].view(1, -1)",
                                                     "x = data[idx:idx + 2].reshape(-1, 784)")),
    "m_online_last_never_drawn": ("train_online", mutant("train_online", "torch.randint(0, n, (1,))",
                                                         "torch.randint(0, n - 1, (1,))")),
    "m_online_fixed_lr": ("train_online", mutant("train_online", "torch.optim.SGD(net.parameters(), lr=lr)",
                                                 "torch.optim.SGD(net.parameters(), lr=0.01)")),
    "m_online_misaligned": ("train_online", mutant("train_online", "label = train_label[idx].view(1)",
                                                   "label = train_label[(idx + 1) % n].view(1)")),
    "m_online_double_loss": ("train_online", mutant("train_online", "loss = F.nll_loss(torch.log(p), label)",
                                                    "loss = 2 * F.nll_loss(torch.log(p), label)")),
    "m_online_momentum": ("train_online", mutant("train_online", "torch.optim.SGD(net.parameters(), lr=lr)",
                                                 "torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)")),
    "m_online_one_step": ("train_online", mutant("train_online", "for step in range(n_iter):", "for step in range(1):")),
    "m_update_mean": ("template_update", mutant("template_update", "return W + lr * E.T @ X", "return W + lr * E.T @ X / len(X)")),
    "m_update_in_place": ("template_update", mutant("template_update", "return W + lr * E.T @ X", "return W.add_(lr * E.T @ X)")),
    "m_update_autograd": ("template_update", code("""
        def template_update(W, X, labels, lr):
            W = W.detach().clone().requires_grad_(True)
            F.cross_entropy(X @ W.T, labels, reduction="sum").backward()
            return (W - lr * W.grad).detach()
        """)),
    "m_update_sign": ("template_update", mutant("template_update", "E = F.one_hot(labels, W.shape[0]).to(P.dtype) - P",
                                                "E = P - F.one_hot(labels, W.shape[0]).to(P.dtype)")),
    "m_minibatch_fixed_bs": ("train_minibatch", mutant("train_minibatch", "torch.randint(0, n, (bs,), device=data.device)",
                                                       "torch.randint(0, n, (200,), device=data.device)")),
    "m_minibatch_last_never_drawn": ("train_minibatch", mutant("train_minibatch", "torch.randint(0, n, (bs,)",
                                                               "torch.randint(0, n - 1, (bs,)")),
    "m_minibatch_fixed_lr": ("train_minibatch", mutant("train_minibatch", "torch.optim.SGD(net.parameters(), lr=lr)",
                                                       "torch.optim.SGD(net.parameters(), lr=0.01)")),
    "m_minibatch_sum": ("train_minibatch", mutant("train_minibatch", "loss = F.nll_loss(torch.log(p), labels)",
                                                  "loss = F.nll_loss(torch.log(p), labels, reduction='sum')")),
    "m_minibatch_misaligned": ("train_minibatch", mutant("train_minibatch", "labels = train_label[indices]",
                                                         "labels = train_label[(indices + 1) % n]")),
    "m_minibatch_no_zero_grad": ("train_minibatch", mutant("train_minibatch", "optimizer.zero_grad()", "pass")),
    "m_minibatch_one_step": ("train_minibatch", mutant("train_minibatch", "for step in range(n_iter):", "for step in range(1):")),
}
LAB_OF = {"Linear": "lab01", "softmax": "lab02", "one_layer_net": "lab03", "train_online": "lab04"}


def _drop_metadata(unit: str):
    def edit(lab, nb):
        if any(nbgrader_meta(c).get("grade_id") == unit for c in nb.cells):
            del unit_cell(nb, unit).metadata["nbgrader"]
    return edit


def _append_cell(unit: str, source: str):
    def edit(lab, nb):
        if any(nbgrader_meta(c).get("grade_id") == unit for c in nb.cells):
            nb.cells.append(nbformat.v4.new_code_cell(source))
    return edit


CLASS: list = []


def start_early(config) -> None:
    """The class, graded in the background as soon as the tests are collected (tests/conftest.py)."""
    if not CLASS:
        CLASS.append(in_background(grade_the_class))


@pytest.fixture(scope="module")
def graded(request):
    start_early(request.config)
    return CLASS[0].result()


def grade_the_class():
    root = Path(tempfile.mkdtemp(prefix="grading-", dir=shared_root())) / "class"
    write_student(root, "reference")
    write_student(root, "untouched_release", tree="release")
    for student, (unit, source) in MUTANTS.items():
        write_student(root, student, [LAB_OF.get(unit, "lab05")], {unit: source})
    write_student(root, "lost_metadata", ["lab01", "lab02", "lab03"], edit=_drop_metadata("softmax"))
    write_student(root, "duplicate_later_right", ["lab02"], {"softmax": "def softmax(x, dim=-1):\n    return x\n"},
                  edit=_append_cell("softmax", SOFTMAX_OK))
    write_student(root, "duplicate_later_wrong", ["lab02"], edit=_append_cell("softmax", "def softmax(x, dim=-1):\n    return x\n"))
    invalid = write_student(root, "invalid_json", ["lab01", "lab02", "lab03"])
    (invalid / "vanilla_nn_exercise.ipynb").write_text('{"cells": [ this is not json')
    write_student(root, "missing_lab01", ["lab02", "lab03"])
    write_student(root, "hidden_leaker", ["lab02"], {"softmax": code("""
        _seen = []
        def softmax(x, dim=-1):  # tells every check the shapes of all the inputs it saw before
            _seen.append(list(x.shape))
            raise RuntimeError(f"seen before: {_seen[:-1]}")
        """)})
    out = root.parent / "graded"
    started = time.monotonic()
    grade_class(root, out, "-j", "2", "--min-wall", "30")
    return finals_of(out), out, time.monotonic() - started


def units(graded, student: str) -> dict[str, float]:
    return graded[0][student].units


def messages(graded, student: str) -> str:
    return " | ".join(c["message"] for c in graded[0][student].checks if not c["passed"])


# ---- the reference and the release ---------------------------------------------------------

def test_reference_solutions_get_full_marks(graded):
    result = graded[0]["reference"]
    assert result.units == FULL and result.total == 100 and result.status == "ok", messages(graded, "reference")


def test_untouched_release_gets_zero_without_a_grader_fault(graded):
    result = graded[0]["untouched_release"]
    assert result.total == 0 and result.status == "ok"
    assert all("NotImplementedError" in c["message"] for c in result.checks), messages(graded, "untouched_release")


# ---- every check can fail ---------------------------------------------------------------------

def test_every_check_is_failed_by_some_mutant(graded):
    results = graded[0]
    checks = {c["check"] for c in results["reference"].checks}
    failed = {c["check"] for s in MUTANTS for c in results[s].checks if not c["passed"]}
    assert checks - failed == set()


def test_each_mutant_loses_points_only_on_its_unit(graded):
    for student, (unit, _) in MUTANTS.items():
        got = units(graded, student)
        assert got[unit] < FULL[unit], f"{student} kept full marks on {unit}"
        for other in set(got) - {unit}:
            if other in ("template_update", "train_minibatch") and unit in ("template_update", "train_minibatch"):
                assert got[other] == FULL[other], f"{student} lost points on {other}: {messages(graded, student)}"


def test_a_flagged_unit_says_review_in_its_status(graded):
    assert "review: one_layer_net uses getattr with a computed name" in graded[0]["m_net_computed_softmax"].status


# ---- files written ---------------------------------------------------------------------------

def test_grades_csv_has_one_row_per_student_with_the_spec_columns(graded):
    results, out, _ = graded
    lines = (out / "grades.csv").read_text().splitlines()
    assert lines[0] == ("student,Linear,softmax,one_layer_net,train_online,template_update,train_minibatch,total,"
                        "max_total,late_days,late_penalty,status")
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(results)
    assert "reference,15,15,15,15,15,25,100,100,0,0,ok" in lines


def test_results_json_is_gradescope_format_and_hides_hidden_checks(graded):
    results, out, _ = graded
    data = json.loads((out / "m_softmax_torch" / "results.json").read_text())
    assert data["score"] == results["m_softmax_torch"].total
    assert {"score", "execution_time", "tests"} <= set(data)
    hidden = [t for t in data["tests"] if t["visibility"] == "after_published"]
    assert hidden and all(t["visibility"] in ("visible", "after_published") for t in data["tests"])
    assert all(t["name"].split(":")[0] in FULL for t in data["tests"])
    failed_hidden = [t for t in hidden if t["status"] == "failed"]
    assert failed_hidden and all("def test_" not in t["output"] and "torch.softmax(x" not in t["output"]
                                 for t in failed_hidden)
    assert sum(t["max_score"] for t in data["tests"]) == 100


def test_no_output_file_carries_a_hidden_check_or_a_solution(graded):
    _, out, _ = graded
    public = "".join(p.read_text() for p in ROOT.glob("release/lab*/*.ipynb"))  # what students have anyway
    solutions = [line.strip() for lab in ROOT.glob("source/lab*/*_exercise.ipynb")
                 for cell in nbformat.read(lab, 4).cells if "### BEGIN SOLUTION" in cell.source
                 for line in cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0].splitlines()
                 if len(line.strip()) > 25 and line.strip() not in public]
    for path in out.rglob("*"):
        if path.suffix in (".json", ".html", ".csv"):
            text = without_student_code(path.read_text())
            assert "def test_" not in text and "pytest.mark" not in text, path
            assert not [s for s in solutions if s in text and "reference" not in path.parts], path


def test_a_hidden_checks_inputs_never_reach_a_visible_checks_message(graded):
    data = json.loads((graded[1] / "hidden_leaker" / "results.json").read_text())
    visible = " ".join(t["output"] for t in data["tests"] if t["visibility"] == "visible")
    hidden = " ".join(t["output"] for t in data["tests"] if t["visibility"] == "after_published")
    assert "[4, 5, 6]" not in visible and "[2, 3, 4]" not in visible  # shapes only hidden checks send
    assert "[2, 3, 4]" in hidden


def test_feedback_shows_the_templates_of_both_trainers(graded):
    page = (graded[1] / "reference" / "feedback.html").read_text()
    assert "Templates your train_minibatch learned" in page and "Templates your train_online learned" in page
    assert page.count("data:image/png;base64,") >= 6


def test_summary_lists_every_student_with_a_link_to_their_feedback(graded):
    page = (graded[1] / "summary.html").read_text()
    assert all(f'href="{s}/feedback.html"' in page for s in graded[0])


# ---- files and cells --------------------------------------------------------------------------

def test_invalid_notebook_costs_only_its_lab(graded):
    got = units(graded, "invalid_json")
    assert got["one_layer_net"] == 0 and got["Linear"] == 15 and got["softmax"] == 15
    assert "not a valid notebook" in graded[0]["invalid_json"].status


def test_missing_notebook_is_reported(graded):
    got = units(graded, "missing_lab01")
    assert got["Linear"] == 0 and got["softmax"] == 15
    assert "no notebook for lab01_linear_module" in graded[0]["missing_lab01"].status


def test_cell_without_metadata_is_found_by_its_definition(graded):
    assert units(graded, "lost_metadata")["softmax"] == 15


def test_the_later_of_two_cells_is_graded(graded):
    assert units(graded, "duplicate_later_right")["softmax"] == 15
    assert units(graded, "duplicate_later_wrong")["softmax"] < 15


def test_every_lab_is_recorded_once_in_the_gradebook(graded):
    book = Gradebook(graded[1] / GRADEBOOK)
    try:
        labs = book.fingerprints()
    finally:
        book.close()
    assert len(labs) == len(graded[0]) * 5


def test_each_test_cell_is_worth_what_its_checks_are(graded, course):
    from autograder.validate import points_agree

    checks = graded[0]["reference"].checks
    assert points_agree(course, checks) == []
    shifted = [{**c, "points": c["points"] + 1} if c["check"] == checks[0]["check"] else c for c in checks]
    assert points_agree(course, shifted) == [f"{checks[0]['lab']}: test cell {checks[0]['cell']} is worth "
                                             f"{course.lab(checks[0]['lab']).test_cells()[checks[0]['cell']]:g} points "
                                             f"but its checks {sum(c['points'] for c in shifted if c['cell'] == checks[0]['cell']):g}"]
