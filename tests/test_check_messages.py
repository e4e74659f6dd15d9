"""Each failing check says the one real cause of its failure, in the lecture's words, never the
grader's internals, and hidden checks never a number computed from their expected values.

One grading run (two jobs, on the CPU) over a class of wrong trainers written like the reference
with one thing changed, a trainer that crashes, and two Linear layers; each student holds only the
lab of its unit. None of the trainers passes its exact step, so the recipe never trains but for
the one student whose recipe message is under test. Each test reads that run's messages.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from conftest import code, finals_of, grade_class, in_background, reference_code, shared_root, write_student

UNCHANGED = "did not change at all"
NEVER_USED = "were never used"
USE_LR = "Use the lr argument"
MIXED_UP = "another picture's label"
ASCENT = "against the lecture's rule"
STEP_SIZE = "the lecture's step"


def online(old: str, new: str) -> str:
    source = reference_code("train_online")
    assert old in source, f"anchor {old!r} not in the reference"
    return source.replace(old, new)


def minibatch(old: str, new: str) -> str:
    source = reference_code("train_minibatch")
    assert old in source, f"anchor {old!r} not in the reference"
    return source.replace(old, new)


LINEAR_OFF_BY_ONE = reference_code("Linear").replace("return y\n", "return y + 1\n")
LINEAR_PLAIN_TENSOR = reference_code("Linear").replace("self.weight = nn.Parameter(", "self.weight = (")

# student -> (unit, code, the phrase its failing messages must hold, phrases none of them may hold)
STUDENTS = {
    "still_zero_grad_before_step": ("train_online", online(
        "        loss.backward()\n        optimizer.step()",
        "        loss.backward()\n        optimizer.zero_grad()\n        optimizer.step()"),
        UNCHANGED, (NEVER_USED, USE_LR, MIXED_UP)),
    "still_trains_a_copy": ("train_online", "import copy\n\n" + online(
        "    optimizer = torch.optim.SGD(net.parameters(), lr=lr)",
        "    net = copy.deepcopy(net)\n    optimizer = torch.optim.SGD(net.parameters(), lr=lr)"),
        UNCHANGED, (NEVER_USED, USE_LR, MIXED_UP)),
    "still_detached_loss": ("train_online", online(
        "loss = F.nll_loss(torch.log(p), label)", "loss = F.nll_loss(torch.log(p), label).detach().requires_grad_()"),
        UNCHANGED, (NEVER_USED, USE_LR, MIXED_UP)),
    "lr_applied_twice": ("train_online", online(
        "        optimizer.step()",
        "        optimizer.step()\n        with torch.no_grad():\n            for q in net.parameters():\n"
        "                q -= lr * q.grad"),
        STEP_SIZE, (USE_LR, UNCHANGED)),
    "one_extra_step": ("train_online", online("for step in range(n_iter):", "for step in range(n_iter + 1):"),
                       "the templates show 11", (USE_LR, UNCHANGED)),
    "weight_decay": ("train_online", online("lr=lr)", "lr=lr, weight_decay=0.1)"),
                     "without weight decay", (USE_LR, UNCHANGED)),
    "gradient_ascent": ("train_online", online("loss = F.nll_loss(torch.log(p), label)",
                                               "loss = -F.nll_loss(torch.log(p), label)"),
                        ASCENT, (MIXED_UP, USE_LR)),
    "ignores_lr": ("train_online", online("lr=lr)", "lr=0.01)"), USE_LR, (UNCHANGED,)),
    "lr_over_bs_with_the_mean": ("train_minibatch", minibatch("lr=lr)", "lr=lr / bs)"), STEP_SIZE, (USE_LR,)),
    "crashes": ("train_online", online("x = data[idx].view(1, -1)", "x = data[n].view(1, -1)"),
                "IndexError", ()),
    "linear_plain_tensor": ("Linear", LINEAR_PLAIN_TENSOR, "should register the parameters weight",
                            ("state_dict",)),
    "linear_off_by_one": ("Linear", LINEAR_OFF_BY_ONE, "is wrong", ("largest difference",)),
    "recipe_cut_short": ("train_online", online("    for step in range(n_iter):",
                                                "    if n_iter >= 5000:\n        n_iter = 30\n"
                                                "    for step in range(n_iter):"), "below the 0.59", ()),
}
LAB = {"train_online": "lab04", "train_minibatch": "lab05", "Linear": "lab01"}


CLASS: list = []


def start_early(config) -> None:
    """The class, graded in the background as soon as the tests are collected (tests/conftest.py)."""
    if not CLASS:
        CLASS.append(in_background(grade_the_class))


def grade_the_class() -> dict:
    root = Path(tempfile.mkdtemp(prefix="messages-", dir=shared_root()))
    for student, (unit, source, _, _) in STUDENTS.items():
        write_student(root / "class", student, [LAB[unit]], {unit: code(source)})
    grade_class(root / "class", root / "graded", "-j", "2", "--min-wall", "30")
    return finals_of(root / "graded")


@pytest.fixture(scope="module")
def graded(request) -> dict:
    start_early(request.config)
    return CLASS[0].result()


def failing(graded, student: str) -> list[dict]:
    unit = STUDENTS[student][0]
    return [c for c in graded[student].checks if c["unit"] == unit and not c["passed"]]


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_each_failure_says_its_real_cause_and_no_other(graded, student):
    _, _, cause, misleading = STUDENTS[student]
    found = failing(graded, student)
    messages = "\n".join(f"{c['check']}: {c['message']}" for c in found)
    assert found and cause in messages, messages
    assert not [m for m in misleading if m in messages], messages


@pytest.mark.parametrize("student", ["still_zero_grad_before_step", "still_trains_a_copy", "still_detached_loss"])
def test_weights_that_never_move_are_told_so_by_every_trainer_check(graded, student):
    found = failing(graded, student)
    assert len(found) >= 8 and all(UNCHANGED in c["message"] for c in found), [c["message"] for c in found]


def test_a_crash_says_what_the_check_looks_for(graded):
    message = next(c["message"] for c in failing(graded, "crashes")
                   if c["check"] == "test_train_online_one_picture_per_step")
    assert "raised IndexError" in message and "Each of the n_iter steps takes ONE picture" in message, message


def test_hidden_messages_carry_no_number_from_the_expected_values(graded):
    checks = {c["check"]: c for c in failing(graded, "linear_off_by_one")}
    assert checks["test_Linear_random_values"]["message"] == "Linear(7, 4) on a batch is wrong."
    visible = checks["test_Linear_values_on_a_vector"]["message"]
    assert "expected 2.5" in visible, visible  # a visible check shows what was expected
    hidden = [c["message"] for r in graded.values() for c in r.checks if c["hidden"] and not c["passed"]]
    assert hidden and not [m for m in hidden if "largest difference" in m or re.search(r"\d+ times", m)], hidden


def test_the_recipe_message_gives_the_accuracy_to_two_decimals_at_most(graded):
    message = next(c["message"] for c in failing(graded, "recipe_cut_short")
                   if c["check"] == "test_train_online_recipe_reaches_the_accuracy")
    assert re.search(r"the test accuracy is 0\.\d\d, below", message) and not re.search(r"\d\.\d{3}", message), message


def test_the_own_net_check_says_when_template_net_stood_in(graded):
    message = next(c["message"] for c in failing(graded, "ignores_lr")
                   if c["check"] == "test_train_online_trains_your_one_layer_net")
    assert "your one_layer_net did not pass lab 03's checks in this run" in message, message
