"""Similar units (similarity.py): what is set aside (names, layout, comments, docstrings, the
released stub, code most of the class writes alike) and what still tells two units apart; then
a small class graded once, whose review queue and summary name the pair, and whose trainer's
accuracy is on Gradescope's leaderboard."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder import similarity
from autograder.reports import results_json
from conftest import (ROOT, code, data_environment, finals_of, grade_class, in_background, reference_code, shared_root,
                      write_student)

STUB = '''def softmax(x, dim=-1):
    """Softmax of x along dimension dim, from exp and sum."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''
# One student's softmax, and another's: the same code renamed, laid out otherwise, commented otherwise.
MAX_THEN_SUM = code('''
    def softmax(x, dim=-1):
        """Softmax of x along dimension dim, from exp and sum."""
        # subtract the largest score so that exp never overflows
        biggest = torch.max(x, dim=dim, keepdim=True).values
        exps = torch.exp(x - biggest)
        total = torch.sum(exps, dim=dim, keepdim=True)
        return exps / total
    ''')
MAX_THEN_SUM_RENAMED = code('''
    def softmax(x,dim=-1):
        # stable
        m=torch.max(x,dim=dim,keepdim=True).values   # row max

        z=torch.exp(x-m)
        s = torch.sum(z,
                      dim=dim, keepdim=True)
        return (z / s)
    ''')
# Other correct softmaxes, each written its own way.
INDEXED_MAX = code('''
    def softmax(x, dim=-1):
        e = torch.exp(x - x.max(dim=dim, keepdim=True)[0])
        return e / e.sum(dim=dim, keepdim=True)
    ''')
ROW_LOOP = code('''
    def softmax(x, dim=-1):
        moved = x.movedim(dim, -1)
        out = torch.empty_like(moved)
        rows, res = moved.reshape(-1, moved.shape[-1]), out.reshape(-1, moved.shape[-1])
        for i in range(rows.shape[0]):
            row = rows[i] - rows[i].max()
            res[i] = row.exp() / row.exp().sum()
        return out.movedim(-1, dim)
    ''')
ONE_LINE = "def softmax(x, dim=-1):\n    return torch.softmax(x, dim=dim)\n"


def test_units_that_differ_only_in_names_layout_and_comments_are_one_group():
    found = similarity.similar({"ann": MAX_THEN_SUM, "bob": MAX_THEN_SUM_RENAMED, "cy": INDEXED_MAX}, STUB)
    assert [g.students for g in found] == [("ann", "bob")]
    assert found[0].score == 1.0


def test_the_reference_and_other_correct_formulations_are_not_similar():
    sources = {"reference": reference_code("softmax"), "indexed": INDEXED_MAX, "loop": ROW_LOOP, "max": MAX_THEN_SUM}
    assert similarity.similar(sources, STUB) == []
    # A copy of any one of them is found: what keeps them apart is their code, not a blind spot.
    for student, source in sources.items():
        renamed = re.sub(r"\bx\b", "scores", source).replace("\n", "  # mine\n").replace(", ", ",")
        found = similarity.similar({**sources, "copier": renamed}, STUB)
        assert [g.students for g in found] == [tuple(sorted((student, "copier")))], student


def test_the_released_stub_is_no_ones_own_code(course):
    stub = course.stubs()["Linear"]
    left_alone = {"ann": stub, "bob": stub.replace("# YOUR CODE HERE", "# I will do this later"),
                  "cy": stub.replace("# YOUR CODE HERE", "").replace("):\n", "):\n\n")}
    assert similarity.similar(left_alone, stub) == []
    # Without the stub set aside, the same three are one group: it is the stub that keeps them apart.
    assert [g.students for g in similarity.similar(left_alone)] == [("ann", "bob", "cy")]


def test_a_line_or_two_is_too_little_to_call_similar():
    assert similarity.similar({"ann": ONE_LINE, "bob": ONE_LINE.replace("dim=dim", "dim = dim")}, STUB) == []


def test_code_most_of_the_class_writes_alike_is_set_aside():
    def renamed(i: int) -> str:
        return INDEXED_MAX.replace("e =", f"e{i} =").replace("e /", f"e{i} /").replace("e.sum", f"e{i}.sum")
    two = {"ann": renamed(0), "bob": renamed(1)}
    assert [g.students for g in similarity.similar(two, STUB)] == [("ann", "bob")]
    # Twelve students writing the textbook softmax alike shows nothing about who copied whom.
    crowd = {f"s{i:02d}": renamed(i) for i in range(12)}
    assert similarity.similar(crowd, STUB) == []


def test_source_that_does_not_parse_is_compared_as_written():
    broken = MAX_THEN_SUM.replace("return exps / total", "return exps / total)")
    found = similarity.similar({"ann": broken, "bob": broken.replace("exps", "e").replace("biggest", "m"),
                                "cy": ROW_LOOP}, STUB)
    assert [g.students for g in found] == [("ann", "bob")]
    assert 0 < found[0].score <= 1


# ---- a class graded once ----------------------------------------------------------------------

CLASS: list = []


def start_early(config) -> None:
    """The class, graded in the background as soon as the tests are collected (tests/conftest.py)."""
    if not CLASS:
        CLASS.append(in_background(grade_the_class))


def grade_the_class():
    """ann and bob hand in the same softmax but for names and layout; the reference and another
    correct softmax differ. The reference student also hands in lab 04, graded with --leaderboard."""
    root = Path(tempfile.mkdtemp(prefix="similar-", dir=shared_root()))
    write_student(root / "class", "ann", ["lab02"], {"softmax": MAX_THEN_SUM})
    write_student(root / "class", "bob", ["lab02"], {"softmax": MAX_THEN_SUM_RENAMED})
    write_student(root / "class", "reference", ["lab02", "lab04"])
    write_student(root / "class", "other_way", ["lab02"], {"softmax": INDEXED_MAX})
    out = root / "graded"
    grade_class(root / "class", out, "--leaderboard")
    review = subprocess.run([sys.executable, "-m", "autograder", "--course", str(ROOT), "review", str(out)],
                            capture_output=True, text=True, env={**os.environ, **data_environment()})
    assert review.returncode == 0, review.stderr
    return finals_of(out), out, review.stdout


@pytest.fixture(scope="module")
def graded(request):
    start_early(request.config)
    return CLASS[0].result()


def test_the_review_queue_names_the_similar_pair_and_no_one_else(graded):
    finals, _, printed = graded
    assert all(r.units["softmax"] == 15 for r in finals.values()), [(r.student, r.status) for r in finals.values()]
    lines = [line for line in printed.splitlines() if ": similar: " in line]
    assert len(lines) == 2, printed
    assert lines[0].startswith("ann: similar: softmax with bob (score ") and lines[1].startswith(
        "bob: similar: softmax with ann (score "), printed
    assert "similar: compare the units side by side" in printed


def test_the_summary_shows_the_similar_pair_with_their_source(graded):
    _, out, _ = graded
    summary = (out / "summary.html").read_text()
    assert "similar: softmax with bob" in summary and "similar: softmax with ann" in summary
    assert "reference</b>: similar" not in summary and "other_way</b>: similar" not in summary
    assert "biggest" in summary  # ann's own source, to compare side by side


def test_the_leaderboard_carries_the_trainers_test_accuracy_only_when_asked(graded):
    finals, out, _ = graded
    board = json.loads((out / "reference" / "results.json").read_text())["leaderboard"]
    assert len(board) == 1 and board[0]["name"] == "test accuracy" and board[0]["order"] == "desc", board
    assert 0 < board[0]["value"] <= 1
    assert json.loads((out / "ann" / "results.json").read_text()).get("leaderboard", []) == []  # no trainer
    # The same grade, the same kept accuracy, without --leaderboard: no leaderboard at all.
    from autograder.gradebook import Gradebook

    book = Gradebook(out / "gradebook.sqlite")
    try:
        kept = book.artifacts("reference")
    finally:
        book.close()
    reference = finals["reference"]
    assert any(name.endswith("accuracy") for name in kept)
    assert "leaderboard" not in results_json(reference, kept=kept)
    assert results_json(reference, leaderboard=True, kept=kept)["leaderboard"] == board
