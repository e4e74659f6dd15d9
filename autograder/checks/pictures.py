"""How this course's feedback draws what its checks keep: a trainer's learned templates, beside
the reference solution's, and the class probabilities those templates give a test picture."""
from functools import lru_cache


@lru_cache(maxsize=1)
def _test_picture(course):
    images, labels = course.helpers().load(course.dataset, course.withheld_split)
    return images[0], int(labels[0])


def pictures(kept: dict, reference: dict, course):
    """(heading, caption, figure) for each picture of a student's page."""
    import torch

    helpers = course.helpers()
    names = helpers.CLASS_NAMES[course.dataset]
    image, label = _test_picture(course)
    shown = []
    for name, (picture, W) in sorted(kept.items()):
        if picture != "templates":
            continue
        trainer = name.split()[0]
        shown.append((f"Templates your {trainer} learned",
                      "The rows of W after the lab's recipe: red pixels vote for the class, blue against.",
                      helpers.templates_figure(W, names, "yours")))
        if name in reference:
            shown.append(("", "The same recipe with the reference solution.",
                          helpers.templates_figure(reference[name][1], names, "reference")))
        p = torch.softmax(W @ image.reshape(-1), dim=0)
        shown.append(("", f"A test picture of a {names[label]}.", helpers.image_figure(image)))
        shown.append(("", f"The class probabilities your {trainer} templates give it.", helpers.prob_figure(p, names)))
    return shown
