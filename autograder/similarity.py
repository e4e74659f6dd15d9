"""Similar units across students: groups whose code for one unit is nearly identical once
comments, docstrings, names, formatting, the released stub and code that many students write
alike are set aside. It informs a TA (the review queue, summary.html); it never changes points.

How (the fingerprints of MOSS and JPlag, for one unit of a class):

1. Each source is parsed with `ast`, whose tree holds no comments, layout or redundant
   parentheses; docstrings and other bare strings are dropped. Its tokens are the tree in
   pre-order (each node's kind, then its leaves), where every name the unit binds itself
   (variables, parameters, functions, classes, imports, attributes it assigns) is one placeholder:
   a renaming, consistent or not, changes nothing, while the names it only uses (torch.exp,
   .amax, keepdim=) still tell one formulation from another. Source that does not parse is cut by
   the standard library's `tokenize` instead, without comments and layout, every name but
   attributes the placeholder.
2. Every run of K tokens is a fingerprint. The released stub's fingerprints are set aside (every
   student starts from it), and so are those more students wrote than a tenth of the class and
   than COMMON_MIN (MOSS's -m): code many write alike, such as the textbook softmax of a short
   unit, shows nothing about who copied whom.
3. A student left with fewer than MIN_OWN fingerprints (the stub left as it was, a line or two) is
   similar to no one. Two students' score is the Jaccard index of their fingerprints; pairs at
   THRESHOLD or more are joined into groups, and a group's score is the lowest of any two of its
   students.

Why the tree rather than `tokenize` throughout: source tokens keep parentheses and line breaks,
and cannot tell a keyword argument (`dim=`) from a parameter of the same name, which the tree
does; walking it is also cheaper. Why not copydetect, the maintained winnowing tool: it would be a
new dependency working on files, its pygments tokens turn every name into one letter (the ones a
unit only uses too, which in a unit of three lines is most of what tells two formulations apart),
and it has no notion of code the whole class shares. This is some eighty lines of the standard
library: about 1.2 s of CPU for 200 students x 6 units (bench/bench_similarity.py).
"""
from __future__ import annotations

import ast
import io
import keyword
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

K = 5  # tokens a fingerprint; a line of code is about 8 to 15
MIN_OWN = 20  # fingerprints of one's own (beyond the stub and common code), about two lines, to be compared
THRESHOLD = 0.8  # Jaccard index from which two students' units are called nearly identical
COMMON_SHARE, COMMON_MIN = 0.1, 10  # a fingerprint more students than both of these wrote is common
NAME = "\0name"  # the placeholder of a name the unit binds itself
# The tree's fields that hold a name: a use (`id` when loaded, `attr` when read) or a binding.
NAME_FIELDS = {"id", "attr", "arg", "name", "asname", "names", "rest"}
IGNORED_FIELDS = {"ctx", "kind", "type_comment"}  # load/store, u"" prefixes, type comments
SKIPPED = {tokenize.ENCODING, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER}
LAYOUT = {tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}  # kept by kind: blocks matter, spacing not


@dataclass(frozen=True)
class Group:
    students: tuple[str, ...]
    score: float


def _bare_string(node: ast.AST) -> bool:
    """A docstring, or a string standing alone as a statement (a comment in disguise)."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


class _Name(NamedTuple):
    """A name in the tree, told apart from the placeholder once every binding is known."""
    name: str
    attribute: bool


def _tree_tokens(tree: ast.AST) -> list:
    """The syntax tree in pre-order: each node's kind, then its leaves (the names it uses, its
    constants), where every name the code binds itself (a variable, parameter, function, class,
    import, or an attribute it assigns: the ones its author chose) is the placeholder. Layout and
    comments are not in the tree."""
    out: list = []
    bound: set[str] = set()
    attributes: set[str] = set()
    stack: list = [tree]
    while stack:  # a loop, not recursion: a deeply nested submission costs no stack
        node = stack.pop()
        if not isinstance(node, ast.AST):
            out.append(node)
            continue
        out.append(type(node))
        storing = not isinstance(getattr(node, "ctx", None), (ast.Load, type(None)))
        children: list = []
        for field in node._fields:
            value = getattr(node, field, None)
            if value is None or field in IGNORED_FIELDS:
                continue
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, ast.AST):
                    if not _bare_string(item):
                        children.append(item)
                elif field in NAME_FIELDS and isinstance(item, str) and not isinstance(node, ast.keyword):
                    if field == "attr":
                        if storing:
                            attributes.add(item)
                    elif isinstance(node, ast.alias):
                        if field == "asname" or node.asname is None:
                            bound.add(item.split(".")[0])
                    elif field != "id" or storing:
                        bound.add(item)
                    children.append(_Name(item, field == "attr"))
                else:
                    children.append(repr(item))
        stack.extend(reversed(children))

    def placed(token):
        if not isinstance(token, _Name):
            return token
        return NAME if token.name in (attributes if token.attribute else bound) else token.name
    return [placed(t) for t in out]


def _source_tokens(source: str) -> list[str]:
    """Source that does not parse, as `tokenize` reads it: without comments and layout, every name
    but attributes and keywords the placeholder."""
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in SKIPPED:
                continue
            word = tokenize.tok_name[tok.type] if tok.type in LAYOUT else tok.string
            if tok.type == tokenize.NAME and not keyword.iskeyword(word) and (not out or out[-1] != "."):
                word = NAME
            out.append(word)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # what was read before the error still counts
    return out


@lru_cache(maxsize=4096)
def normalized(source: str) -> tuple:
    """`source` as tokens, without comments, docstrings, layout or its own names."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return tuple(_source_tokens(source))
    return tuple(_tree_tokens(tree))


def fingerprints(source: str) -> frozenset[int]:
    tokens = normalized(source)
    return frozenset(hash(tokens[i:i + K]) for i in range(max(0, len(tokens) - K + 1)))


def similar(sources: dict[str, str], stub: str = "") -> list[Group]:
    """Groups of students (sorted, each of two or more) whose `sources` for one unit are nearly
    identical beyond the released `stub` and the class's common code, most similar first."""
    prints = {student: fingerprints(source) for student, source in sources.items()}
    held = Counter(p for found in prints.values() for p in found)
    common = max(COMMON_MIN, COMMON_SHARE * len(prints))
    ignored = fingerprints(stub) | {p for p, n in held.items() if n > common}
    own = {s: found - ignored for s, found in prints.items()}
    own = {s: found for s, found in own.items() if len(found) >= MIN_OWN}
    holders: dict[int, list[str]] = defaultdict(list)
    for student in sorted(own):
        for p in own[student]:
            holders[p].append(student)
    shared: Counter[tuple[str, str]] = Counter()
    for students in holders.values():
        for i, a in enumerate(students):
            for b in students[i + 1:]:
                shared[a, b] += 1
    scores = {}
    for (a, b), n in shared.items():
        score = n / (len(own[a]) + len(own[b]) - n)
        if score >= THRESHOLD:
            scores[a, b] = score
    return _groups(scores, own)


def _groups(scores: dict[tuple[str, str], float], own: dict[str, frozenset[int]]) -> list[Group]:
    parent: dict[str, str] = {}

    def root(s: str) -> str:
        while parent.setdefault(s, s) != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for a, b in scores:
        parent[root(a)] = root(b)
    members: dict[str, list[str]] = defaultdict(list)
    for s in parent:
        members[root(s)].append(s)
    groups = []
    for students in members.values():
        students.sort()
        lowest = min(scores.get((a, b)) or _jaccard(own[a], own[b])
                     for i, a in enumerate(students) for b in students[i + 1:])
        groups.append(Group(tuple(students), round(lowest, 4)))
    return sorted(groups, key=lambda g: (-g.score, g.students))


def _jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / len(a | b)
