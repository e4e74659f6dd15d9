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

from .judge import close, tensor
from .probes import ProbeContext, probe

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
    device = next(net.parameters()).device.type
    return {"kind": kind, "device": device, "state": {k: v for k, v in net.state_dict().items()}}


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


def check_batches(submission, trainer: str, batch: int, kwargs: dict) -> None:
    """Each of the n_iter steps feeds the net one batch of `batch` pictures, [batch, 784]."""
    data, labels = torch.rand(50, 28, 28), torch.randint(0, N_CLASSES, (50,))
    shapes = submission.run(record_calls, trainer=trainer, data=data, labels=labels, kwargs=kwargs)
    steps = kwargs["n_iter"]
    assert isinstance(shapes, list), "the net's calls could not be recorded"
    assert len(shapes) == steps, f"with n_iter={steps} the net should be called {steps} times, not {len(shapes)}"
    assert all(s == [batch, N_PIXELS] for s in shapes), f"each step should feed a [{batch}, 784] batch; saw {shapes[:3]}"


def check_lr_zero(submission, trainer: str, kwargs: dict) -> None:
    """With lr=0 the templates stay as they were (and with lr=0.1 they move: a trainer that does
    nothing does not pass)."""
    torch.manual_seed(1)
    W, data, labels = torch.randn(10, 784) * 0.01, torch.rand(40, 28, 28), torch.randint(0, 10, (40,))
    after = submission.run(train_from, trainer=trainer, W=W, data=data, labels=labels, kwargs={**kwargs, "lr": 0.0})
    close(after, W, "the weights after training with lr=0")
    moved = submission.run(train_from, trainer=trainer, W=W, data=data, labels=labels, kwargs={**kwargs, "lr": 0.1})
    assert not torch.allclose(tensor(moved, "the trained weights", [10, 784]), W), \
        "with lr=0.1 the weights did not change at all: the trainer does not train"


def check_one_step(submission, trainer: str, copies: int, kwargs: dict) -> None:
    """One step on copies of one picture is the lecture's rule W + lr (onehot - p) x^T, whatever
    the batch: the loss is a mean, and lr is the one given."""
    torch.manual_seed(2)
    W, x = torch.randn(10, 784) * 0.01, torch.rand(784)
    data, labels = x.view(1, 28, 28).repeat(copies, 1, 1), torch.full((copies,), 3)
    after = submission.run(train_from, trainer=trainer, W=W, data=data, labels=labels, kwargs={**kwargs, "n_iter": 1})
    detail = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    close(after, one_step(W, x, 3, kwargs["lr"]), f"the weights after one step with {detail} (loss -log p[label])")


def check_aligned(submission, trainer: str, kwargs: dict) -> None:
    """Each picture is learned with its own label; input given as [N, 784]."""
    data, labels = aligned_dataset()
    W = torch.zeros(10, 784)
    after = submission.run(train_from, trainer=trainer, W=W, data=data.view(len(data), -1), labels=labels,
                           kwargs=kwargs)
    touched, wrong = misaligned_columns(W, tensor(after, "the trained weights", [10, 784]), labels)
    assert touched >= 10, f"training with {kwargs} should change the templates"
    assert wrong == 0, f"{wrong} pictures were learned with the wrong label"


def check_recipe(submission, trainer: str, test, threshold: float, own_net: bool = False) -> None:
    """The lab's recipe trains a net (the grader's template_net, or the student's own
    one_layer_net from lab 03) to at least `threshold` accuracy, scored by the grader."""
    extra = submission.other_lab_code("one_layer_net") if own_net else {}
    result = submission.run(train_recipe, trainer=trainer, seed=1 if own_net else 0, **extra)
    score = accuracy(result["state"], test)
    run = f"{trainer} {'own net' if own_net else 'template_net'}"
    submission.keep(f"{run} accuracy", torch.tensor([score]))
    submission.keep(f"{run} on cuda", torch.tensor([float(result.get("device") == "cuda")]))
    if not own_net:
        submission.keep(f"{trainer} templates", result["state"].get("linear_layer.weight"))
    assert score >= threshold, (f"trained with {'your ' + result['kind'] if own_net else 'template_net'}, "
                                f"the test accuracy is {score:.3f}; a correct trainer reaches {threshold} or more")


# ---- the reference solution, run by the grader itself (the instructor's code, not a student's) ----

def reference_namespace(course) -> dict:
    """Every lab's setup and source solutions executed in one namespace."""
    from .extract import extract

    namespace: dict = {"__name__": "__main__"}
    for lab in extract(course, tuple(lab.exercise for lab in course.labs)).values():
        for code in (*lab.setup, *lab.units.values()):
            exec(compile(code, "<source solution>", "exec"), namespace)
    return namespace


def reference_context(course, device: str = "cpu") -> ProbeContext:
    images, labels = course.helpers().load("fashion-mnist", "train")
    return ProbeContext(reference_namespace(course), {"train_data": images, "train_label": labels}, device)


def reference_templates(course, trainer: str = "train_minibatch") -> torch.Tensor:
    """The templates the source solution learns with the lab's recipe (seed 0), for feedback."""
    return train_recipe(reference_context(course), trainer, seed=0)["state"]["linear_layer.weight"]
