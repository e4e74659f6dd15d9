"""Lab 04 — serial learning: one random picture per step, W <- W + lr (onehot - p) x^T.

Learning adds the error times the picture to the templates; after 5000 pictures the rows of W
look like the classes they vote for.
"""
import pytest

from autograder import training

# Calibrated with scripts/calibrate.py over 20 seeds; see docs/calibration.md.
ACCURACY_THRESHOLD = 0.59


@pytest.mark.points(3)
def test_train_online_one_picture_per_step(submission):
    """each of the n_iter steps feeds the net ONE picture, as a [1, 784] batch"""
    training.check_batches(submission, "train_online", 1, {"lr": 0.01, "n_iter": 13})


@pytest.mark.points(2)
def test_train_online_lr_zero_changes_nothing(submission):
    """with lr=0 the templates stay as they were"""
    training.check_lr_zero(submission, "train_online", {"n_iter": 5})


@pytest.mark.points(3)
def test_train_online_one_step_is_the_lecture_rule(submission):
    """one step on one picture: W + lr (onehot - p) x^T, for the lr it is given"""
    training.check_one_step(submission, "train_online", 1, {"lr": 0.3})


@pytest.mark.points(2)
@pytest.mark.hidden
def test_train_online_keeps_pictures_and_labels_aligned(submission):
    """each picture is learned with its own label, from [N, 784] input too"""
    training.check_aligned(submission, "train_online", {"lr": 0.5, "n_iter": 200})


@pytest.mark.points(3)
def test_train_online_recipe_reaches_the_accuracy(submission, fashion_mnist_test):
    """the lab's recipe (lr 0.01, 5000 steps) trains template_net to the expected test accuracy"""
    training.check_recipe(submission, "train_online", fashion_mnist_test, ACCURACY_THRESHOLD)


@pytest.mark.points(2)
def test_train_online_trains_your_one_layer_net(submission, fashion_mnist_test):
    """the recipe also trains your one_layer_net(784, 10) from lab 03 to the expected accuracy"""
    training.check_recipe(submission, "train_online", fashion_mnist_test, ACCURACY_THRESHOLD, own_net=True)
