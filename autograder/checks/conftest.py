"""The course's fixtures for its checks: the pictures only the grader scores on."""
import pytest


@pytest.fixture(scope="session")
def test_set(course, device):
    """The withheld split of the course's dataset (course.toml), on the grading device."""
    images, labels = course.helpers().load(course.dataset, course.withheld_split)
    return images.to(device), labels.to(device)
