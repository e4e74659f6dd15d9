"""Checking a trainer (train_online, train_minibatch): probes for the worker, judging for the grader.

Both labs' trainers are checked the same way, so the logic lives here once:
- a recording net shows what the trainer feeds the net at each step;
- a dataset of one repeated picture makes a step's update exact: W + lr (onehot - p) x^T;
- one-hot pictures with their own labels show that pictures and labels stay aligned;
- the lab's full recipe on Fashion-MNIST, whose weights the grader scores on the test set.
"""
from __future__ import annotations

import random

import torch
import torch.nn as nn

from .probes import probe

N_PIXELS, N_CLASSES = 784, 10


class TemplateNet(nn.Module):
    """The lab's bias-free one-layer net: each row of linear_layer.weight is a class template."""

    def __init__(self, n_in: int = N_PIXELS, n_out: int = N_CLASSES):
        super().__init__()
        self.linear_layer = nn.Linear(n_in, n_out, bias=False)

    def forward(self, x):
        return torch.softmax(self.linear_layer(x), dim=1)


class OneLayerNet(nn.Module):
    """Lab 03's one_layer_net, as the grader builds it: mylayer with bias, then softmax."""

    def __init__(self, n_in: int = N_PIXELS, n_out: int = N_CLASSES):
        super().__init__()
        self.mylayer = nn.Linear(n_in, n_out, bias=True)

    def forward(self, x):
        return torch.softmax(self.mylayer(x), dim=-1)


class Recording(TemplateNet):
    """A TemplateNet that notes the shape of every input it is given while gradients are on."""

    def __init__(self):
        super().__init__()
        self.shapes: list[list[int]] = []

    def forward(self, x):
        if torch.is_grad_enabled():
            self.shapes.append(list(x.shape))
        return super().forward(x)


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


# ---- probes (run in the worker) -------------------------------------------------------------

@probe
def record_calls(ctx, trainer, data, labels, kwargs):
    net = Recording().to(ctx.device)
    ctx.unit(trainer)(net, data.to(ctx.device), labels.to(ctx.device), **kwargs)
    return net.shapes


@probe
def train_from(ctx, trainer, W, data, labels, kwargs, seed=0):
    """Weights of a TemplateNet that starts at W after the trainer ran."""
    _seed(seed)
    net = TemplateNet(W.shape[1], W.shape[0]).to(ctx.device)
    with torch.no_grad():
        net.linear_layer.weight.copy_(W)
    ctx.unit(trainer)(net, data.to(ctx.device), labels.to(ctx.device), **kwargs)
    return net.linear_layer.weight


@probe
def train_recipe(ctx, trainer, seed, own_net_code=None, setup=()):
    """The lab's recipe on the training set in the worker; the weights it learned.

    With `own_net_code` (the student's lab 03 cell) the net is their one_layer_net(784, 10);
    if that code is missing or broken, the grader's own one_layer_net stands in for it.
    """
    _seed(seed)
    if own_net_code is None:
        net, kind = TemplateNet(), "template_net"
    else:
        namespace = {"__name__": "__main__"}
        try:
            for code in (*setup, own_net_code):
                exec(compile(code, "<one_layer_net cell>", "exec"), namespace)
            net, kind = namespace["one_layer_net"](N_PIXELS, N_CLASSES), "one_layer_net"
        except Exception:
            net, kind = OneLayerNet(), "reference one_layer_net"
        _seed(seed)
    net = net.to(ctx.device)
    data, labels = ctx.data["train_data"].to(ctx.device), ctx.data["train_label"].to(ctx.device)
    ctx.unit(trainer)(net, data, labels)
    return {"kind": kind, "state": {k: v for k, v in net.state_dict().items()}}


# ---- judging (in the grader) ----------------------------------------------------------------

def one_step(W: torch.Tensor, x: torch.Tensor, label: int, lr: float) -> torch.Tensor:
    """The lecture's rule for one picture x (a row) of class `label`: W + lr (onehot - p) x^T."""
    p = torch.softmax(W @ x, dim=0)
    e = torch.nn.functional.one_hot(torch.tensor(label), W.shape[0]).float() - p
    return W + lr * torch.outer(e, x)


def aligned_dataset(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Picture i lights pixel i alone and has its own label, so column i of W learns label i."""
    data = torch.zeros(n, 28, 28)
    data.view(n, -1)[torch.arange(n), torch.arange(n)] = 1.0
    return data, (torch.arange(n) * 3 + 1) % N_CLASSES


def misaligned_columns(W0: torch.Tensor, W: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(columns the trainer touched, of which the largest increase is not in the picture's class)."""
    delta = (W - W0)[:, : len(labels)]
    touched = delta.abs().sum(0) > 0
    wrong = (delta.argmax(0) != labels) & touched
    return int(touched.sum()), int(wrong.sum())


def accuracy(state: dict, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Test accuracy of weights the worker returned, loaded into the grader's own net."""
    net = OneLayerNet() if "mylayer.weight" in state else TemplateNet()
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})  # shapes checked here
    images, labels = test
    net = net.to(images.device)
    with torch.no_grad():
        predicted = net(images.reshape(len(images), -1)).argmax(1)
    return (predicted == labels).float().mean().item()


def check_recipe(submission, trainer: str, test, threshold: float, own_net: bool = False) -> None:
    """The lab's recipe trains a net (the grader's template_net, or the student's own
    one_layer_net from lab 03) to at least `threshold` accuracy, scored by the grader."""
    extra = submission.other_lab_code("one_layer_net") if own_net else {}
    result = submission.run(train_recipe, trainer=trainer, seed=1 if own_net else 0, **extra)
    if not own_net:
        submission.keep(f"{trainer} templates", result["state"].get("linear_layer.weight"))
    score = accuracy(result["state"], test)
    assert score >= threshold, (f"trained with {'your ' + result['kind'] if own_net else 'template_net'}, "
                                f"the test accuracy is {score:.3f}; a correct trainer reaches {threshold} or more")
