"""Lab 05 — mini-batches: the sum of outer products e x^T over a batch is one product E^T X.

template_update is the lecture's rule by hand; train_minibatch lets autograd and SGD do it on
batches of 200 pictures, with the loss averaged over the batch.
"""
import pytest
import torch
import torch.nn.functional as F

import trainers
from autograder.assertions import assert_close, assert_rules

# Every worker of this lab holds the training set: the provided cells load it, the recipe trains on it.
pytestmark = pytest.mark.training_set

# Calibrated with scripts/calibrate.py; see docs/calibration.md. A correct trainer reaches at least the
# threshold with any seed, and no more than the ceiling: above it a TA is asked to look.
ACCURACY_THRESHOLD = 0.77
ACCURACY_CEILING = 0.835
EXACT_STEP = "test_train_minibatch_step_averages_the_batch"
AUTOGRAD = {"backward", "autograd", "grad", "enable_grad", "set_grad_enabled", "requires_grad", "requires_grad_",
            "retain_grad", "Variable", "func", "functorch", "vjp", "jvp", "hvp", "jacobian", "hessian", "jacrev",
            "jacfwd", "vmap"}


def expected_update(W, X, labels, lr):
    """W - lr * gradient of the summed cross-entropy, by the grader's autograd."""
    W = W.clone().requires_grad_(True)
    F.cross_entropy(X @ W.T, labels, reduction="sum").backward()
    return (W - lr * W.grad).detach()


@pytest.mark.points(3)
@pytest.mark.cell("test_template_update_example")
def test_template_update_worked_example(submission):
    """W = 0, X = [[1, 2]], label 0: lr 1 gives [[0.5, 1], [-0.5, -1]], lr 0.1 ten times less"""
    W, X, labels = torch.zeros(2, 2), torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    for lr in (1.0, 0.1):
        got = submission.call("template_update", W, X, labels, lr, what=f"template_update(W, X, labels, {lr})")
        assert_close(got.value, lr * torch.tensor([[0.5, 1.0], [-0.5, -1.0]]), f"template_update with lr={lr}",
                     idea="W = 0 gives p = [0.5, 0.5], so e = onehot(0) - p = [0.5, -0.5], and e x^T is added.")
    W, X, labels = torch.randn(2, 2), torch.randn(1, 2), torch.tensor([1])
    got = submission.call("template_update", W, X, labels, 0.5, what="template_update on a random picture")
    assert_close(got.value, expected_update(W, X, labels, 0.5), "template_update on a random picture and W",
                 idea="P = softmax(X @ W.T), E = onehot(labels) - P, W + lr * E.T @ X.")


@pytest.mark.points(3)
@pytest.mark.cell("test_template_update_autograd")
def test_template_update_equals_a_gradient_step(submission):
    """equals W - lr * gradient of the cross-entropy summed over the batch"""
    W, X, labels = torch.randn(4, 6), torch.rand(5, 6), torch.tensor([0, 3, 1, 3, 2])
    got = submission.call("template_update", W, X, labels, 0.1, what="template_update(W, X, labels, 0.1)")
    assert_close(got.value, expected_update(W, X, labels, 0.1), "template_update on a batch of 5",
                 idea="Sum over the batch: W + lr * E.T @ X with E = onehot(labels) - softmax(X @ W.T); no mean.")


@pytest.mark.points(2)
@pytest.mark.cell("test_template_update_autograd")
@pytest.mark.hidden
def test_template_update_random_shapes_and_large_scores(submission):
    """random shapes, batch sizes and learning rates, with large scores"""
    for C, D, B, lr in ((3, 7, 1, 1.0), (10, 784, 200, 0.01), (5, 30, 33, 0.3)):
        W, X, labels = torch.randn(C, D) * 5, torch.rand(B, D), torch.randint(0, C, (B,))
        got = submission.call("template_update", W, X, labels, lr, what=f"template_update with C={C}, D={D}, B={B}")
        assert_close(got.value, expected_update(W, X, labels, lr), f"template_update with C={C}, D={D}, B={B}",
                     atol=1e-4, reveal=False)


@pytest.mark.points(1)
@pytest.mark.cell("test_template_update_pure")
def test_template_update_leaves_W_unchanged(submission):
    """returns a new tensor and leaves W as it was"""
    W, X, labels = torch.randn(3, 5), torch.rand(4, 5), torch.tensor([0, 1, 2, 1])
    got = submission.call("template_update", W, X, labels, 0.5, what="template_update(W, X, labels, 0.5)")
    assert_close(got.args[0], W, "W after template_update", idea="Compute a new tensor: W + lr * ..., not W += ...")
    assert_close(got.value, expected_update(W, X, labels, 0.5), "the returned templates")


@pytest.mark.points(1)
@pytest.mark.cell("test_template_update_pure")
def test_template_update_works_under_no_grad(submission):
    """works under torch.no_grad(): the rule by hand"""
    W, X, labels = torch.randn(10, 20), torch.rand(6, 20), torch.randint(0, 10, (6,))
    got = submission.call("template_update", W, X, labels, 0.2, grad=False, what="template_update under torch.no_grad()")
    assert_close(got.value, expected_update(W, X, labels, 0.2), "template_update under torch.no_grad()",
                 idea="Compute P, E and E.T @ X with tensor operations; autograd is off here.")


@pytest.mark.points(2)
@pytest.mark.cell("test_template_update_pure")
@pytest.mark.hidden
@pytest.mark.rule
def test_template_update_written_without_autograd(submission):
    """the rule by hand: no backward, autograd, enable_grad or requires_grad"""
    assert_rules(submission.facts, "template_update", AUTOGRAD,
                 "Write the update by hand: P = softmax(X @ W.T), E = onehot(labels) - P, W + lr * E.T @ X.")
    W, X, labels = torch.randn(5, 8), torch.rand(7, 8), torch.randint(0, 5, (7,))
    got = submission.call("template_update", W, X, labels, 0.3, grad=False)
    assert_close(got.value, expected_update(W, X, labels, 0.3), "template_update under torch.no_grad()", reveal=False)


@pytest.mark.points(3)
@pytest.mark.cell("test_template_update_batch1")
def test_template_update_batch_of_one(submission):
    """a batch of one picture is lab 04's outer product rule W + lr (onehot - p) x^T"""
    W, x = torch.randn(10, 784) * 0.01, torch.rand(784)
    got = submission.call("template_update", W, x.view(1, 784), torch.tensor([4]), 0.01,
                          what="template_update on a batch of one")
    assert_close(got.value, trainers.one_step(W, x, 4, 0.01), "template_update on a batch of one", atol=1e-6,
                 idea="For one picture E.T @ X is the outer product e x^T.")


@pytest.mark.points(3)
@pytest.mark.cell("test_train_minibatch_calls")
def test_train_minibatch_batches_of_bs(submission):
    """each of the n_iter steps learns from bs pictures, with the mean loss and one SGD step"""
    trainers.check_steps(submission, "train_minibatch", lr=0.05, batch=5, steps=10, bs=5)


@pytest.mark.points(2)
@pytest.mark.cell("test_train_minibatch_calls")
def test_train_minibatch_draws_random_pictures_from_the_whole_set(submission):
    """mini-batches are drawn at random from all N pictures, the last one included"""
    trainers.check_sampling(submission, "train_minibatch", batch=5, bs=5)


@pytest.mark.points(1)
@pytest.mark.cell("test_train_minibatch_calls")
@pytest.mark.hidden
def test_train_minibatch_keeps_pictures_and_labels_aligned(submission):
    """each picture is learned with its own label, from [N, 784] input too"""
    trainers.check_aligned(submission, "train_minibatch", lr=2.0, bs=4, n_iter=100)


@pytest.mark.points(3)
@pytest.mark.cell("test_train_minibatch_lr")
def test_train_minibatch_uses_the_lr_it_is_given(submission):
    """lr=0 changes nothing; lr=0.02 takes a step of 0.02"""
    trainers.check_lr(submission, "train_minibatch", (0.0, 0.02), copies=12, bs=4)


@pytest.mark.points(1)
@pytest.mark.cell("test_train_minibatch_lr")
@pytest.mark.hidden
def test_train_minibatch_large_learning_rates(submission):
    """steps of lr 0.5 and 1.5"""
    trainers.check_lr(submission, "train_minibatch", (0.5, 1.5), copies=12, bs=4, reveal=False)


@pytest.mark.points(4)
@pytest.mark.cell("test_train_minibatch_one_step")
def test_train_minibatch_step_averages_the_batch(submission):
    """one step on a batch of copies of one picture is W + lr (onehot - p) x^T: the mean, not the sum"""
    trainers.check_exact_steps(submission, "train_minibatch", (1,), copies=12, bs=5)


@pytest.mark.points(3)
@pytest.mark.cell("test_train_minibatch_one_step")
@pytest.mark.hidden
def test_train_minibatch_two_and_three_steps_are_exact(submission):
    """two and three steps, from [N, 784] input: no momentum, gradients zeroed every step"""
    trainers.check_exact_steps(submission, "train_minibatch", (2, 3), copies=12, flat=True, reveal=False, bs=4)


@pytest.mark.points(5)
@pytest.mark.cell("test_train_minibatch_accuracy")
def test_train_minibatch_recipe_reaches_the_accuracy(submission, test_set):
    """the lab's recipe (lr 0.01, bs 200, 5000 steps) trains template_net to the expected test accuracy"""
    trainers.check_recipe(submission, "train_minibatch", test_set, ACCURACY_THRESHOLD, ACCURACY_CEILING, EXACT_STEP)


@pytest.mark.points(3)
@pytest.mark.cell("test_train_minibatch_accuracy")
def test_train_minibatch_trains_your_one_layer_net(submission):
    """a few steps train your lab 03 one_layer_net by the lecture's rule, its bias too"""
    trainers.check_own_net(submission, "train_minibatch", copies=12, bs=4)
