"""How this course's feedback draws what its checks keep: a trainer's learned templates, beside
the reference solution's, and the class probabilities those templates give a test picture."""
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _test_picture(course):
    images, labels = course.helpers().load_arrays(course.dataset, course.withheld_split)
    return images[0].astype(np.float32) / 255, int(labels[0])


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max())
    return e / e.sum()


def pictures(kept: dict, reference: dict, course):
    """(heading, caption, draw, shared) for each picture of a student's page: `draw()` makes the
    figure; `shared` names a picture that is the same on every student's page (drawn once)."""
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
                      lambda W=W: helpers.templates_figure(W, names, "yours"), None))
        if name in reference:
            shown.append(("", "The same recipe with the reference solution.",
                          lambda W=reference[name][1]: helpers.templates_figure(W, names, "reference"),
                          f"reference {name}"))
        p = _softmax(W @ image.reshape(-1))
        shown.append(("", f"A test picture of a {names[label]}.", lambda: helpers.image_figure(image), "test picture"))
        shown.append(("", f"The class probabilities your {trainer} templates give it.",
                      lambda p=p: helpers.prob_figure(p, names), None))
    return shown
