"""Lab 04 — serial learning: one random picture per step, W <- W + lr (onehot - p) x^T.

Learning adds the error times the picture to the templates; after 5000 pictures the rows of W
look like the classes they vote for.
"""
import pytest
import torch

from autograder import training
from autograder.judge import close, tensor

# Calibrated with scripts/calibrate.py over 20 seeds; see docs/calibration.md.
ACCURACY_THRESHOLD = 0.59
STEPS = 13


@pytest.mark.points(3)
def test_train_online_one_picture_per_step(submission):
    """each of the n_iter steps feeds the net ONE picture, as a [1, 784] batch"""
    data, labels = torch.rand(30, 28, 28), torch.randint(0, 10, (30,))
    shapes = submission.run(training.record_calls, trainer="train_online", data=data, labels=labels,
                            kwargs={"lr": 0.01, "n_iter": STEPS})
    assert isinstance(shapes, list), "the net's calls could not be recorded"
    assert len(shapes) == STEPS, f"with n_iter={STEPS} the net should be called {STEPS} times, not {len(shapes)}"
    assert all(s == [1, 784] for s in shapes), f"each step should feed a [1, 784] batch; saw {shapes[:3]}"


@pytest.mark.points(2)
def test_train_online_lr_zero_changes_nothing(submission):
    """with lr=0 the templates stay as they were"""
    torch.manual_seed(1)
    W, data, labels = torch.randn(10, 784) * 0.01, torch.rand(20, 28, 28), torch.randint(0, 10, (20,))
    after = submission.run(training.train_from, trainer="train_online", W=W, data=data, labels=labels,
                           kwargs={"lr": 0.0, "n_iter": 5})
    close(after, W, "the weights after training with lr=0")


@pytest.mark.points(3)
def test_train_online_one_step_is_the_lecture_rule(submission):
    """one step on one picture: W + lr (onehot - p) x^T, for the lr it is given"""
    torch.manual_seed(2)
    W, x = torch.randn(10, 784) * 0.01, torch.rand(784)
    after = submission.run(training.train_from, trainer="train_online", W=W, data=x.view(1, 28, 28),
                           labels=torch.tensor([3]), kwargs={"lr": 0.3, "n_iter": 1})
    close(after, training.one_step(W, x, 3, 0.3), "the weights after one step with lr=0.3 (loss -log p[label])")


@pytest.mark.points(2)
@pytest.mark.hidden
def test_train_online_keeps_pictures_and_labels_aligned(submission):
    """each picture is learned with its own label, from [N, 784] input too"""
    data, labels = training.aligned_dataset()
    W = torch.zeros(10, 784)
    after = submission.run(training.train_from, trainer="train_online", W=W, data=data.view(len(data), -1),
                           labels=labels, kwargs={"lr": 0.5, "n_iter": 200})
    touched, wrong = training.misaligned_columns(W, tensor(after, "the trained weights", [10, 784]), labels)
    assert touched >= 10, "training on 200 pictures should change the templates"
    assert wrong == 0, f"{wrong} pictures were learned with the wrong label"


@pytest.mark.points(3)
def test_train_online_recipe_reaches_the_accuracy(submission, fashion_mnist_test):
    """the lab's recipe (lr 0.01, 5000 steps) trains template_net to the expected test accuracy"""
    training.check_recipe(submission, "train_online", fashion_mnist_test, ACCURACY_THRESHOLD)


@pytest.mark.points(2)
def test_train_online_trains_your_one_layer_net(submission, fashion_mnist_test):
    """the recipe also trains your one_layer_net(784, 10) from lab 03 to the expected accuracy"""
    training.check_recipe(submission, "train_online", fashion_mnist_test, ACCURACY_THRESHOLD, own_net=True)
