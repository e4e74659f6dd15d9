"""Facts read statically from a unit's cell, in the grader: what it takes from libraries, and
whether it reaches outside plain code.

The worker is the student's, so a rule such as "written without nn.Linear" can only be judged
from the source text. Reaching outside plain code (code built from strings, attributes by
computed name, frames, the garbage collector, the import system, ctypes, unpickling,
monkeypatching what the cell did not create) could hide anything from the grader, so it is
reported as an escape: the unit fails its rule checks and a TA is asked to look.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

# Calling these, or passing them around, builds code or reaches objects by computed names.
DYNAMIC_BUILTINS = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
                    "getattr", "setattr", "delattr", "hasattr"}
ATTRIBUTE_BUILTINS = {"getattr", "setattr", "delattr", "hasattr"}  # fine with a literal name
# Modules that reach the interpreter's insides or turn strings into objects, however they are
# reached: imported, or as an attribute of another module (torch.importlib, os.sys).
ESCAPE_MODULES = {"importlib", "gc", "inspect", "ctypes", "_ctypes", "cffi", "builtins", "__builtin__", "codeop",
                  "runpy", "pdb", "bdb", "autograder", "imp", "pkgutil", "zipimport", "pickle", "_pickle", "cPickle",
                  "marshal", "pydoc", "timeit", "shelve", "dill", "cloudpickle", "sys", "code"}
IMPORTABLE = {"sys", "code"}  # imported plainly they are harmless; their dangerous parts are named below
# Attributes of frames, tracebacks, code and the import system, the dunders that open objects up,
# and the library calls that turn a string into an object.
ESCAPE_ATTRIBUTES = {
    "_getframe", "settrace", "setprofile", "_current_frames", "meta_path", "path_hooks", "path_importer_cache",
    "addaudithook", "f_back", "f_locals", "f_globals", "f_code", "f_builtins", "f_trace", "tb_frame",
    "tb_next", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "__dict__", "__code__",
    "__globals__", "__subclasses__", "__builtins__", "__closure__", "__func__", "__bases__", "__mro__", "__base__",
    "__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__reduce__", "__reduce_ex__", "__import__",
    "__loader__", "__spec__", "__traceback__", "__defaults__", "__kwdefaults__", "__wrapped__", "__self__",
    "__init_subclass__", "__class_getitem__", "__set_name__", "__class__", "get_field", "CompilationUnit",
    "locate",
}
NAME_GETTERS = {"attrgetter", "methodcaller"}  # operator's getattr in disguise
# Modules whose objects a cell may configure (plots, progress bars): it changes nothing graded.
CONFIGURABLE = {"matplotlib", "plt", "pyplot", "tqdm"}


@dataclass(frozen=True)
class Facts:
    """`names`: what the cell takes from libraries (every attribute it reads of anything but
    self, the names it imports, keyword names, literal names given to getattr); `escapes`: how it
    reaches outside plain code."""
    names: frozenset[str]
    escapes: tuple[str, ...]
    lines: tuple[int, ...] = ()  # where in the cell the escapes are


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:60]
    except Exception:  # an odd node: say what kind
        return type(node).__name__


class _Scanner(ast.NodeVisitor):
    def __init__(self, provided: set[str]):
        self.provided = provided  # names the provided cells bind (torch, F, nn, utils, template_net...)
        self.imported: dict[str, str] = {}  # name -> module it was imported from (this cell)
        self.own: set[str] = set()  # classes and functions the cell defines at top level
        self.bound: set[str] = set()  # other names the cell binds at top level
        self.escapes: list[str] = []
        self.scopes: list[tuple[set[str], set[str]]] = []  # (locals, aliases of outside objects)

    def flag(self, what: str) -> None:
        if what not in self.escapes:
            self.escapes.append(what)

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

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._import(alias.name, alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self._import(f"{node.module or ''}.{alias.name}", alias.asname or alias.name)

    def _import(self, module: str, bound: str) -> None:
        parts = module.strip(".").split(".")
        escapes = (set(parts) & (ESCAPE_MODULES | ESCAPE_ATTRIBUTES | DYNAMIC_BUILTINS)) - (
            IMPORTABLE if len(parts) == 1 else set())
        if escapes:
            self.flag(f"import {module.strip('.')}")
        if self.scopes:
            self.scopes[-1][0].add(bound)
            self.scopes[-1][1].add(bound)
        else:
            self.imported[bound] = module

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
        aliases = {a.arg for a, d in defaulted if self._aliases_outside(d)}  # def f(m=torch): m.x = ...
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
        self.scopes.append(({a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}, set()))
        self.visit(node.body)
        self.scopes.pop()

    # -- what the cell does --------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            return
        if node.id in ATTRIBUTE_BUILTINS:  # not called right here
            self.flag(f"{node.id} used as a value")
        elif node.id in DYNAMIC_BUILTINS or node.id in ESCAPE_ATTRIBUTES:
            self.flag(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ESCAPE_ATTRIBUTES or node.attr in ESCAPE_MODULES - {"code"}:
            self.flag(node.attr)
        elif node.attr in ("modules", "path") and isinstance(node.value, ast.Name) and \
                self.imported.get(node.value.id, node.value.id).split(".")[0] == "sys":
            self.flag(f"sys.{node.attr}")
        self.generic_visit(node)

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
                self.flag(f"{name} with a computed name")
            for a in node.args:
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and set(a.value.split(".")) & ESCAPE_ATTRIBUTES:
                    self.flag(a.value)
        if any(k.arg == "weights_only" for k in node.keywords):
            self.flag("weights_only")  # torch.load(..., weights_only=False) unpickles code
        self.generic_visit(node)

    def _attribute_call(self, name: str, node: ast.Call) -> None:
        literal = len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
        if not literal:
            self.flag(f"{name} with a computed name")
            return
        if node.args[1].value in ESCAPE_ATTRIBUTES | ESCAPE_MODULES:
            self.flag(node.args[1].value)
        target = node.args[0]
        if name in ("setattr", "delattr") and not (isinstance(target, ast.Name) and target.id == "self"):
            self.flag(f"{name} on {_dotted(target)}")

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
                self.flag(f"changes {_dotted(target)}")
        elif not isinstance(root, ast.Constant):  # (lambda m: m)(torch).x, type(t).clone, [torch][0].x
            self.flag(f"changes {_dotted(target)}")

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
        of those objects."""
        if not self._aliases_outside(value):
            return
        names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        if self.scopes:
            self.scopes[-1][1].update(names)
        else:
            for name in names:
                self.imported[name] = "alias"


def _walk_outside_functions(node: ast.AST):
    """ast.walk, without entering function or class bodies."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield from _walk_outside_functions(child)


def facts(source: str, provided: set[str] = frozenset()) -> Facts:
    """The facts of a cell; `provided`: names the provided cells bind, which the cell uses but
    did not create. A cell that does not parse has no names and no escapes (it fails elsewhere)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return Facts(frozenset(), ())
    scanner = _Scanner(set(provided))
    for node in tree.body:  # top-level names first: a function may use a name bound below it
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scanner.own.add(node.name)
        elif not isinstance(node, (ast.Import, ast.ImportFrom)):
            scanner.bound.update(n.id for n in _walk_outside_functions(node)
                                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    scanner.visit(tree)
    return Facts(frozenset(library_names(tree)), tuple(scanner.escapes))


def library_names(tree: ast.AST) -> set[str]:
    """What a cell takes from libraries, for rules like "written from tensor operations": every
    attribute it reads of anything but self (`nn.Linear`, `F.linear`, `x.softmax`, `f = x.softmax`),
    the names it imports (`from torch.nn.functional import softmax as sm` counts as softmax),
    keyword names (`requires_grad=True`), and literal names given to getattr or attrgetter. Its own
    names do not count, so a class may name itself or keep `self.linear`."""
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                used.update(alias.name.split("."))
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


def provided_names(setup: tuple[str, ...]) -> set[str]:
    """Names the provided cells bind at top level (imports, definitions, assignments)."""
    names: set[str] = set()
    for code in setup:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update(a.asname or a.name.split(".")[0] for a in node.names)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names
