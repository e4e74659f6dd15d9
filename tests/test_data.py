"""The data API of the course helpers (source/utils.py) and `autograder data`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autograder.cli import main
from conftest import idx_bytes, learnable_digits, write_mnist_idx


@pytest.fixture
def utils(course):
    return course.helpers()


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """An empty cache and an empty IDX search path, downloads off."""
    monkeypatch.setenv("AUTOGRADER_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOGRADER_IDX_PATH", str(tmp_path / "nowhere"))
    monkeypatch.setenv("AUTOGRADER_OFFLINE", "1")
    return tmp_path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_imports_in_course_format(utils, offline, gz):
    write_mnist_idx(offline / "idx", n_train=50, n_test=20, gz=gz)
    utils.import_idx("mnist", offline / "idx")
    images, labels = utils.load("mnist", "train")
    want_images, want_labels = learnable_digits(50, seed=0)
    assert images.dtype == torch.float32 and images.shape == (50, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (50,)
    assert torch.equal(images, torch.from_numpy(want_images).float() / 255)
    assert torch.equal(labels, torch.from_numpy(want_labels).long())
    assert len(utils.load("mnist", "test")[1]) == 20


def test_cache_serves_after_the_idx_files_are_gone(utils, offline):
    folder = write_mnist_idx(offline / "idx", n_train=30, n_test=10)
    utils.import_idx("mnist", folder)
    for f in folder.iterdir():
        f.unlink()
    assert len(utils.load_mnist("train")[1]) == 30


def test_idx_search_path_is_found_and_converted_once(utils, offline, monkeypatch):
    write_mnist_idx(offline / "shelf" / "mnist", n_train=30, n_test=10, gz=True)
    monkeypatch.setenv("AUTOGRADER_IDX_PATH", str(offline / "shelf"))
    assert len(utils.load("mnist", "test")[1]) == 10
    assert (offline / "cache" / "mnist" / "train.npz").is_file()


def test_missing_dataset_says_what_and_how_to_fix(utils, offline):
    with pytest.raises(utils.DatasetError) as e:
        utils.load("mnist")
    message = str(e.value)
    assert "mnist not found" in message and "autograder data mnist --import DIR" in message
    assert "\n" not in message


def test_missing_import_folder(utils, offline):
    with pytest.raises(utils.DatasetError, match="no such folder"):
        utils.import_idx("fashion-mnist", offline / "absent")


def test_missing_idx_file_is_named(utils, offline):
    folder = write_mnist_idx(offline / "idx", n_train=10, n_test=10)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(utils.DatasetError, match="missing t10k-labels-idx1-ubyte"):
        utils.import_idx("mnist", folder)


def test_truncated_file_is_refused(utils, offline):
    folder = write_mnist_idx(offline / "idx", n_train=10, n_test=10)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(utils.DatasetError, match="train-images-idx3-ubyte: truncated"):
        utils.import_idx("mnist", folder)
    assert not (offline / "cache" / "mnist" / "test.npz").exists()


def test_truncated_gzip_is_refused(utils, offline):
    folder = write_mnist_idx(offline / "idx", n_train=10, n_test=10, gz=True)
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(utils.DatasetError, match="cannot read"):
        utils.import_idx("mnist", folder)


def test_wrong_magic_number_is_refused(utils, offline):
    folder = write_mnist_idx(offline / "idx", n_train=10, n_test=10)
    # A labels file where images belong: a valid IDX file of the wrong kind.
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros(10, np.uint8)))
    with pytest.raises(utils.DatasetError, match="magic 00000801, expected 00000803"):
        utils.import_idx("mnist", folder)


def test_images_and_labels_of_different_lengths_are_refused(utils, offline):
    folder = write_mnist_idx(offline / "idx", n_train=10, n_test=10)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(utils.DatasetError, match="do not make a 28x28 dataset"):
        utils.import_idx("mnist", folder)


def test_corrupt_cache_says_how_to_rebuild(utils, offline):
    utils.import_idx("mnist", write_mnist_idx(offline / "idx", n_train=10, n_test=10))
    (offline / "cache" / "mnist" / "train.npz").write_bytes(b"not a zip")
    with pytest.raises(utils.DatasetError, match="unreadable cache.*autograder data mnist"):
        utils.load("mnist")


def test_unknown_dataset(utils, offline):
    with pytest.raises(utils.DatasetError, match="unknown dataset 'cifar'"):
        utils.load("cifar")


def test_cli_data_imports_a_folder(offline, capsys):
    folder = write_mnist_idx(offline / "idx", n_train=12, n_test=5, gz=True)
    assert main(["data", "mnist", "--import", str(folder), "--cache", str(offline / "c2")]) == 0
    assert "(train 12, test 5)" in capsys.readouterr().out
    assert (offline / "c2" / "mnist" / "test.npz").is_file()


def test_cli_data_missing_dataset_exits_nonzero_with_one_line(offline, capsys):
    assert main(["data", "mnist", "--offline"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("autograder data: mnist not found")


def test_cli_data_import_needs_one_dataset(offline, capsys):
    assert main(["data", "--import", str(offline)]) == 2
    assert "name it" in capsys.readouterr().err


def test_fashion_mnist_from_debian_package(data_env, course):
    images, labels = course.helpers().load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.bincount(labels).tolist() == [1000] * 10
