"""Lab 02 — softmax from exp and sum: p_i = exp(s_i) / sum_j exp(s_j).

Scores become probabilities: positive, summing to one, the largest score the most likely.
"""
import pytest
import torch
import torch.nn.functional as F

from autograder.judge import close, library_names, tensor
from autograder.probes import forbid, probe

TORCH_SOFTMAX = {"softmax", "log_softmax", "_softmax", "_log_softmax", "Softmax", "LogSoftmax", "Softmax2d"}


@probe
def call(ctx, x, dim=None, plain=False):
    softmax = ctx.unit("softmax")
    args = (x,) if dim is None else (x, dim)
    if not plain:
        return softmax(*args)
    with forbid((torch, "softmax"), (torch, "log_softmax"), (torch, "_softmax"), (torch.Tensor, "softmax"),
                (torch.Tensor, "log_softmax"), (F, "softmax"), (F, "log_softmax"), (torch.special, "softmax"),
                (torch.special, "log_softmax"), (torch.nn.Softmax, "forward"), (torch.nn.LogSoftmax, "forward")):
        return softmax(*args)


@probe
def untouched(ctx, x):
    before = x.clone()
    p = ctx.unit("softmax")(x)
    return {"before": before, "after": x, "p": p}


@probe
def gradient(ctx, x, g):
    x = x.clone().requires_grad_(True)
    (ctx.unit("softmax")(x, 1) * g).sum().backward()
    return x.grad


@pytest.mark.points(2)
def test_softmax_lecture_example(submission):
    """softmax([-2, -0.5, 2, 1.5]) = [0.0107, 0.0481, 0.5858, 0.3553]"""
    x = torch.tensor([-2.0, -0.5, 2.0, 1.5])
    close(submission.run(call, x=x), torch.tensor([0.0107, 0.0481, 0.5858, 0.3553]),
          "softmax([-2, -0.5, 2, 1.5])", atol=1e-4)


@pytest.mark.points(2)
def test_softmax_rows_sum_to_one(submission):
    """same shape as x; along dim the probabilities sum to one"""
    torch.manual_seed(1)
    x = torch.randn(6, 5) * 3
    p = tensor(submission.run(call, x=x, dim=1), "softmax(x, dim=1) for x of shape [6, 5]", [6, 5])
    assert (p >= 0).all(), "probabilities cannot be negative"
    close(p.sum(1), torch.ones(6), "the sum of each row of softmax(x, dim=1)")


@pytest.mark.points(2)
def test_softmax_dim_0_and_dim_1(submission):
    """dim=0 normalises columns, dim=1 rows"""
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]])
    for dim in (0, 1):
        close(submission.run(call, x=x, dim=dim), torch.softmax(x, dim), f"softmax(x, dim={dim})")


@pytest.mark.points(2)
def test_softmax_is_stable(submission):
    """finite and right for scores around +-1000"""
    x = torch.tensor([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -1002.0]])
    close(submission.run(call, x=x, dim=1), torch.softmax(x, 1),
          "softmax of scores around +-1000 (subtract the largest score before exp)")


@pytest.mark.points(2)
def test_softmax_autograd(submission):
    """autograd differentiates through it"""
    torch.manual_seed(2)
    x, g = torch.randn(3, 4), torch.randn(3, 4)
    want = torch.autograd.grad((torch.softmax(x.requires_grad_(), 1) * g).sum(), x)[0]
    close(submission.run(gradient, x=x.detach(), g=g), want, "the gradient through softmax")


@pytest.mark.points(1)
def test_softmax_leaves_input_unchanged(submission):
    """x is the same after the call"""
    x = torch.tensor([[3.0, 1.0, -2.0]])
    seen = submission.run(untouched, x=x)
    close(seen["after"], seen["before"], "x after softmax(x) (work on a copy, not in place)")
    close(seen["p"], torch.softmax(x, -1), "softmax(x)")


@pytest.mark.points(2)
@pytest.mark.hidden
def test_softmax_random_tensors_any_dim(submission):
    """random 3-d tensors along every dim, default dim=-1"""
    torch.manual_seed(3)
    x = torch.randn(4, 5, 6) * 5
    for dim in (0, 1, 2, -1):
        close(submission.run(call, x=x, dim=dim), torch.softmax(x, dim), f"softmax along dim {dim}", reveal=False)
    close(submission.run(call, x=x), torch.softmax(x, -1), "softmax with the default dim", reveal=False)


@pytest.mark.points(2)
@pytest.mark.hidden
def test_softmax_written_from_exp_and_sum(submission):
    """torch's own softmax and log_softmax are not used"""
    used = library_names(submission.tree()) & TORCH_SOFTMAX
    assert not used, f"softmax must be written from exp and sum, but it uses {', '.join(sorted(used))}"
    torch.manual_seed(4)
    x = torch.randn(5, 7)
    close(submission.run(call, x=x, dim=1, plain=True), torch.softmax(x, 1),
          "softmax with torch's own softmax switched off", reveal=False)
