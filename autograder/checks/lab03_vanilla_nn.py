"""Lab 03 — a vanilla net of one layer: p = softmax(x W^T + b).

One linear layer scores the input against each class template; softmax turns scores into
probabilities.
"""
import pytest
import torch
import torch.nn as nn

from autograder.judge import close, tensor
from autograder.probes import probe


@probe
def structure(ctx, n_in, n_out):
    net = ctx.unit("one_layer_net")(n_in, n_out)
    layer = getattr(net, "mylayer", None)
    return {"is_module": isinstance(net, nn.Module),
            "children": {name: type(m).__name__ for name, m in net.named_children()},
            "mylayer_is_linear": type(layer) is nn.Linear,
            "features": [getattr(layer, "in_features", None), getattr(layer, "out_features", None)],
            "has_bias": getattr(layer, "bias", None) is not None}


@probe
def forward(ctx, W, b, x):
    net = ctx.unit("one_layer_net")(W.shape[1], W.shape[0])
    with torch.no_grad():
        net.mylayer.weight.copy_(W)
        net.mylayer.bias.copy_(b)
    return net(x)


@pytest.mark.points(4)
def test_one_layer_net_has_one_layer_called_mylayer(submission):
    """exactly one layer, self.mylayer = nn.Linear(input_size, output_size, bias=True)"""
    found = submission.run(structure, n_in=5, n_out=3)
    assert found["is_module"], "one_layer_net should be a subclass of nn.Module"
    assert found["mylayer_is_linear"], "self.mylayer should be an nn.Linear"
    assert list(found["children"]) == ["mylayer"], \
        f"the net should have exactly one layer, mylayer; it has {found['children']}"
    assert found["features"] == [5, 3], f"one_layer_net(5, 3).mylayer should map 5 inputs to 3, not {found['features']}"
    assert found["has_bias"], "mylayer should have a bias (bias=True)"


@pytest.mark.points(3)
def test_one_layer_net_lecture_example(submission):
    """W=[[1,2],[3,4]], b=[1,1], x=[1,1] gives about [0.018, 0.982]"""
    W, b, x = torch.tensor([[1., 2.], [3., 4.]]), torch.ones(2), torch.ones(2)
    close(submission.run(forward, W=W, b=b, x=x), torch.softmax(x @ W.T + b, -1), "the net on x=[1, 1]")


@pytest.mark.points(4)
def test_one_layer_net_batch(submission):
    """a batch [N, input_size] gives one probability row per input"""
    torch.manual_seed(1)
    W, b, x = torch.randn(4, 6), torch.randn(4), torch.randn(8, 6)
    p = tensor(submission.run(forward, W=W, b=b, x=x), "the net on a batch of 8", [8, 4])
    close(p.sum(1), torch.ones(8), "the sum of each row of probabilities")
    close(p, torch.softmax(x @ W.T + b, -1), "the probabilities of a batch")


@pytest.mark.points(4)
@pytest.mark.hidden
def test_one_layer_net_random_weights_and_negative_scores(submission):
    """random weights, large negative scores, single vectors and batches"""
    torch.manual_seed(2)
    W, b = torch.randn(10, 20) * 4, torch.randn(10) - 20
    for x in (torch.randn(20), torch.randn(3, 20) * 3):
        close(submission.run(forward, W=W, b=b, x=x), torch.softmax(x @ W.T + b, -1),
              f"the probabilities for an input of shape {list(x.shape)}", reveal=False)
