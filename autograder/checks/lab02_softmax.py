"""Lab 02 — softmax from exp and sum: p_i = exp(s_i) / sum_j exp(s_j).

Scores become probabilities: positive, summing to one, the largest score the most likely.
"""
import pytest
import torch

from autograder.assertions import assert_close, assert_rules, assert_tensor

TORCH_SOFTMAX = {"softmax", "log_softmax", "_softmax", "_log_softmax", "Softmax", "LogSoftmax", "Softmax2d",
                 "softmin", "Softmin", "gumbel_softmax", "logits_to_probs", "Categorical", "OneHotCategorical",
                 "RelaxedOneHotCategorical", "Multinomial"}
STABLE = "Subtract the largest score along dim (x.amax(dim=dim, keepdim=True)) before torch.exp."


def softmax(submission, x, *dim):
    what = f"softmax(x{', dim=' + str(dim[0]) if dim else ''}) for x of shape {list(x.shape)}"
    return submission.call("softmax", x, *dim, what=what).value


@pytest.mark.points(2)
@pytest.mark.cell("test_softmax_example")
def test_softmax_lecture_example(submission):
    """softmax([-2, -0.5, 2, 1.5]) = [0.0107, 0.0481, 0.5858, 0.3553], along dim 0 too"""
    x, expected = torch.tensor([-2.0, -0.5, 2.0, 1.5]), torch.tensor([0.0107, 0.0481, 0.5858, 0.3553])
    assert_close(softmax(submission, x), expected, "softmax([-2, -0.5, 2, 1.5])", atol=1e-4,
                 idea="p_i = exp(x_i) / sum_j exp(x_j).")
    assert_close(softmax(submission, x, 0), expected, "softmax([-2, -0.5, 2, 1.5], dim=0)", atol=1e-4)
    x = torch.randn(5) * 3
    assert_close(softmax(submission, x), torch.softmax(x, 0), "softmax of a random vector of 5 scores")


@pytest.mark.points(1)
@pytest.mark.cell("test_softmax_example")
@pytest.mark.hidden
def test_softmax_simple_cases(submission):
    """equal scores, a single score, two scores"""
    x = torch.randn(7)
    for x, expected in ((torch.zeros(5), torch.full((5,), 0.2)), (torch.tensor([3.0]), torch.tensor([1.0])),
                        (torch.tensor([0.0, 1.0]), torch.tensor([0.2689, 0.7311])), (x, torch.softmax(x, 0))):
        assert_close(softmax(submission, x), expected, f"softmax of {len(x)} scores", atol=1e-4, reveal=False)


@pytest.mark.points(1)
@pytest.mark.cell("test_softmax_dims")
def test_softmax_dim_0_and_dim_1(submission):
    """dim=0 normalises columns, dim=1 and the default dim=-1 rows"""
    x = torch.tensor([[-2.0, -0.5, 2.0, 1.5], [-2.0, -0.5, 7.0, 1.5]])
    for dim in (0, 1):
        assert_close(softmax(submission, x, dim), torch.softmax(x, dim), f"softmax(x, dim={dim}) of a [2, 4] matrix",
                     idea=f"Sum along dimension {dim} with keepdim=True, so the division broadcasts.")
    assert_close(softmax(submission, x), torch.softmax(x, -1), "softmax(x) with the default dim=-1")
    x = torch.randn(3, 5) * 2
    for dim in (0, 1):
        assert_close(softmax(submission, x, dim), torch.softmax(x, dim), f"softmax(x, dim={dim}) of a random [3, 5] matrix")


@pytest.mark.points(1)
@pytest.mark.cell("test_softmax_dims")
@pytest.mark.hidden
def test_softmax_any_dim(submission):
    """random 3-d tensors along every dim, negative dims too"""
    x = torch.randn(2, 3, 4) * 5
    for dim in (0, 1, 2, -1, -2, -3):
        assert_close(softmax(submission, x, dim), torch.softmax(x, dim), f"softmax along dim {dim}", reveal=False)


@pytest.mark.points(2)
@pytest.mark.cell("test_softmax_sums")
def test_softmax_rows_sum_to_one(submission):
    """same shape as x, no negative entry, and along dim the probabilities sum to one"""
    x = torch.randn(6, 10) * 3
    for dim in (1, 0):
        p = assert_tensor(softmax(submission, x, dim), f"softmax(x, dim={dim}) for x of shape [6, 10]", [6, 10])
        assert (p >= 0).all(), "probabilities cannot be negative"
        assert_close(p.sum(dim), torch.ones(x.shape[1 - dim]), f"the sums along dim {dim} of softmax(x, dim={dim})")


@pytest.mark.points(2)
@pytest.mark.cell("test_softmax_stable")
def test_softmax_is_stable(submission):
    """finite and right for scores around +-1000"""
    for x, dim in ((torch.tensor([1000.0, -1000.0, 0.0]), -1),
                   (torch.tensor([[-1000.0, -1000.0], [1000.0, 999.0]]), 1), (torch.randn(3, 4) * 1000, 1)):
        assert_close(softmax(submission, x, dim), torch.softmax(x, dim), "softmax of scores around +-1000",
                     idea=STABLE)


@pytest.mark.points(1)
@pytest.mark.cell("test_softmax_stable")
@pytest.mark.hidden
def test_softmax_stable_along_any_dim(submission):
    """huge scores along every dim"""
    x = torch.randn(2, 3, 4) * 2000
    for dim in (0, 1, 2):
        assert_close(softmax(submission, x, dim), torch.softmax(x, dim), f"softmax of huge scores along dim {dim}",
                     reveal=False)


@pytest.mark.points(1)
@pytest.mark.cell("test_softmax_autograd")
def test_softmax_autograd(submission):
    """autograd differentiates through it"""
    x, g = torch.randn(3, 5), torch.randn(3, 5)
    want = _gradient(x, g, 1)
    got = submission.call("softmax", x, 1, requires_grad=(0,), backward=g, what="softmax(x, dim=1) and backward").grads
    assert_close(got.get("args[0]"), want, "the gradient through softmax(x, dim=1)",
                 idea="Build softmax from tensor operations, without .detach(), .data or .item().")


def _gradient(x, g, dim):
    x = x.clone().requires_grad_(True)
    (torch.softmax(x, dim) * g).sum().backward()
    return x.grad


@pytest.mark.points(1)
@pytest.mark.cell("test_softmax_autograd")
@pytest.mark.hidden
def test_softmax_gradient_in_double_precision(submission):
    """gradients along every dim, in float64"""
    for dim in (0, 1, -1):
        x, g = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
        got = submission.call("softmax", x, dim, requires_grad=(0,), backward=g).grads
        assert_close(got.get("args[0]"), _gradient(x, g, dim), f"the gradient along dim {dim}", atol=1e-9,
                     reveal=False)


@pytest.mark.points(1)
@pytest.mark.cell("test_softmax_input_unchanged")
def test_softmax_leaves_input_unchanged(submission):
    """x is the same after the call, and the result is right"""
    for x, dim in ((torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]]), 1), (torch.randn(2, 3), 0)):
        got = submission.call("softmax", x, dim, what=f"softmax(x, dim={dim})")
        assert_close(got.args[0], x, f"x after softmax(x, dim={dim})",
                     idea="Work on new tensors: no in-place operations such as x -= m or x.exp_().")
        assert_close(got.value, torch.softmax(x, dim), f"softmax(x, dim={dim})")


@pytest.mark.points(2)
@pytest.mark.cell("test_softmax_input_unchanged")
@pytest.mark.hidden
@pytest.mark.rule
def test_softmax_written_from_exp_and_sum(submission):
    """computed without torch's own softmax or log_softmax"""
    assert_rules(submission.facts, "softmax", TORCH_SOFTMAX, "Write it from torch.exp and a sum.")
    x = torch.randn(3, 4, 5) * 4
    for dim in (0, 2):
        assert_close(softmax(submission, x, dim), torch.softmax(x, dim), f"softmax along dim {dim}", reveal=False)
