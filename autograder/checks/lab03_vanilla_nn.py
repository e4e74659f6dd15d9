"""Lab 03 — a vanilla net of one layer: p = softmax(x W^T + b).

One linear layer scores the input against each class template; softmax turns scores into
probabilities.
"""
import ast

import pytest
import torch

from autograder.assertions import assert_close, assert_rules, assert_tensor, call, parameter_shapes
from autograder.messages import Build


def net(W, b) -> Build:
    """one_layer_net(in, out) holding W and b in mylayer."""
    return Build("one_layer_net", (W.shape[1], W.shape[0]), state={"mylayer.weight": W, "mylayer.bias": b})


def parameters(submission, n_in, n_out) -> dict:
    """{name: shape} of the parameters one_layer_net(n_in, n_out) registers."""
    what = f"one_layer_net({n_in}, {n_out})"
    return parameter_shapes(submission.call("one_layer_net", n_in, n_out, what=what).value, what)


def _on_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def layers_assigned(source: str) -> dict[str, str]:
    """The layers one_layer_net's methods give it, as {name: the called thing}: `self.<name> =
    <call>` (annotated too), `self.add_module("<name>", <call>)` (or register_module), and
    `setattr(self, "<name>", <call>)`."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name == "one_layer_net"):
            continue
        for item in ast.walk(node):
            if isinstance(item, (ast.Assign, ast.AnnAssign)) and isinstance(item.value, ast.Call):
                for target in item.targets if isinstance(item, ast.Assign) else [item.target]:
                    if isinstance(target, ast.Attribute) and _on_self(target.value):
                        found[target.attr] = ast.unparse(item.value.func)
            elif isinstance(item, ast.Call):
                func, args = item.func, item.args
                if isinstance(func, ast.Attribute) and func.attr in ("add_module", "register_module") \
                        and _on_self(func.value):
                    named = args[:2]
                elif isinstance(func, ast.Name) and func.id == "setattr" and args and _on_self(args[0]):
                    named = args[1:3]
                else:
                    continue
                if len(named) == 2 and isinstance(named[0], ast.Constant) and isinstance(named[0].value, str) \
                        and isinstance(named[1], ast.Call):
                    found[named[0].value] = ast.unparse(named[1].func)
    return found


@pytest.mark.points(2)
@pytest.mark.cell("test_one_layer_net_structure")
def test_one_layer_net_holds_mylayer_only(submission):
    """its parameters are mylayer.weight [output_size, input_size] and mylayer.bias [output_size], nothing else"""
    found = parameters(submission, 784, 10)
    assert found == {"mylayer.weight": [10, 784], "mylayer.bias": [10]}, (
        f"one_layer_net(784, 10) should hold exactly one layer, self.mylayer = nn.Linear(784, 10, bias=True): "
        f"parameters mylayer.weight [10, 784] and mylayer.bias [10]; it holds {found}")


@pytest.mark.points(2)
@pytest.mark.cell("test_one_layer_net_structure")
@pytest.mark.rule
def test_one_layer_net_mylayer_is_an_nn_Linear(submission):
    """self.mylayer = nn.Linear(input_size, output_size, bias=True) is its one layer"""
    assert_rules(submission.facts, "one_layer_net")
    W, b, x = torch.tensor([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0]]), torch.tensor([0.0, 1.0, -1.0]), torch.ones(2)
    assert_close(call(submission, net(W, b), x).value, torch.softmax(x @ W.T + b, -1), "one_layer_net(2, 3) on [1, 1]")
    layers = layers_assigned(submission.source)
    assert layers.get("mylayer", "").split(".")[-1] == "Linear", \
        f"__init__ should set self.mylayer = nn.Linear(input_size, output_size, bias=True); found {layers or 'none'}"


@pytest.mark.points(1)
@pytest.mark.cell("test_one_layer_net_structure")
@pytest.mark.hidden
def test_one_layer_net_parameters_for_any_size(submission):
    """parameters for other sizes"""
    for n_in, n_out in ((3, 5), (1, 2), (20, 7)):
        assert parameters(submission, n_in, n_out) == {"mylayer.weight": [n_out, n_in], "mylayer.bias": [n_out]}, \
            f"one_layer_net({n_in}, {n_out}) holds the wrong parameters"


@pytest.mark.points(3)
@pytest.mark.cell("test_one_layer_net_example")
def test_one_layer_net_lecture_example(submission):
    """W = [[1, 2], [3, 4]], b = [1, 1], x = [1, 1] gives about [0.018, 0.982]"""
    W, b, x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.ones(2), torch.ones(2)
    p = call(submission, net(W, b), x, what="the net on x = [1, 1]").value
    assert_close(p, torch.softmax(x @ W.T + b, -1), "the net on x = [1, 1]", atol=1e-4,
                 idea="The scores W x + b = [4, 8] go through softmax along the last dimension.")
    W, b, x = torch.randn(3, 2), torch.randn(3), torch.randn(2)
    assert_close(call(submission, net(W, b), x).value, torch.softmax(x @ W.T + b, -1), "the net on a random input",
                 idea="The scores W x + b go through softmax along the last dimension.")


@pytest.mark.points(2)
@pytest.mark.cell("test_one_layer_net_example")
@pytest.mark.hidden
def test_one_layer_net_example_on_a_batch(submission):
    """the same net on a batch of three inputs"""
    W, b = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.ones(2)
    for X in (torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, 2.0]]), torch.randn(4, 2)):
        assert_close(call(submission, net(W, b), X).value, torch.softmax(X @ W.T + b, -1), "the net on a batch",
                     atol=1e-4, reveal=False)


@pytest.mark.points(3)
@pytest.mark.cell("test_one_layer_net_batch")
def test_one_layer_net_batch(submission):
    """a batch [N, input_size] gives one row of probabilities per input"""
    W, b, X = torch.randn(10, 784) * 0.05, torch.randn(10), torch.rand(7, 784)
    p = assert_tensor(call(submission, net(W, b), X, what="the net on a batch [7, 784]").value,
                      "the net on a batch [7, 784]", [7, 10])
    assert_close(p.sum(1), torch.ones(7), "the sum of each row of probabilities",
                 idea="Softmax along the last dimension (dim=-1) makes each row sum to one.")
    assert_close(p, torch.softmax(X @ W.T + b, -1), "the probabilities of a batch")


@pytest.mark.points(2)
@pytest.mark.cell("test_one_layer_net_batch")
@pytest.mark.hidden
def test_one_layer_net_random_weights_and_negative_scores(submission):
    """random weights, large negative scores, single vectors and batches"""
    W, b = torch.randn(10, 20) * 4, torch.randn(10) - 20
    for x in (torch.randn(20), torch.randn(3, 20) * 3):
        assert_close(call(submission, net(W, b), x).value, torch.softmax(x @ W.T + b, -1),
                     f"the probabilities for an input of shape {list(x.shape)}", reveal=False)
