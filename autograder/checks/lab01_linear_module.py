"""Lab 01 — a linear module written from scratch: y = x W^T + b.

Each row of W is a template; the layer scores an input against every template at once.
"""
import pytest
import torch

from autograder.assertions import assert_close, assert_rules, assert_tensor, call, parameter_shapes
from autograder.messages import Build, ModuleState

LIBRARY_LAYERS = {"Linear", "linear", "_linear", "addmm", "addmv", "addbmm", "baddbmm", "LazyLinear", "Bilinear",
                  "bilinear"}


def parameters(submission, *args, **kwargs) -> dict:
    """{name: shape} of the parameters Linear(*args, **kwargs) registers."""
    return parameter_shapes(submission.call("Linear", *args, what=f"Linear{args}", **kwargs).value, f"Linear{args}")


def layer(W, b=None) -> Build:
    """Linear(in, out, bias=b is not None) holding the weights W and b."""
    state = {"weight": W} if b is None else {"weight": W, "bias": b}
    return Build("Linear", (W.shape[1], W.shape[0]), {"bias": b is not None}, state)


@pytest.mark.points(2)
@pytest.mark.cell("test_Linear_shapes")
def test_Linear_registers_weight_and_bias(submission):
    """weight [out, in] and bias [out] are registered nn.Parameters; outputs have the right shapes"""
    found = parameters(submission, 5, 3)
    assert found == {"weight": [3, 5], "bias": [3]}, (
        f"Linear(5, 3) should register the parameters weight [3, 5] and bias [3] (wrap them in nn.Parameter); "
        f"it registers {found}")
    W, b = torch.randn(3, 5), torch.randn(3)
    assert_tensor(call(submission, layer(W, b), torch.rand(5)).value, "Linear(5, 3) on a vector [5]", [3])
    assert_tensor(call(submission, layer(W, b), torch.rand(4, 5)).value, "Linear(5, 3) on a batch [4, 5]", [4, 3])


@pytest.mark.points(1)
@pytest.mark.cell("test_Linear_shapes")
def test_Linear_initialisation_follows_the_bound(submission):
    """initial weight and bias are uniform between -1/sqrt(in_features) and 1/sqrt(in_features)"""
    built = submission.call("Linear", 100, 50, seed=submission.draw_seed(), what="Linear(100, 50)").value
    assert isinstance(built, ModuleState), "Linear(...) should make an nn.Module"
    bound = 1 / 100 ** 0.5
    for name, size in (("weight", [50, 100]), ("bias", [50])):
        p = assert_tensor(built.parameters.get(name), f"the initial {name}", size).float()
        assert p.abs().max() <= bound + 1e-6, (
            f"the initial {name} of Linear(100, 50) reaches {p.abs().max():.3g}, beyond 1/sqrt(in_features) = 0.1: "
            "initialise with torch.empty(...).uniform_(-bound, bound), bound = 1 / sqrt(in_features)")
        assert p.abs().max() > 0.5 * bound and p.std() > 0.3 * bound, (
            f"the initial {name} of Linear(100, 50) stays within {p.abs().max():.3g}: it should spread uniformly "
            "over [-0.1, 0.1] (uniform_(-bound, bound) with bound = 1 / sqrt(in_features))")


@pytest.mark.points(1)
@pytest.mark.cell("test_Linear_shapes")
@pytest.mark.hidden
def test_Linear_shapes_for_any_size(submission):
    """parameters and outputs for other sizes"""
    for n_in, n_out, n in ((1, 1, 1), (784, 10, 7), (3, 17, 2)):
        assert parameters(submission, n_in, n_out) == {"weight": [n_out, n_in], "bias": [n_out]}, \
            f"Linear({n_in}, {n_out}) registers the wrong parameters"
        W, b = torch.randn(n_out, n_in), torch.randn(n_out)
        assert_tensor(call(submission, layer(W, b), torch.rand(n, n_in)).value, f"the output for [{n}, {n_in}]",
                      [n, n_out], reveal=False)
        assert_tensor(call(submission, layer(W, b), torch.rand(n_in)).value, f"the output for [{n_in}]", [n_out],
                      reveal=False)


@pytest.mark.points(2)
@pytest.mark.cell("test_Linear_values")
def test_Linear_values_on_a_vector(submission):
    """W = [[1, -2, 0.5], [0, 3, -1]], b = [0.5, -1], x = [2, 1, 4] gives [2.5, -2]"""
    W, b = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]), torch.tensor([0.5, -1.0])
    x = torch.tensor([2.0, 1.0, 4.0])
    assert_close(call(submission, layer(W, b), x, what="Linear(3, 2) on x").value, torch.tensor([2.5, -2.0]),
                 "Linear(3, 2) on x = [2, 1, 4]", idea="Each output is a row of W dotted with x, plus its bias.")
    W, b, x = torch.randn(4, 3), torch.randn(4), torch.randn(3)
    assert_close(call(submission, layer(W, b), x).value, x @ W.T + b, "Linear(3, 4) on a random vector",
                 idea="Each output is a row of W dotted with x, plus its bias.")


@pytest.mark.points(1)
@pytest.mark.cell("test_Linear_values")
def test_Linear_values_on_a_batch(submission):
    """on a batch [N, in], row n of the output is x_n @ W.T + b"""
    W, b, X = torch.randn(3, 5), torch.randn(3), torch.randn(7, 5)
    assert_close(call(submission, layer(W, b), X, what="Linear(5, 3) on a batch").value, X @ W.T + b,
                 "Linear(5, 3) on a batch of 7", idea="x @ self.weight.T + self.bias works for a batch too.")


@pytest.mark.points(1)
@pytest.mark.cell("test_Linear_values")
@pytest.mark.hidden
def test_Linear_random_values(submission):
    """random weights, sizes, vectors and batches"""
    for n_in, n_out, n in ((7, 4, 5), (784, 10, 3), (1, 6, 2)):
        W, b, X = torch.randn(n_out, n_in), torch.randn(n_out), torch.randn(n, n_in)
        assert_close(call(submission, layer(W, b), X).value, X @ W.T + b, f"Linear({n_in}, {n_out}) on a batch",
                     reveal=False)
        assert_close(call(submission, layer(W, b), X[0]).value, X[0] @ W.T + b, f"Linear({n_in}, {n_out}) on a vector",
                     reveal=False)


@pytest.mark.points(3)
@pytest.mark.cell("test_Linear_no_bias")
def test_Linear_without_bias(submission):
    """bias=False registers only the weight; weights [[1,2],[3,4],[5,6]] map [1,1] to [3,7,11]"""
    found = parameters(submission, 2, 3, bias=False)
    assert found == {"weight": [3, 2]}, (f"with bias=False only weight [3, 2] should be registered, not {found}: "
                                         "self.register_parameter('bias', None)")
    W = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert_close(call(submission, layer(W), torch.ones(2), what="the bias-free Linear(2, 3)").value,
                 torch.tensor([3.0, 7.0, 11.0]), "the bias-free layer on x = [1, 1]",
                 idea="Without a bias the output is x @ W.T alone.")
    W, x = torch.randn(3, 2), torch.randn(2)
    assert_close(call(submission, layer(W), x).value, x @ W.T, "the bias-free layer on a random vector")


@pytest.mark.points(1)
@pytest.mark.cell("test_Linear_no_bias")
@pytest.mark.hidden
def test_Linear_bias_is_the_default(submission):
    """bias=True is the default; bias=False on a batch"""
    assert parameters(submission, 2, 3) == {"weight": [3, 2], "bias": [3]}, "bias=True should be the default"
    assert parameters(submission, 2, 3, True) == {"weight": [3, 2], "bias": [3]}, "Linear(2, 3, True) should have a bias"
    W, X = torch.randn(2, 4), torch.randn(6, 4)
    assert_close(call(submission, layer(W), X).value, X @ W.T, "the bias-free layer on a batch", reveal=False)


@pytest.mark.points(1)
@pytest.mark.cell("test_Linear_gradients")
def test_Linear_gradients(submission):
    """gradients flow to weight and bias"""
    W, b, x, g = torch.randn(4, 6), torch.randn(4), torch.randn(5, 6), torch.randn(5, 4)
    grads = call(submission, layer(W, b), x, backward=g, what="Linear(6, 4) and backward").grads
    assert_close(grads.get("target.weight"), g.T @ x, "the gradient of the weight",
                 idea="Build the output from self.weight with tensor operations, without .data or .detach().")
    assert_close(grads.get("target.bias"), g.sum(0), "the gradient of the bias")


@pytest.mark.points(2)
@pytest.mark.cell("test_Linear_gradients")
@pytest.mark.hidden
@pytest.mark.rule
def test_Linear_written_from_tensor_operations(submission):
    """x @ weight.T + bias computed without nn.Linear, F.linear or addmm"""
    assert_rules(submission.facts, "Linear", LIBRARY_LAYERS,
                 "Compute x @ self.weight.T + self.bias with tensor operations.")
    W, b, X = torch.randn(4, 6), torch.randn(4), torch.randn(3, 6)
    assert_close(call(submission, layer(W, b), X).value, X @ W.T + b, "Linear(6, 4) on a batch", reveal=False)
