"""Lab 01 — a linear module written from scratch: y = x W^T + b.

Each row of W is a template; the layer scores an input against every template at once.
"""
import pytest
import torch
import torch.nn as nn

from autograder.judge import close, library_names
from autograder.probes import forbid, probe

LIBRARY_LAYERS = {"Linear", "linear", "addmm", "LazyLinear", "Bilinear"}


@probe
def parameters(ctx, n_in, n_out, bias):
    layer = ctx.unit("Linear")(n_in, n_out, bias=bias)
    return {"is_module": isinstance(layer, nn.Module),
            "named": {name: list(p.shape) for name, p in layer.named_parameters()},
            "weight_is_parameter": isinstance(getattr(layer, "weight", None), nn.Parameter),
            "bias_is_none": getattr(layer, "bias", "missing") is None}


@probe
def forward(ctx, W, b, x, plain=False):
    layer = ctx.unit("Linear")(W.shape[1], W.shape[0], bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(W)
        if b is not None:
            layer.bias.copy_(b)
    if not plain:
        return layer(x)
    # No library layer may do the work: they all refuse while forward runs.
    F = torch.nn.functional
    with forbid((F, "linear"), (torch, "addmm"), (torch.Tensor, "addmm"), (nn.Linear, "forward"),
                (torch._C._nn, "linear")):
        return layer(x)


@probe
def gradients(ctx, W, b, x, g):
    layer = ctx.unit("Linear")(W.shape[1], W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(W)
        layer.bias.copy_(b)
    (layer(x) * g).sum().backward()
    return {"weight": layer.weight.grad, "bias": layer.bias.grad}


@pytest.mark.points(3)
def test_Linear_parameters(submission):
    """weight [out, in] and bias [out] are registered nn.Parameters"""
    found = submission.run(parameters, n_in=4, n_out=3, bias=True)
    assert found["is_module"], "Linear should be a subclass of nn.Module"
    assert found["weight_is_parameter"], "self.weight should be an nn.Parameter"
    assert found["named"] == {"weight": [3, 4], "bias": [3]}, \
        f"Linear(4, 3) should register weight [3, 4] and bias [3]; it registers {found['named']}"


@pytest.mark.points(3)
def test_Linear_batch_values(submission):
    """forward on a batch [N, in] gives x @ W.T + b"""
    torch.manual_seed(1)
    W, b, x = torch.randn(3, 5), torch.randn(3), torch.randn(7, 5)
    close(submission.run(forward, W=W, b=b, x=x), x @ W.T + b, "Linear(5, 3) on a batch of 7")


@pytest.mark.points(2)
def test_Linear_single_vector(submission):
    """forward on one vector [in] gives a vector [out]"""
    W, b, x = torch.tensor([[1., 2.], [3., 4.], [5., 6.]]), torch.tensor([1., -1., 0.5]), torch.tensor([1., 1.])
    close(submission.run(forward, W=W, b=b, x=x), x @ W.T + b, "Linear(2, 3) on x=[1, 1]")


@pytest.mark.points(2)
def test_Linear_without_bias(submission):
    """bias=False leaves bias None; weights [[1,2],[3,4],[5,6]] map [1,1] to [3,7,11]"""
    found = submission.run(parameters, n_in=2, n_out=3, bias=False)
    assert found["bias_is_none"], "with bias=False, self.bias should be None"
    assert found["named"] == {"weight": [3, 2]}, f"with bias=False only weight [3, 2] should be registered, not {found['named']}"
    W = torch.tensor([[1., 2.], [3., 4.], [5., 6.]])
    close(submission.run(forward, W=W, b=None, x=torch.ones(2)), torch.tensor([3., 7., 11.]),
          "the bias-free layer on x=[1, 1]")


@pytest.mark.points(2)
def test_Linear_gradients(submission):
    """gradients flow to weight and bias"""
    torch.manual_seed(2)
    W, b, x, g = torch.randn(4, 6), torch.randn(4), torch.randn(5, 6), torch.randn(5, 4)
    grads = submission.run(gradients, W=W, b=b, x=x, g=g)
    close(grads["weight"], g.T @ x, "the gradient of the weight")
    close(grads["bias"], g.sum(0), "the gradient of the bias")


@pytest.mark.points(3)
@pytest.mark.hidden
def test_Linear_written_from_tensor_operations(submission):
    """no nn.Linear, F.linear or addmm does the work"""
    used = sorted(library_names(submission.tree()) & LIBRARY_LAYERS)
    assert not used, f"Linear must be written from tensor operations, but it uses {', '.join(used)}"
    torch.manual_seed(3)
    W, b, x = torch.randn(6, 9), torch.randn(6), torch.randn(4, 9)
    close(submission.run(forward, W=W, b=b, x=x, plain=True), x @ W.T + b,
          "Linear with the library's linear layers switched off", reveal=False)
