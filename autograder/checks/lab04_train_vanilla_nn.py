"""Lab 04 — serial learning: one random picture per step, W <- W + lr (onehot - p) x^T.

Learning adds the error times the picture to the templates; after 5000 pictures the rows of W
look like the classes they vote for.
"""
import pytest

import trainers

# Every worker of this lab holds the training set: the provided cells load it, the recipe trains on it.
pytestmark = pytest.mark.training_set

# Calibrated with scripts/calibrate.py; see docs/calibration.md. A correct trainer reaches at least the
# threshold with any seed, and no more than the ceiling: above it a TA is asked to look.
ACCURACY_THRESHOLD = 0.59
ACCURACY_CEILING = 0.815
EXACT_STEP = "test_train_online_one_step_is_the_lecture_rule"


@pytest.mark.points(2)
@pytest.mark.cell("test_train_online_calls")
def test_train_online_one_picture_per_step(submission):
    """each of the n_iter steps learns from ONE picture, with one SGD step of size lr"""
    trainers.check_steps(submission, "train_online", lr=0.05, batch=1, steps=10)


@pytest.mark.points(1)
@pytest.mark.cell("test_train_online_calls")
def test_train_online_draws_random_pictures_from_the_whole_set(submission):
    """pictures are drawn at random from all N, the last one included"""
    trainers.check_sampling(submission, "train_online", batch=1)


@pytest.mark.points(1)
@pytest.mark.cell("test_train_online_calls")
@pytest.mark.hidden
def test_train_online_keeps_pictures_and_labels_aligned(submission):
    """each picture is learned with its own label, from [N, 784] input too"""
    trainers.check_aligned(submission, "train_online", lr=0.5, n_iter=200)


@pytest.mark.points(2)
@pytest.mark.cell("test_train_online_lr")
def test_train_online_uses_the_lr_it_is_given(submission):
    """lr=0 changes nothing; lr=0.02 takes a step of 0.02"""
    trainers.check_lr(submission, "train_online", (0.0, 0.02), copies=1)


@pytest.mark.points(1)
@pytest.mark.cell("test_train_online_lr")
@pytest.mark.hidden
def test_train_online_large_learning_rates(submission):
    """steps of lr 0.5 and 1.5"""
    trainers.check_lr(submission, "train_online", (0.5, 1.5), copies=1, reveal=False)


@pytest.mark.points(3)
@pytest.mark.cell("test_train_online_one_step")
def test_train_online_one_step_is_the_lecture_rule(submission):
    """one step on one picture: W + lr (onehot - p) x^T"""
    trainers.check_exact_steps(submission, "train_online", (1,), copies=1)


@pytest.mark.points(2)
@pytest.mark.cell("test_train_online_one_step")
@pytest.mark.hidden
def test_train_online_two_and_three_steps_are_exact(submission):
    """two and three steps, from [N, 784] input: no momentum, gradients zeroed every step"""
    trainers.check_exact_steps(submission, "train_online", (2, 3), copies=1, flat=True, reveal=False)


@pytest.mark.points(2)
@pytest.mark.cell("test_train_online_accuracy")
def test_train_online_recipe_reaches_the_accuracy(submission, test_set):
    """the lab's recipe (lr 0.01, 5000 steps) trains template_net to the expected test accuracy"""
    trainers.check_recipe(submission, "train_online", test_set, ACCURACY_THRESHOLD, ACCURACY_CEILING, EXACT_STEP)


@pytest.mark.points(1)
@pytest.mark.cell("test_train_online_accuracy")
def test_train_online_trains_your_one_layer_net(submission):
    """a few steps train your lab 03 one_layer_net by the lecture's rule, its bias too"""
    trainers.check_own_net(submission, "train_online", copies=1)
