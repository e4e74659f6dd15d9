"""What the grader reads from a unit's source: the library names it uses, its escapes (by the
course's allow-list of modules), and where a trainer tests the size of its data."""
from __future__ import annotations

import pytest

from autograder import rules
from autograder.course import Course, CourseError
from conftest import ROOT, code, reference_code

PROVIDED = rules.provided_names(("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nimport utils",
                                 "class template_net(nn.Module):\n    pass"))
POLICY = rules.policy(Course(ROOT))


def facts(source: str) -> rules.Facts:
    return rules.facts(source, PROVIDED, POLICY)


@pytest.mark.parametrize("unit", ["Linear", "softmax", "one_layer_net", "train_online", "template_update",
                                  "train_minibatch"])
def test_the_reference_solutions_are_plain_code(unit):
    found = facts(reference_code(unit))
    assert (found.escapes, found.size_tests, found.lines) == ((), (), ())


PLAIN = {
    "literal getattr on self": "class L(nn.Module):\n    def f(self):\n        return getattr(self, 'bias', None)\n",
    "manual updates": code("""
        def train(net, data, labels, lr=0.01):
            for p in net.parameters():
                p.data -= lr * p.grad
                p.grad = None
            with torch.no_grad():
                net.linear_layer.weight -= 0.0
        """),
    "a plot and a progress bar": code("""
        import matplotlib.pyplot as plt
        from tqdm.auto import tqdm
        plt.rcParams["figure.figsize"] = (3, 3)
        for _ in tqdm(range(2)):
            print("softmax")
        """),
    "its own objects": "history = {}\nhistory['loss'] = []\nclass A:\n    pass\nA.x = 1\n",
    "net.modules()": "def f(net):\n    return list(net.modules())\n",
}
ESCAPES = {
    "getattr with a computed name": ('f = getattr(F, "lin" + "ear")\n', "getattr with a computed name"),
    "getattr as a value": ("import functools\nf = functools.reduce(getattr, ['nn', 'functional'], torch)\n", "getattr used as a value"),
    "exec": ('exec("x = 1")\n', "exec"),
    "eval in a function": ("def f(x):\n    return eval('x')\n", "eval"),
    "monkeypatching torch": ("torch.allclose = lambda *a, **k: True\n", "changes torch.allclose"),
    "monkeypatching through an alias": ("def g():\n    t = torch\n    t.exp = None\n", "changes t.exp"),
    "monkeypatching in a loop": ("def g():\n    for m in (torch, F):\n        m.softmax = None\n", "changes m.softmax"),
    "monkeypatching through a default": ("def g(m=torch):\n    m.softmax = None\n", "changes m.softmax"),
    "monkeypatching a provided class": ("template_net.forward = lambda self, x: x\n", "changes template_net.forward"),
    "setattr on a module": ("setattr(torch, 'exp', None)\n", "setattr on torch"),
    "the garbage collector": ("import gc\nobjs = gc.get_objects()\n", "import gc"),
    "frames": ("import sys\nf = sys._getframe(1)\n", "_getframe"),
    "tracebacks": ("try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__.tb_frame\n", "tb_frame"),
    "sys.modules": ('m = sys.modules["torch"]\n', "sys.modules"),
    "from sys import modules": ("from sys import modules\n", "import sys"),
    "the grader's package": ("import autograder.worker as w\n", "import autograder.worker"),
    "a module's __dict__": ('f = F.__dict__["linear"]\n', "__dict__"),
    "vars": ('f = vars(F)["linear"]\n', "vars"),
    "attrgetter": ('from operator import attrgetter\nf = attrgetter("lin" + "ear")(F)\n', "attrgetter with a computed name"),
    "ctypes": ("import ctypes\n", "import ctypes"),
    "importlib": ("import importlib\nm = importlib.import_module('torch')\n", "import importlib"),
    "builtins": ("import builtins\nbuiltins.isinstance = lambda *a: True\n", "import builtins"),
    "a lambda's result": ("(lambda m: m)(torch).exp = None\n", "changes (lambda m: m)(torch).exp"),
    "a module reached as an attribute": ('torch.builtins.exec("x = 1")\n', "builtins"),
    "sys reached through os": ('import os\nm = os.sys.modules\n', "sys"),
    "a class reached through type()": ("def f():\n    T = type(torch.zeros(1))\n    T.clone = None\n", "changes T.clone"),
    "a call's result changed": ("type(torch.zeros(1)).clone = None\n", "changes type(torch.zeros(1)).clone"),
    "unpickling": ('import pickle\nf = pickle.loads(b"ctorch\\nsoftmax\\n.")\n', "import pickle"),
    "pydoc.locate": ('import pydoc\nf = pydoc.locate("torch.soft" + "max")\n', "import pydoc"),
    "a format field": ('import string\nf = string.Formatter().get_field("0.soft" + "max", [torch], {})\n', "get_field"),
    "sys.path": ("import sys\nsys.path.insert(0, '/tmp')\n", "sys.path"),
    "torch.load of code": ("def f(p):\n    return torch.load(p, weights_only=False)\n", "weights_only"),
    "TorchScript from a string": ('f = torch.jit.CompilationUnit("def f(x): return x")\n', "CompilationUnit"),
    "a top-level object changed": ("net = template_net(784, 10)\nnet.forward = None\n", "changes net.forward"),
}


# Issue 14: what a deny-list of names missed, and what the allow-list of modules must catch.
ALLOW_LIST = {
    "a star import of F": ("from torch.nn.functional import *\ndef f(x, w, b):\n    return linear(x, w, b)\n",
                           "from torch.nn.functional import *"),
    "a private module": ("from torch._functorch.apis import *\n", "import torch._functorch.apis"),
    "a private module, starred": ("from torch._functorch.apis import *\n", "from torch._functorch.apis import *"),
    "a private attribute": ("f = torch._C._nn.linear\n", "private torch._C"),
    "a private name imported": ("from torch.nn.functional import _canonical_mask\n",
                                "import torch.nn.functional._canonical_mask"),
    "a module off the list": ("import os\n", "import os"),
    "a package off the list above an allowed module": ("import IPython.display\n", "import IPython.display"),
    "a submodule off the list": ("import torch.utils.cpp_extension\n", "import torch.utils.cpp_extension"),
    "a submodule off the list, imported from": ("from torch import hub\n", "import torch.hub"),
    "a submodule off the list, reached": ("def f():\n    return torch.hub.load('a', 'b')\n", "module torch.hub"),
    "a submodule off the list, by literal getattr": ('j = getattr(torch, "jit")\n', "module torch.jit"),
    "a relative import": ("from . import helpers\n", "from . import"),
    "a Formatter subclass": (code("""
        import string

        class Grab(string.Formatter):
            def format_field(self, value, spec):
                Grab.found = value
                return ""

        Grab().format("{0.nn.functional.lin" + "ear}", torch)
        """), "import string"),
    "Formatter reached as an attribute": ("class G(torch.string.Formatter):\n    pass\n", "Formatter"),
    "format on a computed template": ('t = "{0.nn.functional.lin" + "ear}"\ns = t.format(torch)\n',
                                      "format on a template built at run time"),
    "format_map on a computed template": ('s = ("{0.x" + "}").format_map({})\n',
                                          "format_map on a template built at run time"),
    "a literal attribute field": ('s = "{0.nn}".format(torch)\n', "format field {0.nn}"),
    "a literal index field in a spec": ('s = "{0:{1[0]}}".format(1, [2])\n', "format field {1[0]}"),
    "traceback.walk_stack": (code("""
        import traceback

        def f():
            for frame, _ in traceback.walk_stack(None):
                frame.f_locals
        """), "import traceback"),
    "walk_stack reached as an attribute": ("def f():\n    return torch.traceback.walk_stack(None)\n", "walk_stack"),
    "a dunder attribute": ("def f(net):\n    return net.__dict__\n", "__dict__"),
    "a dunder by literal getattr": ('def f(net):\n    return getattr(net, "__class__")\n', "__class__"),
    "a dunder name": ("f = __builtins__\n", "__builtins__"),
}


@pytest.mark.parametrize("source,what", ALLOW_LIST.values(), ids=ALLOW_LIST.keys())
def test_what_the_allow_list_does_not_hold_is_an_escape(source, what):
    found = facts(source)
    assert what in found.escapes, found.escapes
    assert found.advice, "an escape comes with what to write instead"


FAIR = {
    "imports a fair student writes": code("""
        import math, random, time, copy, itertools, functools, statistics, warnings
        from collections import defaultdict, deque
        from dataclasses import dataclass
        from typing import Optional
        import numpy as np
        import torch.nn.init as init
        from torch import nn, optim
        from torch.nn import functional
        from torch.optim.lr_scheduler import StepLR
        from torch.utils.data import DataLoader, TensorDataset
        from tqdm.notebook import tqdm
        import matplotlib.pyplot as plt
        from IPython.display import clear_output
        """),
    "attributes of allowed modules": code("""
        def f(x):
            device = "cuda" if torch.cuda.is_available() else "cpu"
            torch.nn.init.uniform_(x, -1, 1)
            i = np.random.randint(3) if False else torch.randint(0, 3, (1,))
            return torch.nn.functional.one_hot(i, 3), torch.utils.data.TensorDataset(x), torch.linalg.norm(x)
        """),
    "dunders a fair cell uses": code("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                nn.Module.__init__(self)
                print(type(self).__name__, torch.__version__, self.__doc__)

        if __name__ == "__main__":
            print(Net.__qualname__)
        """),
    "literal formats and f-strings": code("""
        def report(step, loss, stats):
            print("step {} loss {:.3f} {name}".format(step, loss, name="x"), f"{stats.mean:.2f} {stats['a']}")
            print("%d: %.3f" % (step, loss))
        """),
    "a deep copy made on purpose": "import copy\ndef f(net):\n    return copy.deepcopy(net)\n",
}


@pytest.mark.parametrize("source", FAIR.values(), ids=FAIR.keys())
def test_fair_code_passes_the_allow_list(source):
    assert facts(source).escapes == ()


def test_a_forbidden_name_counts_however_it_arrived():
    star = facts("from torch.nn.functional import *\ndef f(x, w, b):\n    return linear(x, w, b)\n")
    grad = facts("from torch._functorch.apis import *\ndef g(W):\n    return grad(lambda w: w.sum())(W)\n")
    own = facts("def f(x):\n    linear = x * 2\n    return linear\n")
    assert "linear" in star.names and "grad" in grad.names and "linear" not in own.names


def test_flagged_lines_are_those_of_the_cell():
    found = facts(code("""
        import math

        def f(x):
            y = x.__dict__
            return math.sqrt(2)

        s = "{0.nn}".format(torch)
        """))
    assert found.lines == (4, 7), found


SIZE_TESTS = {  # the body of a trainer -> the lines of its body that test the size of the data
    "len == a constant": ("if len(train_data) == 60000:\n    pass", [1]),
    "a size name > a constant": ("n = train_data.shape[0]\nif n > 50000:\n    pass", [2]),
    "of reshaped data": ("data = train_data.reshape(len(train_data), -1)\nx = 1 if data.size(0) >= 10000 else 2", [2]),
    "the labels' numel in a while": ("while train_label.numel() - 59999:\n    break", [1]),
    "a named constant": ("if len(train_label) in (RECIPE, 2 * RECIPE):\n    pass", [1]),
    "the whole shape": ("if train_data.shape == (60000, 28, 28):\n    pass", [1]),
    "a match": ("match len(train_data):\n    case 60000:\n        pass", [1]),
}
NOT_SIZE_TESTS = {
    "an epoch boundary": "data = train_data.flatten(1)\nfor step in range(n_iter):\n    if step % len(data) == 0:\n"
                         "        pass",
    "an empty set": "if len(train_data) == 0:\n    raise ValueError('no data')",
    "the picture format": "if train_data.dim() == 3 or len(train_data.shape) == 3 or train_data.shape[1] == 784:\n"
                          "    pass",
    "compared with an argument": "if n_iter > train_data.size(0):\n    pass",
    "a batch's size": "x = train_data[:5]\nif x.shape[0] == 5:\n    pass",
}


def _trainer(body: str) -> str:
    """A cell whose trainer's body starts on line 4."""
    return "RECIPE = 60000\n\ndef train_online(net, train_data, train_label, lr=0.01, n_iter=5000):\n" + \
        "".join(f"    {line}\n" for line in body.splitlines())


@pytest.mark.parametrize("body,lines", SIZE_TESTS.values(), ids=SIZE_TESTS.keys())
def test_a_test_of_the_training_data_size_is_found(body, lines):
    found = facts(_trainer(body))
    assert list(found.size_tests) == [n + 3 for n in lines] and set(found.size_tests) <= set(found.lines)
    assert found.escapes == ()  # a review, not an escape: the unit keeps its rule checks


@pytest.mark.parametrize("body", NOT_SIZE_TESTS.values(), ids=NOT_SIZE_TESTS.keys())
def test_other_tests_of_the_data_are_not_size_tests(body):
    assert facts(_trainer(body)).size_tests == ()


def test_a_course_without_rules_is_refused_in_one_line(course_copy):
    toml = course_copy.root / "course.toml"
    toml.write_text(toml.read_text().split("[rules]")[0])
    with pytest.raises(CourseError, match=r"\[rules\] modules is missing"):
        rules.policy(course_copy)


@pytest.mark.parametrize("source", PLAIN.values(), ids=PLAIN.keys())
def test_plain_code_has_no_escapes(source):
    assert facts(source).escapes == ()


@pytest.mark.parametrize("source,what", ESCAPES.values(), ids=ESCAPES.keys())
def test_each_escape_is_named(source, what):
    assert what in facts(source).escapes


@pytest.mark.parametrize("source,name", [
    ("def f(x):\n    return F.linear(x, w)\n", "linear"),
    ("from torch.nn.functional import softmax as sm\n", "softmax"),
    ("def f(x):\n    return x.softmax(-1)\n", "softmax"),
    ("def f(x):\n    return torch.nn.functional.linear(x, w)\n", "linear"),
    ('f = getattr(F, "linear")\n', "linear"),
    ('from operator import attrgetter\nf = attrgetter("softmax")\n', "softmax"),
    ("def f(x):\n    g = x.softmax\n    return g(-1)\n", "softmax"),
    ("f = (F,)[0].linear\n", "linear"),
    ("def f(W):\n    return torch.tensor(W.tolist(), requires_grad=True)\n", "requires_grad"),
])
def test_library_names_are_found_however_they_are_reached(source, name):
    assert name in facts(source).names


def test_a_class_may_name_itself_and_strings_are_not_names():
    found = facts('class Linear(nn.Module):\n    def __init__(self):\n        super(Linear, self).__init__()\n'
                  '        print("softmax")\n')
    assert "Linear" not in found.names and "softmax" not in found.names
