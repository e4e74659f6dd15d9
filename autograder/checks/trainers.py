"""Checking a trainer (train_online, train_minibatch) by the weights it leaves.

The worker only runs the student's trainer on a net and data the grader chose, and sends the
net's weights back; everything is judged here from those weights:

- on pictures that each light one pixel of their own, picture i can only move column i of the
  templates, and by a known amount per use: which columns moved, and by how much, say how many
  pictures each step took, how many steps there were and with which learning rate (the mean of
  the batch's loss, not the sum), whether every picture can be drawn (the last one too) and
  whether they are drawn at random, and whether each was learned with its own label;
- on copies of one picture, one, two and three steps must be the lecture's rule exactly, which a
  trainer with momentum, Adam or a forgotten zero_grad does not follow; so must a few steps on
  the student's own one_layer_net, whose bias learns too;
- the lab's recipe on the training set, whose weights the grader scores on the test set.

Each failure names one cause, found from the weights: templates that never moved, moved against
the gradient, by the wrong multiple of the step, with another picture's label, or otherwise off.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from autograder.assertions import assert_close, assert_tensor, call
from autograder.messages import Build, ModuleState

PIXELS, CLASSES = 784, 10
LIGHT = 1.0  # the value of a picture's one lit pixel
WEIGHT = "linear_layer.weight"

RULE = "W + lr (onehot - p) x^T"
UNCHANGED = ("the weights did not change at all: train the net you are given (not a copy), compute the loss from its "
             "output without .detach() or .item(), and call loss.backward() then optimizer.step(), with "
             "optimizer.zero_grad() before backward, not between backward and step")
ASCENT = (f"the weights moved against the lecture's rule ({RULE.replace('+', '-', 1)} instead of {RULE}): minimise the "
          "loss -log p[label], not its negative, and let SGD subtract lr times the gradient")
STEP_SIZE = ("take exactly n_iter steps, each one SGD step of size lr applied once (optimizer.step() alone, not a "
             "manual update as well), with the gradients zeroed before each backward, on the mean loss over the "
             "batch (F.nll_loss's default), without weight decay")
ONE_STEP = f"One step is {RULE}: plain SGD of size lr, without weight decay or momentum."
EXACT = (f"Each step is {RULE}: zero the gradients every step, no momentum, plain SGD, and the mean loss over "
         "the batch.")
LR = "Use the lr argument: torch.optim.SGD(net.parameters(), lr=lr)."
SAMPLING = "Draw the pictures at random from all N, e.g. torch.randint(0, N, ...), whose upper end is excluded."
ALIGNED = "Learn each picture with its own label: take the pictures and the labels at the same indices."
RECIPE = "The recipe trains with the trainer's defaults on the whole training set."


class TemplateNet(nn.Module):
    """The labs' bias-free one-layer net, as the grader builds it to score returned weights."""

    def __init__(self):
        super().__init__()
        self.linear_layer = nn.Linear(PIXELS, CLASSES, bias=False)

    def forward(self, x):
        return torch.softmax(self.linear_layer(x), dim=1)


def template_net(W: torch.Tensor) -> Build:
    """The provided template_net of the lab, starting from templates W."""
    return Build("template_net", (PIXELS, CLASSES), state={WEIGHT: W})


def pixel_pictures(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Picture i lights pixel i alone and has label (3i + 1) mod 10, so column i of the
    templates learns picture i, and its label's row should grow."""
    data = torch.zeros(n, 28, 28)
    data.view(n, -1)[torch.arange(n), torch.arange(n)] = LIGHT
    return data, (torch.arange(n) * 3 + 1) % CLASSES


def one_step(W: torch.Tensor, x: torch.Tensor, label: int, lr: float, b: torch.Tensor | None = None
             ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The lecture's rule for one picture x (a vector) of class `label`: W + lr (onehot - p) x^T
    (and b + lr (onehot - p) for a net with a bias, which is then returned too)."""
    p = torch.softmax(W @ x + (0 if b is None else b), dim=0)
    e = torch.nn.functional.one_hot(torch.tensor(label), W.shape[0]).to(W.dtype) - p
    return W + lr * torch.outer(e, x) if b is None else (W + lr * torch.outer(e, x), b + lr * e)


def _settings(trainer: str, **kwargs) -> str:
    return f"{trainer}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def _parameter(state, name: str, trainer: str, shape: list[int]) -> torch.Tensor:
    """A parameter of the net that came back from the trainer."""
    assert isinstance(state, ModuleState), "the net given to the trainer did not come back"
    assert name in state.parameters, (
        f"after {trainer} the net no longer has its parameter {name} (it has {sorted(state.parameters) or 'none'}): "
        "train the net's own parameters in place; do not replace them by plain tensors or delete them")
    return assert_tensor(state.parameters[name], f"{name} after {trainer}", shape)


def _weights(submission, trainer: str, W0: torch.Tensor, data, labels, idea: str, moves: bool = True,
             **kwargs) -> torch.Tensor:
    """The templates a template_net starting at W0 holds after `trainer` ran on (data, labels);
    with `moves`, they must have changed."""
    settings = _settings(trainer, **kwargs)
    outcome = call(submission, trainer, template_net(W0), data, labels, seed=submission.draw_seed(),
                   what=f"{settings} on {len(labels)} picture{'s' * (len(labels) > 1)}", idea=idea, **kwargs)
    W = _parameter(outcome.args[0], WEIGHT, trainer, [CLASSES, PIXELS])
    assert not (moves and torch.equal(W, W0)), f"after {settings} {UNCHANGED}"
    return W


def assert_step(start: torch.Tensor, got: torch.Tensor, expected: torch.Tensor, what: str, reveal: bool,
                idea: str, atol: float) -> None:
    """`got` is `expected`, both reached from `start`; if not, the message names what is off: no
    change, a step against the gradient, or the right direction with the wrong size."""
    moved, wanted = (got - start).double().flatten(), (expected - start).double().flatten()
    if torch.allclose(got.double(), expected.double(), atol=atol, rtol=1e-4) or not torch.isfinite(moved).all():
        assert_close(got, expected, what, atol=atol, reveal=reveal, idea=idea)
        return
    assert moved.norm() > 0, f"{what}: {UNCHANGED}"
    cosine = float(moved @ wanted / (moved.norm() * wanted.norm()))
    assert cosine > -0.9, f"{what}: {ASCENT}"
    scale = float(moved.norm() / wanted.norm())
    if cosine > 0.999 and abs(scale - 1) > 0.05:
        size = f"{scale:.3g} times" if reveal else ("more than" if scale > 1 else "less than")
        raise AssertionError(f"{what}: the weights moved {size} the lecture's step {RULE}: {STEP_SIZE}")
    assert_close(got, expected, what, atol=atol, reveal=reveal, idea=idea)


def _learned_against(delta: torch.Tensor, labels: torch.Tensor) -> bool:
    """On pixel pictures from zero templates: each picture's own label row shrank most, and by more
    than any row grew, as a step up the loss's gradient does."""
    shrank_most = (delta.argmin(0) == labels) & (-delta.min(0).values > delta.max(0).values)
    return delta.shape[1] > 0 and bool(shrank_most.all())


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
    each = "ONE picture" if batch == 1 else "a batch of bs random pictures"
    idea = f"Each of the n_iter steps takes {each} and one SGD step of size lr."
    W = _weights(submission, trainer, W0, data, labels, idea, lr=lr, **kwargs, n_iter=steps)
    settings = _settings(trainer, lr=lr, **kwargs, n_iter=steps)
    count, off = uses(W0, W, labels, lr / batch)
    moved = (W - W0)[:, :200].abs().sum(0) > 0
    touched = int(moved.sum())
    delta = (W - W0)[:, :200]
    assert not _learned_against(delta[:, moved], labels[moved]), f"after {settings} {ASCENT}"
    assert not (moved & (delta.argmax(0) != labels)).any(), \
        f"after {settings} some pictures were learned with another picture's label. {ALIGNED}"
    assert off[moved].max() < 0.25 and (count[moved] > 0).all(), (
        f"after {settings} the templates moved by amounts that are not whole steps of lr"
        + (f" / bs = {lr / batch:g}: each step should take bs pictures, with the mean loss over the batch "
           "(F.nll_loss's default)" if batch > 1 else f" = {lr:g}: one SGD step of size lr per picture"))
    used = int(count.sum())
    assert used == batch * steps, (
        f"{settings} should use {steps} x {batch} = {steps * batch} pictures in all; the templates show "
        f"{used}: each of the n_iter steps takes {each}")
    # Batches of `batch` distinct draws touch about that many columns per step, not one.
    expected = 200 * (1 - (1 - 1 / 200) ** (batch * steps))
    assert touched >= expected - 4 * max(expected * 0.06, 1.0) - 1, \
        f"{settings} used only {touched} different pictures: each step should take {batch} random ones"


def check_sampling(submission, trainer: str, batch: int, runs: int = 3, **kwargs) -> None:
    """Every picture can be drawn, the last one too, and the draws are random, not in order."""
    data, labels = pixel_pictures(20)
    W0 = torch.zeros(CLASSES, PIXELS)
    for _ in range(runs):
        W = _weights(submission, trainer, W0, data, labels, SAMPLING, lr=0.05, **kwargs, n_iter=400 // batch)
        never = [i for i in range(20) if torch.equal(W[:, i], W0[:, i])]
        assert not never, (f"with 20 pictures and {400 // batch} steps, picture(s) {never} were never used. "
                           f"{SAMPLING}")
    data, labels = pixel_pictures(200)
    for _ in range(runs):
        W = _weights(submission, trainer, W0, data, labels, SAMPLING, lr=0.05, **kwargs, n_iter=max(10 // batch, 1))
        touched = [i for i in range(200) if not torch.equal(W[:, i], W0[:, i])]
        if touched and touched[-1] - touched[0] + 1 > len(touched):
            return  # not one unbroken run of pictures: random draws
    raise AssertionError(f"{trainer} used the pictures in order (the first steps took pictures {touched[:8]}): "
                         "each step should draw random pictures")


def check_aligned(submission, trainer: str, **kwargs) -> None:
    """Each picture is learned with its own label: its column grows in its label's row."""
    data, labels = pixel_pictures(20)
    W0 = torch.zeros(CLASSES, PIXELS)
    W = _weights(submission, trainer, W0, data.view(20, -1), labels, ALIGNED, **kwargs)
    delta = (W - W0)[:, :20]
    touched = delta.abs().sum(0) > 0
    assert int(touched.sum()) >= 10, f"training should change the templates of most pictures. {SAMPLING}"
    assert not _learned_against(delta[:, touched], labels[touched]), ASCENT
    assert not ((delta.argmax(0) != labels) & touched).any(), \
        f"some pictures were learned with another picture's label. {ALIGNED}"


def check_lr(submission, trainer: str, lrs, copies: int, reveal: bool = True, **kwargs) -> None:
    """One step with each learning rate is the lecture's rule with that lr (lr=0: no change)."""
    W0, x = torch.randn(CLASSES, PIXELS) * 0.01, torch.rand(PIXELS)
    data, labels = x.view(1, 28, 28).repeat(copies, 1, 1), torch.full((copies,), 4)
    moved = {}
    for lr in lrs:
        W = _weights(submission, trainer, W0, data, labels, ONE_STEP, moves=lr != 0, lr=lr, **kwargs, n_iter=1)
        if lr == 0:
            assert torch.allclose(W, W0, atol=1e-7, rtol=0), f"with lr=0 the templates changed. {LR}"
        else:
            moved[lr] = W
    first, *others = moved
    assert not any(torch.allclose(moved[lr] - W0, moved[first] - W0, atol=1e-7, rtol=1e-4) for lr in others), \
        f"one step takes the same step whatever lr is. {LR}"
    for lr, W in moved.items():
        assert_step(W0, W, one_step(W0, x, 4, lr), f"the templates after one step with lr={lr}", reveal, ONE_STEP,
                    atol=1e-6)


def check_exact_steps(submission, trainer: str, steps, copies: int, flat: bool = False, reveal: bool = True,
                      **kwargs) -> None:
    """On copies of one picture, n steps are n applications of W + lr (onehot - p) x^T: no
    momentum, no gradients carried over from the step before, the mean over the batch."""
    W0, x, lr = torch.randn(CLASSES, PIXELS) * 0.01, torch.rand(PIXELS), 0.3
    data = x.repeat(copies, 1) if flat else x.view(1, 28, 28).repeat(copies, 1, 1)
    labels = torch.full((copies,), 7)
    for n in steps:
        W = _weights(submission, trainer, W0, data, labels, EXACT, lr=lr, **kwargs, n_iter=n)
        expected = W0
        for _ in range(n):
            expected = one_step(expected, x, 7, lr)
        assert_step(W0, W, expected, f"the templates after {n} step{'s' * (n > 1)} on copies of one picture (lr={lr})",
                    reveal, EXACT, atol=1e-5)


def check_own_net(submission, trainer: str, copies: int, **kwargs) -> None:
    """A few steps on copies of one picture train the student's lab 03 one_layer_net by the
    lecture's rule, its bias too: W + lr e x^T and b + lr e. If that net did not pass lab 03's
    checks in this run, template_net stands in, and the message says so."""
    # A dim picture, so that the first step leaves the second something to learn.
    W0, b0, x = torch.randn(CLASSES, PIXELS) * 0.01, torch.randn(CLASSES) * 0.1, torch.rand(PIXELS) * 0.1
    lr, label, n = 0.5, 6, 2
    data, labels = x.view(1, 28, 28).repeat(copies, 1, 1), torch.full((copies,), label)
    own = submission.passed("one_layer_net")
    if own:
        handle, names = submission.with_unit("one_layer_net"), ("mylayer.weight", "mylayer.bias")
        net = Build("one_layer_net", (PIXELS, CLASSES), state={names[0]: W0, names[1]: b0})
        note = "your one_layer_net"
    else:
        handle, names, net = submission, (WEIGHT,), template_net(W0)
        note = "template_net (your one_layer_net did not pass lab 03's checks in this run, so it stood in)"
    idea = "Each step trains every parameter of the net it is given: W + lr e x^T and b + lr e, e = onehot - p."
    settings = _settings(trainer, lr=lr, **kwargs, n_iter=n)
    state = call(handle, trainer, net, data, labels, seed=submission.draw_seed(), what=f"{settings} on {note}",
                 idea=idea, lr=lr, **kwargs, n_iter=n).args[0]
    W, b = W0, b0
    for _ in range(n):
        W, b = one_step(W, x, label, lr, b) if own else (one_step(W, x, label, lr), b)
    got = _parameter(state, names[0], trainer, [CLASSES, PIXELS])
    assert_step(W0, got, W, f"after {settings}, trained with {note}, the weights", True, EXACT, atol=1e-5)
    if own:
        got = _parameter(state, names[1], trainer, [CLASSES])
        assert not torch.equal(got, b0), (f"after {settings}, trained with {note}, the bias did not change: every "
                                          "parameter learns, so give the optimizer net.parameters()")
        assert_step(b0, got, b, f"after {settings}, trained with {note}, the bias", True,
                    "The bias learns like the weights: b + lr (onehot - p) at each step.", atol=1e-5)


def score(state: ModuleState, test: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, nn.Module]:
    """Test accuracy of returned templates, loaded into the grader's own net."""
    net = TemplateNet()
    W = _parameter(state, WEIGHT, "the recipe", [CLASSES, PIXELS])
    net.load_state_dict({WEIGHT: W})
    images, labels = test
    net = net.to(images.device)
    with torch.no_grad():
        predicted = net(images.reshape(len(images), -1)).argmax(1)
    return (predicted == labels).float().mean().item(), net


def check_recipe(submission, trainer: str, test, threshold: float, ceiling: float, exact_steps: str) -> None:
    """The lab's recipe (the trainer's defaults, a drawn seed) trains a fresh template_net to at least
    `threshold` test accuracy, scored by the grader on pictures the worker never had, with the
    classes renamed by the run's secret order (weights fitted anywhere else score by chance). It
    counts only for a trainer that takes the lecture's steps (the check `exact_steps` passed).
    A TA is asked to look at a trainer that tests the size of its data, or reaches more than the
    recipe can (`ceiling`, docs/calibration.md): it may not have trained by the lecture's rule."""
    lines = submission.facts.size_tests
    if lines:
        submission.review(f"tests the size of its training data (line{'s' * (len(lines) > 1)} "
                          f"{', '.join(map(str, lines))})")
    passed, why = submission.check_result(exact_steps)
    assert passed, f"the recipe counts only for a trainer whose steps are the lecture's rule; one step was not: {why}"
    outcome = call(submission, trainer, Build("template_net", (PIXELS, CLASSES)), submission.training_images,
                   submission.training_labels, seed=submission.draw_seed(), on_device=True,
                   what=f"{trainer} on the training set", idea=RECIPE)
    accuracy, scored = score(outcome.args[0], test)
    submission.keep(f"{trainer} template_net accuracy", torch.tensor([accuracy]))
    # Row c of the templates learned the class the run renamed c to.
    submission.keep(f"{trainer} templates", scored.linear_layer.weight[submission.class_order(CLASSES)],
                    picture="templates")
    if accuracy > ceiling:
        submission.review(f"reaches a test accuracy above {ceiling} with the recipe, more than the recipe reaches "
                          "trained by the lecture's rule")
    shown = math.floor(accuracy * 100) / 100  # two decimals, never rounded up to the threshold
    assert accuracy >= threshold, (f"trained with template_net, the test accuracy is {shown:.2f}, below the "
                                   f"{threshold} a correct trainer reaches. {RECIPE}")
