"""Lab 05 — mini-batches: the sum of outer products e x^T over a batch is one product E^T X.

template_update is the lecture's rule by hand; train_minibatch lets autograd and SGD do it on
batches of 200 pictures, with the loss averaged over the batch.
"""
import pytest
import torch
import torch.nn.functional as F

from autograder import training
from autograder.judge import close
from autograder.probes import probe

# Calibrated with scripts/calibrate.py over 20 seeds; see docs/calibration.md.
ACCURACY_THRESHOLD = 0.77


@probe
def update(ctx, W, X, labels, lr, no_grad=False):
    W_before = W.clone()
    with torch.set_grad_enabled(not no_grad):
        new = ctx.unit("template_update")(W, X, labels, lr)
    return {"new": new, "W": W, "W_before": W_before}


def expected_update(W, X, labels, lr):
    """W - lr * grad of the summed cross-entropy, by the grader's autograd."""
    W = W.clone().requires_grad_(True)
    F.cross_entropy(X @ W.T, labels, reduction="sum").backward()
    return (W - lr * W.grad).detach()


@pytest.mark.points(5)
def test_template_update_equals_a_gradient_step(submission):
    """equals W - lr * gradient of the summed cross-entropy"""
    torch.manual_seed(1)
    W, X, labels = torch.randn(10, 784) * 0.01, torch.rand(16, 784), torch.randint(0, 10, (16,))
    got = submission.run(update, W=W, X=X, labels=labels, lr=0.05)
    close(got["new"], expected_update(W, X, labels, 0.05), "template_update(W, X, labels, 0.05)", atol=1e-5)


@pytest.mark.points(2)
def test_template_update_batch_of_one(submission):
    """a batch of one picture is the outer product rule W + lr (onehot - p) x^T"""
    torch.manual_seed(2)
    W, x = torch.randn(4, 9), torch.rand(9)
    got = submission.run(update, W=W, X=x.view(1, 9), labels=torch.tensor([2]), lr=0.1)
    close(got["new"], training.one_step(W, x, 2, 0.1), "template_update on a batch of one")


@pytest.mark.points(2)
def test_template_update_leaves_W_unchanged(submission):
    """returns a new tensor and leaves W as it was"""
    torch.manual_seed(3)
    W, X, labels = torch.randn(3, 5), torch.rand(4, 5), torch.tensor([0, 1, 2, 1])
    got = submission.run(update, W=W, X=X, labels=labels, lr=0.5)
    close(got["W"], got["W_before"], "W after template_update (compute a new tensor, do not change W)")
    close(got["new"], expected_update(W, X, labels, 0.5), "the returned templates")


@pytest.mark.points(3)
def test_template_update_works_without_autograd(submission):
    """works under torch.no_grad(): the rule by hand, no backward"""
    torch.manual_seed(4)
    W, X, labels = torch.randn(10, 20), torch.rand(6, 20), torch.randint(0, 10, (6,))
    got = submission.run(update, W=W, X=X, labels=labels, lr=0.2, no_grad=True)
    close(got["new"], expected_update(W, X, labels, 0.2), "template_update under torch.no_grad()")


@pytest.mark.points(3)
@pytest.mark.hidden
def test_template_update_random_shapes_and_large_scores(submission):
    """random shapes, batch sizes and learning rates, with large scores"""
    torch.manual_seed(5)
    for C, D, B, lr in ((3, 7, 1, 1.0), (10, 784, 200, 0.01), (5, 30, 33, 0.3)):
        W, X, labels = torch.randn(C, D) * 5, torch.rand(B, D), torch.randint(0, C, (B,))
        got = submission.run(update, W=W, X=X, labels=labels, lr=lr)
        close(got["new"], expected_update(W, X, labels, lr), f"template_update with C={C}, D={D}, B={B}",
              atol=1e-4, reveal=False)


@pytest.mark.points(5)
def test_train_minibatch_batches_of_bs(submission):
    """each of the n_iter steps feeds the net a batch of bs pictures, [bs, 784]"""
    training.check_batches(submission, "train_minibatch", 7, {"lr": 0.01, "bs": 7, "n_iter": 13})


@pytest.mark.points(3)
def test_train_minibatch_lr_zero_changes_nothing(submission):
    """with lr=0 the templates stay as they were"""
    training.check_lr_zero(submission, "train_minibatch", {"bs": 8, "n_iter": 3})


@pytest.mark.points(5)
def test_train_minibatch_step_averages_the_batch(submission):
    """one step on a batch is W + lr * mean of (onehot - p) x^T: the mean, not the sum"""
    training.check_one_step(submission, "train_minibatch", 12, {"lr": 0.3, "bs": 5})


@pytest.mark.points(3)
@pytest.mark.hidden
def test_train_minibatch_keeps_pictures_and_labels_aligned(submission):
    """each picture is learned with its own label, from [N, 784] input too"""
    training.check_aligned(submission, "train_minibatch", {"lr": 2.0, "bs": 4, "n_iter": 100})


@pytest.mark.points(6)
def test_train_minibatch_recipe_reaches_the_accuracy(submission, fashion_mnist_test):
    """the lab's recipe (lr 0.01, bs 200, 5000 steps) trains template_net to the expected test accuracy"""
    training.check_recipe(submission, "train_minibatch", fashion_mnist_test, ACCURACY_THRESHOLD)


@pytest.mark.points(3)
def test_train_minibatch_trains_your_one_layer_net(submission, fashion_mnist_test):
    """the recipe also trains your one_layer_net(784, 10) from lab 03 to the expected accuracy"""
    training.check_recipe(submission, "train_minibatch", fashion_mnist_test, ACCURACY_THRESHOLD, own_net=True)
