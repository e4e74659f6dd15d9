"""Facts read statically from a unit's cell, in the grader: what it takes from libraries, whether
it reaches outside plain code, and where a trainer tests the size of its training data.

The worker is the student's, so a rule such as "written without nn.Linear" can only be judged
from the source text, and only if the text says all the cell does. So the rules work like the
sandbox, by allow-list: a cell may import only the modules the course lists (course.toml, [rules]
modules), by name, and reach no other module as an attribute of what it imported. Anything else
could hide what the cell uses from this reading: another module, a private one (a leading
underscore), a star import, code built from strings, attributes by computed name or by format
field, dunder attributes, frames, the garbage collector, the import system, monkeypatching what the
cell did not create. Each is an escape: the unit fails its rule checks and a TA is asked to look.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from .course import CONFIG, CourseError

# Calling these, or passing them around, builds code or reaches objects by computed names.
DYNAMIC_BUILTINS = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
                    "getattr", "setattr", "delattr", "hasattr"}
ATTRIBUTE_BUILTINS = {"getattr", "setattr", "delattr", "hasattr"}  # fine with a literal name
# Modules that reach the interpreter's insides or turn strings into objects, when reached as an
# attribute of another module (torch.importlib, os.sys); imported, no module outside the course's
# list passes.
ESCAPE_MODULES = {"importlib", "gc", "inspect", "ctypes", "_ctypes", "cffi", "builtins", "__builtin__", "codeop",
                  "runpy", "pdb", "bdb", "autograder", "imp", "pkgutil", "zipimport", "pickle", "_pickle", "cPickle",
                  "marshal", "pydoc", "timeit", "shelve", "dill", "cloudpickle", "sys", "code", "traceback", "string"}
# Attributes of frames, tracebacks, code, string formatters and the import system, and the library
# calls that turn a string into an object.
ESCAPE_ATTRIBUTES = {
    "_getframe", "settrace", "setprofile", "_current_frames", "meta_path", "path_hooks", "path_importer_cache",
    "addaudithook", "f_back", "f_locals", "f_globals", "f_code", "f_builtins", "f_trace", "tb_frame",
    "tb_next", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "get_field", "vformat",
    "Formatter", "formatter_field_name_split", "formatter_parser", "walk_stack", "walk_tb", "CompilationUnit",
    "locate",
}
# Dunders a fair cell uses (super().__init__(), type(x).__name__, torch.__version__); every other
# one opens an object up (__dict__, __class__, __globals__, __subclasses__...).
PLAIN_DUNDERS = {"__init__", "__name__", "__qualname__", "__doc__", "__version__"}
NAME_GETTERS = {"attrgetter", "methodcaller"}  # operator's getattr in disguise
# Modules whose objects a cell may configure (plots, progress bars): it changes nothing graded.
CONFIGURABLE = {"matplotlib", "plt", "pyplot", "tqdm"}

# What to write instead, one line per kind of escape.
PLAIN = ("Write it with ordinary calls and attributes: no code built from strings, no attribute by a computed "
         "name, no frames or interpreter internals.")
IMPORT = ("Import only the modules this course allows (torch and its public parts such as torch.nn, "
          "torch.nn.functional and torch.optim; math, numpy, random, time, tqdm, matplotlib...), by name.")
STAR = "Import the module by name (import torch.nn.functional as F) and write F.<name>, not from ... import *."
PRIVATE = "Use torch's public API, not modules or attributes whose names start with an underscore."
DUNDER = ("Use ordinary attributes and calls, not dunder attributes such as __dict__ or __class__ "
          "(super().__init__() is fine).")
FORMAT = ("Format text with f-strings, whose fields are plain expressions; not .format on a template built at run "
          "time, nor fields such as {0.attribute} or {0[key]}.")
PATCH = "Leave torch and the provided code as they are: write functions and classes of your own instead."

# A data tensor still, after these methods (or these functions of it): the same pictures.
DATA_METHODS = {"reshape", "view", "flatten", "to", "float", "double", "half", "cuda", "cpu", "contiguous", "clone",
                "detach", "squeeze", "unsqueeze", "type", "type_as", "view_as", "reshape_as", "numpy", "requires_grad_"}
DATA_FUNCTIONS = {"reshape", "flatten", "as_tensor", "tensor", "asarray", "array", "from_numpy"}
SIZE_METHODS = {"size", "numel", "nelement"}


@dataclass(frozen=True)
class Policy:
    """What course.toml's [rules] allows a graded cell."""
    modules: frozenset[str]  # full dotted names of the modules a cell may import, or reach through one
    data_arguments: frozenset[str] = frozenset()  # parameter names that hold a trainer's training set

    def allows(self, module: str) -> bool:
        return module in self.modules


@lru_cache(maxsize=8)
def policy(course) -> Policy:
    """The [rules] of a course's course.toml; a CourseError names what is missing."""
    section = course.config.get("rules", {})
    modules, data = section.get("modules"), section.get("data_arguments", [])
    if not isinstance(modules, list) or not modules or not all(isinstance(m, str) and m for m in modules):
        raise CourseError(f"{course.root / CONFIG}: [rules] modules is missing: the list of the modules a graded "
                          f"cell may import")
    if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
        raise CourseError(f"{course.root / CONFIG}: [rules] data_arguments must be a list of parameter names")
    return Policy(frozenset(modules), frozenset(data))


@dataclass(frozen=True)
class Facts:
    """`names`: what the cell takes from libraries (every attribute it reads of anything but
    self, the names it imports, names it uses but never binds, keyword names, literal names given
    to getattr); `escapes`: how it reaches outside plain code, and `advice`, what to write
    instead; `size_tests`: the lines where a function tests the size of its training data;
    `lines`: every line (1-based, in the cell) of an escape or a size test."""
    names: frozenset[str]
    escapes: tuple[str, ...]
    lines: tuple[int, ...] = ()
    advice: tuple[str, ...] = ()
    size_tests: tuple[int, ...] = ()


# ---- which dotted names are modules, read from the disk without importing anything -----------

@lru_cache(maxsize=None)
def _folders(package: str) -> tuple[str, ...]:
    """The folders of `package`; () for a plain module or none at all."""
    parent, _, name = package.rpartition(".")
    if not parent:
        try:
            spec = importlib.util.find_spec(package)  # a top-level name: found, not imported
        except (ImportError, ValueError):  # ValueError: loaded without a spec
            return ()
        return tuple(spec.submodule_search_locations or ()) if spec else ()
    if name not in _children(parent):
        return ()
    return tuple(p for p in (os.path.join(folder, name) for folder in _folders(parent)) if os.path.isdir(p))


@lru_cache(maxsize=None)
def _children(package: str) -> frozenset[str]:
    return frozenset(m.name for m in pkgutil.iter_modules(_folders(package)))


def is_module(path: str) -> bool:
    """Whether a dotted name below a package names a module of it (torch.hub yes, torch.zeros no)."""
    parent, _, name = path.rpartition(".")
    return bool(parent) and name in _children(parent)


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:60]
    except Exception:  # an odd node: say what kind
        return type(node).__name__


def format_fields(template: str) -> list[str]:
    """The field names of a format template, those inside format specs too; [] if it is malformed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return []
    found = []
    for _, field, spec, _ in parsed:
        if field is not None:
            found.append(field)
        if spec:
            found += format_fields(spec)
    return found


class _Scanner(ast.NodeVisitor):
    def __init__(self, provided: Mapping[str, str], policy: Policy):
        self.provided = provided  # names the provided cells bind -> the module each is ("" if not one)
        self.policy = policy
        self.imported: dict[str, str] = {}  # top-level name -> the dotted path it stands for ("" if unknown)
        self.own: set[str] = set()  # classes and functions the cell defines at top level
        self.bound: set[str] = set()  # other names the cell binds at top level
        self.escapes: list[str] = []
        self.advice: list[str] = []
        self.lines: set[int] = set()
        self.scopes: list[tuple[set[str], dict[str, str]]] = []  # (locals, aliases of outside objects -> path)

    def flag(self, what: str, node: ast.AST, advice: str = PLAIN) -> None:
        if what not in self.escapes:
            self.escapes.append(what)
        if advice not in self.advice:
            self.advice.append(advice)
        self.lines.add(getattr(node, "lineno", 0) or 1)

    # -- names and their origins -------------------------------------------------------------
    def _outside(self, name: str) -> bool:
        """Is `name`, where it is used, something whose attributes the cell may not change?"""
        for local_names, aliases in reversed(self.scopes):
            if name in aliases:
                return True
            if name in local_names:
                return False
        if name in self.imported:
            return self.imported[name].split(".")[0] not in CONFIGURABLE and name not in CONFIGURABLE
        if self.scopes:  # a global read inside a function: the cell's own classes and data are its own
            return name not in self.own and (name not in self.bound or name in self.provided)
        return name not in self.own  # at top level, only its own classes and functions

    def _path(self, node: ast.AST) -> str:
        """The dotted name of the module attribute `node` is (`F.linear` -> torch.nn.functional.linear),
        or "" if it is not one."""
        if isinstance(node, ast.Attribute):
            base = self._path(node.value)
            return f"{base}.{node.attr}" if base else ""
        if not isinstance(node, ast.Name):
            return ""
        for local_names, aliases in reversed(self.scopes):
            if node.id in aliases:
                return aliases[node.id]
            if node.id in local_names:
                return ""
        if node.id in self.imported:
            return self.imported[node.id]
        return self.provided.get(node.id, "") if node.id not in self.bound and node.id not in self.own else ""

    def _aliases_outside(self, value: ast.AST) -> bool:
        """An expression that is an outside object itself (not a call's result): `torch`,
        `F.softmax`, `(torch, F)`, `type(x)`, `x.__class__`."""
        if isinstance(value, (ast.Tuple, ast.List, ast.Set)):
            return any(self._aliases_outside(v) for v in value.elts)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "type":
            return True
        root = _root(value)
        return isinstance(value, (ast.Name, ast.Attribute, ast.Subscript)) and isinstance(root, ast.Name) \
            and root.id != "self" and self._outside(root.id)

    def _reach(self, path: str, node: ast.AST) -> None:
        """A module attribute reached by name (`torch.hub`, `torch._C`): a module must be allowed, and
        nothing private."""
        parts = path.split(".")
        private = next((i for i, p in enumerate(parts) if p.startswith("_") and not _dunder(p)), None)
        if private is not None:
            self.flag(f"private {'.'.join(parts[:private + 1])}", node, PRIVATE)
        elif is_module(path) and not self.policy.allows(path):
            self.flag(f"module {path}", node, IMPORT)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            # `import a.b` binds a, so a must be allowed too; `import a.b as m` binds a.b alone
            self._check_import(alias.name, node, alias.name if alias.asname else top)
            self._import(alias.name if alias.asname else top, alias.asname or top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if node.level:
            self.flag(f"from {module} import", node, IMPORT)
        else:
            self._check_import(module, node, module)
        for alias in node.names:
            if alias.name == "*":
                self.flag(f"from {module} import *", node, STAR)
                continue
            full = f"{module}.{alias.name}"
            if alias.name.startswith("_"):
                self.flag(f"import {full}", node, PRIVATE)
            elif is_module(full) and not self.policy.allows(full):
                self.flag(f"import {full}", node, IMPORT)
            self._import(full, alias.asname or alias.name)

    def _check_import(self, module: str, node: ast.AST, bound: str) -> None:
        """`module` is imported and `bound`, a prefix of it, is what the cell can reach by name:
        each module from `bound` down to `module` must be allowed."""
        parts = module.split(".")
        if any(p.startswith("_") for p in parts):
            self.flag(f"import {module}", node, PRIVATE)
        elif not all(self.policy.allows(".".join(parts[:i])) for i in range(bound.count(".") + 1, len(parts) + 1)):
            self.flag(f"import {module}", node, IMPORT)

    def _import(self, path: str, bound: str) -> None:
        if self.scopes:
            self.scopes[-1][0].add(bound)
            self.scopes[-1][1][bound] = path
        else:
            self.imported[bound] = path

    # -- scopes --------------------------------------------------------------------------------
    def _function(self, node) -> None:
        args = node.args
        params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a}
        assigned = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        declared = {name for n in ast.walk(node) if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
        positional = [*args.posonlyargs, *args.args]
        defaulted = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
        defaulted += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        # def f(m=torch): m.x = ...
        aliases = {a.arg: self._path(d) for a, d in defaulted if self._aliases_outside(d)}
        self.scopes.append((params | (assigned - declared), aliases))
        for default in (*args.defaults, *args.kw_defaults):
            if default is not None:
                self.visit(default)
        for decorator in node.decorator_list:
            self.visit(decorator)
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        args = node.args
        self.scopes.append(({a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}, {}))
        self.visit(node.body)
        self.scopes.pop()

    # -- what the cell does --------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            return
        if node.id in ATTRIBUTE_BUILTINS:  # not called right here
            self.flag(f"{node.id} used as a value", node)
        elif node.id in DYNAMIC_BUILTINS or node.id in ESCAPE_ATTRIBUTES or (
                _dunder(node.id) and node.id not in PLAIN_DUNDERS):
            self.flag(node.id, node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _dunder(node.attr):
            if node.attr not in PLAIN_DUNDERS:
                self.flag(node.attr, node, DUNDER)
        elif node.attr in ESCAPE_ATTRIBUTES or node.attr in ESCAPE_MODULES - {"code", "string"}:
            self.flag(node.attr, node)
        elif node.attr in ("modules", "path") and isinstance(node.value, ast.Name) and \
                self.imported.get(node.value.id, node.value.id).split(".")[0] == "sys":
            self.flag(f"sys.{node.attr}", node)
        elif node.attr in ("format", "format_map"):
            self._format(node)
        path = self._path(node)
        if path:
            self._reach(path, node)
        self.generic_visit(node)

    def _format(self, node: ast.Attribute) -> None:
        """str.format reads attributes and items by the names in its template's fields."""
        template = node.value
        if not (isinstance(template, ast.Constant) and isinstance(template.value, str)):
            self.flag(f"{node.attr} on a template built at run time", node, FORMAT)
            return
        for field in format_fields(template.value):
            if "." in field or "[" in field:
                self.flag(f"format field {{{field[:40]}}}", node, FORMAT)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in ATTRIBUTE_BUILTINS and isinstance(func, ast.Name):
            self._attribute_call(name, node)
            for arg in (*node.args[:1], *node.args[2:], *[k.value for k in node.keywords]):
                self.visit(arg)
            return
        if name in NAME_GETTERS:
            if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args):
                self.flag(f"{name} with a computed name", node)
            for a in node.args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    for part in a.value.split("."):
                        if part in ESCAPE_ATTRIBUTES or (_dunder(part) and part not in PLAIN_DUNDERS):
                            self.flag(part, node)
        if any(k.arg == "weights_only" for k in node.keywords):
            self.flag("weights_only", node)  # torch.load(..., weights_only=False) unpickles code
        self.generic_visit(node)

    def _attribute_call(self, name: str, node: ast.Call) -> None:
        literal = len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
        if not literal:
            self.flag(f"{name} with a computed name", node)
            return
        attribute, target = node.args[1].value, node.args[0]
        if _dunder(attribute) and attribute not in PLAIN_DUNDERS:
            self.flag(attribute, node, DUNDER)
        elif attribute in ESCAPE_ATTRIBUTES | ESCAPE_MODULES:
            self.flag(attribute, node)
        base = self._path(target)
        if base:
            self._reach(f"{base}.{attribute}", node)
        if name in ("setattr", "delattr") and not (isinstance(target, ast.Name) and target.id == "self"):
            self.flag(f"{name} on {_dotted(target)}", node, PATCH)

    def _store(self, target: ast.AST) -> None:
        """An assignment or deletion: changing what the cell did not create is monkeypatching."""
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._store(element)
            return
        if not isinstance(target, (ast.Attribute, ast.Subscript)):
            return
        root = _root(target)
        if isinstance(root, ast.Name):
            # A container of its own may take items (history["loss"] = ...); attributes count.
            changes_attribute = isinstance(target, ast.Attribute) or any(
                isinstance(n, ast.Attribute) for n in ast.walk(target) if n is not root)
            if root.id != "self" and self._outside(root.id) and (changes_attribute or root.id in self.imported
                                                                or root.id in self.provided):
                self.flag(f"changes {_dotted(target)}", target, PATCH)
        elif not isinstance(root, ast.Constant):  # (lambda m: m)(torch).x, type(t).clone, [torch][0].x
            self.flag(f"changes {_dotted(target)}", target, PATCH)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._store(target)
            self._bind(target, node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._store(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._store(node.target)
        if node.value is not None:
            self._bind(node.target, node.value)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._bind(node.target, node.value)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._store(target)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        self.generic_visit(node)

    def _bind(self, target: ast.AST, value: ast.AST) -> None:
        """Note names bound to outside objects themselves (aliases), whose changes count as changes
        of those objects, and which stand for the module attribute they were bound to."""
        if not self._aliases_outside(value):
            return
        path = self._path(value) if isinstance(target, ast.Name) else ""
        names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        if self.scopes:
            self.scopes[-1][1].update(dict.fromkeys(names, path))
        else:
            self.imported.update(dict.fromkeys(names, path))


def _walk_outside_functions(node: ast.AST):
    """ast.walk, without entering function or class bodies."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield from _walk_outside_functions(child)


def facts(source: str, provided: Mapping[str, str], policy: Policy) -> Facts:
    """The facts of a cell; `provided`: what the provided cells bind (provided_names), which the
    cell uses but did not create; `policy`: the course's rules. A cell that does not parse has no
    names and no escapes (it fails elsewhere)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return Facts(frozenset(), ())
    scanner = _Scanner(provided, policy)
    for node in tree.body:  # top-level names first: a function may use a name bound below it
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scanner.own.add(node.name)
        elif not isinstance(node, (ast.Import, ast.ImportFrom)):
            scanner.bound.update(n.id for n in _walk_outside_functions(node)
                                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    scanner.visit(tree)
    sizes = size_tests(tree, policy.data_arguments)
    return Facts(frozenset(library_names(tree)), tuple(scanner.escapes), tuple(sorted(scanner.lines | set(sizes))),
                 tuple(scanner.advice), tuple(sizes))


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the cell binds anywhere: assigned, defined, imported, a parameter, caught."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return bound


def library_names(tree: ast.AST) -> set[str]:
    """What a cell takes from libraries, for rules like "written from tensor operations": every
    attribute it reads of anything but self (`nn.Linear`, `F.linear`, `x.softmax`, `f = x.softmax`),
    the names it imports (`from torch.nn.functional import softmax as sm` counts as softmax), the
    names it uses but never binds (after a star import, `linear(...)`), keyword names
    (`requires_grad=True`), and literal names given to getattr or attrgetter. Its own names do not
    count, so a class may name itself or keep `self.linear`."""
    used: set[str] = set()
    bound = _bound_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                used.update(alias.name.split("."))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            used.add(node.attr)
        elif isinstance(node, ast.Call):
            used.update(k.arg for k in node.keywords if k.arg)
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name in ("getattr", "hasattr"):
                used.update(strings[:1])  # getattr(F, "linear")
            elif name in NAME_GETTERS:
                used.update(part for s in strings for part in s.split("."))  # attrgetter("softmax")
    return used


# ---- a trainer that tests the size of its training data ------------------------------------

def _constant_names(tree: ast.AST) -> set[str]:
    """Names the cell only ever binds to constants (RECIPE = 60000)."""
    fixed = {id(t) for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
             and node.value is not None and _constant(node.value, set())
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    constant, other = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            (constant if id(node) in fixed else other).add(node.id)
        elif isinstance(node, ast.arg):
            other.add(node.arg)
    return constant - other


CONSTANT_CALLS = {"range", "int", "float", "tuple", "list", "set", "frozenset", "Size"}


def _constant(node: ast.AST, names: set[str]) -> bool:
    """An expression of constants only: 60000, (60000, 28, 28), 6 * 10**4, range(50000, 70000),
    torch.Size([60000, 784]), RECIPE."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float))
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_constant(e, names) for e in node.elts)
    if isinstance(node, ast.BinOp):
        return _constant(node.left, names) and _constant(node.right, names)
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand, names)
    if isinstance(node, ast.Call) and not node.keywords:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        return name in CONSTANT_CALLS and all(_constant(a, names) for a in node.args)
    return False


def _telling(node: ast.AST, names: set[str]) -> bool:
    """A constant that could tell data sets apart: not 0 or 1 alone (`if len(data) == 0`)."""
    return _constant(node, names) and not (isinstance(node, ast.Constant) and node.value in (0, 1))


class _SizeReader:
    """Within one function: which names hold its training data (as given, reshaped, moved) or the
    number of its pictures, and which expressions are that number."""

    def __init__(self, data: set[str]):
        self.data, self.sizes = set(data), set()

    def holds_data(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.data
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in DATA_METHODS and self.holds_data(node.func.value):
                return True
            return node.func.attr in DATA_FUNCTIONS and bool(node.args) and self.holds_data(node.args[0])
        return False

    def size(self, node: ast.AST, constants: set[str]) -> bool:
        """An expression of the number of pictures (and constants): len(data), data.shape[0],
        data.size(0), data.numel(), data.shape, n - 1 for n = len(data)."""
        if isinstance(node, ast.Name):
            return node.id in self.sizes
        if isinstance(node, ast.Attribute):
            return node.attr == "shape" and self.holds_data(node.value)
        if isinstance(node, ast.Subscript):
            first = isinstance(node.slice, ast.Constant) and node.slice.value in (0, -3)
            return first and self.size(node.value, constants)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "len":
                return len(node.args) == 1 and self.holds_data(node.args[0])
            if isinstance(func, ast.Name) and func.id in ("int", "float"):
                return len(node.args) == 1 and self.size(node.args[0], constants)
            if isinstance(func, ast.Attribute) and func.attr in SIZE_METHODS and self.holds_data(func.value):
                dims = [*node.args, *(k.value for k in node.keywords)]
                return not dims or (isinstance(dims[0], ast.Constant) and dims[0].value in (0, -3))
            return False
        if isinstance(node, ast.BinOp):
            sides = (node.left, node.right)
            return any(self.size(s, constants) for s in sides) and \
                all(self.size(s, constants) or _constant(s, constants) for s in sides)
        if isinstance(node, ast.UnaryOp):
            return self.size(node.operand, constants)
        return False

    def learn(self, function: ast.AST, constants: set[str]) -> None:
        """The names assigned the data or its size, twice over, so that a name assigned late in a
        loop is known where it is used early."""
        for _ in range(2):
            for node in ast.walk(function):
                if isinstance(node, ast.Assign):
                    pairs = [(t, node.value) for t in node.targets]
                elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    pairs = [(node.target, node.value)]
                else:
                    continue
                for target, value in pairs:
                    if isinstance(target, ast.Name) and self.holds_data(value):
                        self.data.add(target.id)
                    elif isinstance(target, ast.Name) and self.size(value, constants):
                        self.sizes.add(target.id)
                    elif isinstance(target, (ast.Tuple, ast.List)) and target.elts and \
                            isinstance(target.elts[0], ast.Name) and self.size(value, constants):
                        self.sizes.add(target.elts[0].id)  # n, h, w = data.shape


def size_tests(tree: ast.AST, data_arguments: frozenset[str]) -> list[int]:
    """Lines where a function with a training-data parameter tests how many pictures it got: a
    comparison of that number with a constant (`len(train_data) == 60000`, `n > 50000`,
    `data.shape == (60000, 28, 28)`), or the number itself as a condition or a match subject. Which
    data a trainer was given must not change what it does: the checks' small sets and the recipe's
    are trained alike."""
    constants = _constant_names(tree)
    found: set[int] = set()
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = function.args
        data = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)} & data_arguments
        if not data:
            continue
        reader = _SizeReader(data)
        reader.learn(function, constants)
        for node in ast.walk(function):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(reader.size(o, constants) for o in operands) and any(_telling(o, constants) for o in operands):
                    found.add(node.lineno)
            elif isinstance(node, (ast.If, ast.While, ast.IfExp)) and reader.size(node.test, constants):
                found.add(node.test.lineno)
            elif isinstance(node, ast.Match) and reader.size(node.subject, constants):
                found.add(node.lineno)
    return sorted(found)


def provided_names(setup: tuple[str, ...]) -> dict[str, str]:
    """Names the provided cells bind at top level (imports, definitions, assignments), each with
    the module it is ("" for what is not a module: a class, a function, data)."""
    names: dict[str, str] = {}
    for code in setup:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names.update({a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                              for a in node.names})
            elif isinstance(node, ast.ImportFrom):
                names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names[node.name] = ""
            elif isinstance(node, ast.Assign):
                names.update({n.id: "" for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)})
    return names
