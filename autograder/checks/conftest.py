"""The course's fixtures for its checks: the pictures only the grader scores on."""
import pytest


@pytest.fixture(scope="session")
def test_set(course, device, class_order):
    """The withheld split of the course's dataset (course.toml), on the grading device, its
    classes renamed as the workers' training labels are."""
    images, labels = course.helpers().load(course.dataset, course.withheld_split)
    return images.to(device), class_order(int(labels.max()) + 1)[labels].to(device)
