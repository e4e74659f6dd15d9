"""What the grader reads from a unit's source: the library names it uses and its escapes."""
from __future__ import annotations

import pytest

from autograder.rules import facts, provided_names
from conftest import code, reference_code

PROVIDED = provided_names(("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nimport utils",
                           "class template_net(nn.Module):\n    pass"))


@pytest.mark.parametrize("unit", ["Linear", "softmax", "one_layer_net", "train_online", "template_update",
                                  "train_minibatch"])
def test_the_reference_solutions_are_plain_code(unit):
    assert facts(reference_code(unit), PROVIDED).escapes == ()


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
    "from sys import modules": ("from sys import modules\n", "import sys.modules"),
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


@pytest.mark.parametrize("source", PLAIN.values(), ids=PLAIN.keys())
def test_plain_code_has_no_escapes(source):
    assert facts(source, PROVIDED).escapes == ()


@pytest.mark.parametrize("source,what", ESCAPES.values(), ids=ESCAPES.keys())
def test_each_escape_is_named(source, what):
    assert what in facts(source, PROVIDED).escapes


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
    assert name in facts(source, PROVIDED).names


def test_a_class_may_name_itself_and_strings_are_not_names():
    found = facts('class Linear(nn.Module):\n    def __init__(self):\n        super(Linear, self).__init__()\n'
                  '        print("softmax")\n', PROVIDED)
    assert "Linear" not in found.names and "softmax" not in found.names
