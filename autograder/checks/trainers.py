"""Checking a trainer (train_online, train_minibatch) by the weights it leaves.

The worker only runs the student's trainer on a net and data the grader chose, and sends the
net's weights back; everything is judged here from those weights:

- on pictures that each light one pixel of their own, picture i can only move column i of the
  templates, and by a known amount per use: which columns moved, and by how much, say how many
  pictures each step took, how many steps there were and with which learning rate (the mean of
  the batch's loss, not the sum), whether every picture can be drawn (the last one too) and
  whether they are drawn at random, and whether each was learned with its own label;
- on copies of one picture, one, two and three steps must be the lecture's rule exactly, which a
  trainer with momentum, Adam or a forgotten zero_grad does not follow;
- the lab's recipe on the training set, whose weights the grader scores on the test set.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from autograder.assertions import assert_close, assert_tensor
from autograder.messages import Build, ModuleState

PIXELS, CLASSES = 784, 10
LIGHT = 1.0  # the value of a picture's one lit pixel


class TemplateNet(nn.Module):
    """The labs' bias-free one-layer net, as the grader builds it to score returned weights."""

    def __init__(self):
        super().__init__()
        self.linear_layer = nn.Linear(PIXELS, CLASSES, bias=False)

    def forward(self, x):
        return torch.softmax(self.linear_layer(x), dim=1)


class OneLayerNet(nn.Module):
    """Lab 03's one_layer_net, as the grader builds it to score returned weights."""

    def __init__(self):
        super().__init__()
        self.mylayer = nn.Linear(PIXELS, CLASSES)

    def forward(self, x):
        return torch.softmax(self.mylayer(x), dim=-1)


def template_net(W: torch.Tensor) -> Build:
    """The provided template_net of the lab, starting from templates W."""
    return Build("template_net", (PIXELS, CLASSES), state={"linear_layer.weight": W})


def pixel_pictures(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Picture i lights pixel i alone and has label (3i + 1) mod 10, so column i of the
    templates learns picture i, and its label's row should grow."""
    data = torch.zeros(n, 28, 28)
    data.view(n, -1)[torch.arange(n), torch.arange(n)] = LIGHT
    return data, (torch.arange(n) * 3 + 1) % CLASSES


def one_step(W: torch.Tensor, x: torch.Tensor, label: int, lr: float) -> torch.Tensor:
    """The lecture's rule for one picture x (a vector) of class `label`: W + lr (onehot - p) x^T."""
    p = torch.softmax(W @ x, dim=0)
    e = torch.nn.functional.one_hot(torch.tensor(label), W.shape[0]).float() - p
    return W + lr * torch.outer(e, x)


def _weights(submission, trainer: str, W0: torch.Tensor, data, labels, **kwargs) -> torch.Tensor:
    """The templates a template_net starting at W0 holds after `trainer` ran on (data, labels)."""
    outcome = submission.call(trainer, template_net(W0), data, labels, seed=submission.draw_seed(), what=f"{trainer}(...)",
                              **kwargs)
    state = outcome.args[0]
    assert isinstance(state, ModuleState), "the net given to the trainer did not come back"
    return assert_tensor(state.parameters.get("linear_layer.weight"), "the trained templates", [CLASSES, PIXELS])


def uses(W0: torch.Tensor, W: torch.Tensor, labels: torch.Tensor, step: float, most: int = 60
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """For pixel pictures: how many times each picture was used (steps of size `step` = lr / batch
    for its column), and how far its column is from that many steps, in steps."""
    n = len(labels)
    start, end = W0[:, :n].double(), W[:, :n].double()
    target = torch.nn.functional.one_hot(labels, CLASSES).double().T
    w, best, count = start.clone(), (end - start).norm(dim=0), torch.zeros(n, dtype=torch.long)
    for m in range(1, most + 1):
        w = w + step * LIGHT * (target - torch.softmax(LIGHT * w, dim=0))
        error = (end - w).norm(dim=0)
        better = error < best
        best, count = torch.where(better, error, best), torch.where(better, torch.full_like(count, m), count)
    one = (step * LIGHT * (target[:, :1] - 1 / CLASSES)).norm().item()
    return count, best / one


def check_steps(submission, trainer: str, lr: float, batch: int, steps: int, **kwargs) -> None:
    """n_iter steps of `batch` pictures each, with lr and the mean loss: seen in how many pictures
    were used and by how much each moved its column."""
    data, labels = pixel_pictures(200)
    W0 = torch.zeros(CLASSES, PIXELS)
    W = _weights(submission, trainer, W0, data, labels, lr=lr, n_iter=steps, **kwargs)
    count, off = uses(W0, W, labels, lr / batch)
    moved = (W - W0)[:, :200].abs().sum(0) > 0
    touched = int(moved.sum())
    settings = ", ".join(f"{k}={v}" for k, v in {"lr": lr, **kwargs, "n_iter": steps}.items())
    assert touched > 0, f"after {trainer}({settings}) the templates did not change at all"
    grew = (W - W0)[:, :200].argmax(0)
    assert not (moved & (grew != labels)).any(), \
        f"after {trainer}({settings}) some pictures were learned with another picture's label"
    assert off[moved].max() < 0.25 and (count[moved] > 0).all(), (
        f"after {trainer}({settings}) the templates moved by amounts that are not whole steps of lr"
        + (f" / bs = {lr / batch:g}: each step should take bs pictures, with the mean loss over the batch "
           "(F.nll_loss's default)" if batch > 1 else f" = {lr:g}: one SGD step of size lr per picture"))
    used = int(count.sum())
    assert used == batch * steps, (
        f"{trainer}({settings}) should use {steps} x {batch} = {steps * batch} pictures in all; the templates show "
        f"{used}: each of the n_iter steps takes {'ONE picture' if batch == 1 else 'a batch of bs pictures'}")
    # Batches of `batch` distinct draws touch about that many columns per step, not one.
    expected = 200 * (1 - (1 - 1 / 200) ** (batch * steps))
    assert touched >= expected - 4 * max(expected * 0.06, 1.0) - 1, \
        f"{trainer}({settings}) used only {touched} different pictures: each step should take {batch} random ones"


def check_sampling(submission, trainer: str, batch: int, runs: int = 3, **kwargs) -> None:
    """Every picture can be drawn, the last one too, and the draws are random, not in order."""
    data, labels = pixel_pictures(20)
    W0 = torch.zeros(CLASSES, PIXELS)
    for _ in range(runs):
        W = _weights(submission, trainer, W0, data, labels, lr=0.05, n_iter=400 // batch, **kwargs)
        never = [i for i in range(20) if torch.equal(W[:, i], W0[:, i])]
        assert not never, (f"with 20 pictures and {400 // batch} steps, picture(s) {never} were never used: draw the "
                           f"index from all N pictures, e.g. torch.randint(0, N, ...), whose upper end is excluded")
    data, labels = pixel_pictures(200)
    for _ in range(runs):
        W = _weights(submission, trainer, W0, data, labels, lr=0.05, n_iter=max(10 // batch, 1), **kwargs)
        touched = [i for i in range(200) if not torch.equal(W[:, i], W0[:, i])]
        if touched and touched[-1] - touched[0] + 1 > len(touched):
            return  # not one unbroken run of pictures: random draws
    raise AssertionError(f"{trainer} used the pictures in order (the first steps took pictures {touched[:8]}): "
                         "each step should draw random pictures")


def check_aligned(submission, trainer: str, **kwargs) -> None:
    """Each picture is learned with its own label: its column grows in its label's row."""
    data, labels = pixel_pictures(20)
    W0 = torch.zeros(CLASSES, PIXELS)
    W = _weights(submission, trainer, W0, data.view(20, -1), labels, **kwargs)
    delta = (W - W0)[:, :20]
    touched = delta.abs().sum(0) > 0
    wrong = int(((delta.argmax(0) != labels) & touched).sum())
    assert int(touched.sum()) >= 10, "training should change the templates of most pictures"
    assert wrong == 0, f"{wrong} pictures were learned with another picture's label"


def check_lr(submission, trainer: str, lrs, copies: int, reveal: bool = True, **kwargs) -> None:
    """One step with each learning rate is the lecture's rule with that lr (lr=0: no change)."""
    W0, x = torch.randn(CLASSES, PIXELS) * 0.01, torch.rand(PIXELS)
    data, labels = x.view(1, 28, 28).repeat(copies, 1, 1), torch.full((copies,), 4)
    for lr in lrs:
        W = _weights(submission, trainer, W0, data, labels, lr=lr, n_iter=1, **kwargs)
        assert_close(W, one_step(W0, x, 4, lr), f"the templates after one step with lr={lr}", atol=1e-6,
                     reveal=reveal, idea="Use the lr argument: torch.optim.SGD(net.parameters(), lr=lr).")


def check_exact_steps(submission, trainer: str, steps, copies: int, flat: bool = False, reveal: bool = True,
                      **kwargs) -> None:
    """On copies of one picture, n steps are n applications of W + lr (onehot - p) x^T: no
    momentum, no gradients carried over from the step before, the mean over the batch."""
    W0, x, lr = torch.randn(CLASSES, PIXELS) * 0.01, torch.rand(PIXELS), 0.3
    data = x.repeat(copies, 1) if flat else x.view(1, 28, 28).repeat(copies, 1, 1)
    labels = torch.full((copies,), 7)
    for n in steps:
        W = _weights(submission, trainer, W0, data, labels, lr=lr, n_iter=n, **kwargs)
        expected = W0
        for _ in range(n):
            expected = one_step(expected, x, 7, lr)
        assert_close(W, expected, f"the templates after {n} step{'s' * (n > 1)} on copies of one picture (lr={lr})",
                     atol=1e-5, reveal=reveal,
                     idea="Each step is W + lr (onehot - p) x^T: zero the gradients every step, no momentum, "
                          "plain SGD, and the mean loss over the batch.")


def score(state: ModuleState, test: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, nn.Module]:
    """Test accuracy of returned weights, loaded into the grader's own net."""
    net = OneLayerNet() if "mylayer.weight" in state.parameters else TemplateNet()
    net.load_state_dict(dict(state.parameters))  # names and shapes are checked here
    images, labels = test
    net = net.to(images.device)
    with torch.no_grad():
        predicted = net(images.reshape(len(images), -1)).argmax(1)
    return (predicted == labels).float().mean().item(), net


def check_recipe(submission, trainer: str, test, threshold: float, exact_steps: str, own_net: bool = False) -> None:
    """The lab's recipe (the trainer's defaults, a drawn seed) trains a fresh net to at least
    `threshold` test accuracy, scored by the grader on pictures the worker never had, with the
    classes renamed by the run's secret order (weights fitted anywhere else score by chance). It
    counts only for a trainer that takes the lecture's steps (the check `exact_steps` passed).
    With `own_net`, the net is the student's one_layer_net if it passed lab 03's checks."""
    passed, why = submission.check_result(exact_steps)
    assert passed, f"the recipe counts only for a trainer whose steps are the lecture's rule; one step was not: {why}"
    net, note, handle = Build("template_net", (PIXELS, CLASSES)), "template_net", submission
    if own_net:
        if submission.passed("one_layer_net"):
            net, note, handle = Build("one_layer_net", (PIXELS, CLASSES)), "your one_layer_net", \
                submission.with_unit("one_layer_net")
        else:
            note = "template_net (your one_layer_net did not pass lab 03's checks in this run, so it stood in)"
    outcome = handle.call(trainer, net, submission.training_images, submission.training_labels, seed=submission.draw_seed(),
                          on_device=True, what=f"{trainer} on the training set")
    state = outcome.args[0]
    assert isinstance(state, ModuleState), "the net given to the trainer did not come back"
    try:
        accuracy, scored = score(state, test)
    except RuntimeError as e:
        raise AssertionError(f"the trained net's weights do not fit the net it was given ({str(e)[:300]})") from None
    submission.keep(f"{trainer} {'own net' if own_net else 'template_net'} accuracy", torch.tensor([accuracy]))
    if not own_net:  # row c of the templates learned the class the run renamed c to
        W = scored.linear_layer.weight[submission.class_order(CLASSES)]
        submission.keep(f"{trainer} templates", W, picture="templates")
    assert accuracy >= threshold, (f"trained with {note}, the test accuracy is {accuracy:.3f}; a correct trainer "
                                   f"reaches {threshold} or more")
