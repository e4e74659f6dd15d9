"""Judging what came back from a worker, in the grader, with the grader's own torch.

Each failure is an AssertionError whose message is what the student reads. Hidden checks pass
`reveal=False`, so their messages never carry expected values.
"""
from __future__ import annotations

import ast
from typing import Any

import torch


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    if isinstance(value, dict) and "type" in value:
        return f"a {value['type']}"
    return f"a {type(value).__name__} ({str(value)[:60]})"


def tensor(value: Any, what: str, shape: tuple | list | None = None) -> torch.Tensor:
    """`value` must be a tensor (of `shape`): the check fails with what came back otherwise."""
    assert isinstance(value, torch.Tensor), f"{what} should be a tensor, but it is {describe(value)}"
    if shape is not None:
        assert list(value.shape) == list(shape), \
            f"{what} has shape {list(value.shape)}, but shape {list(shape)} was expected"
    return value


def close(actual: Any, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4,
          reveal: bool = True) -> None:
    """`actual` equals `expected` to tolerance; the message shows the worst entry."""
    actual = tensor(actual, what, expected.shape)
    assert actual.dtype.is_floating_point or not expected.dtype.is_floating_point, \
        f"{what} should hold real numbers, but it is {describe(actual)}"
    a, e = actual.double().cpu(), expected.double().cpu()
    assert torch.isfinite(a).all() or not torch.isfinite(e).all(), f"{what} contains inf or nan"
    if not torch.allclose(a, e, atol=atol, rtol=rtol):
        diff = (a - e).abs()
        worst = int(diff.flatten().argmax())
        detail = (f": at position {[int(i) for i in torch.unravel_index(torch.tensor(worst), e.shape)]}"
                  f" got {a.flatten()[worst].item():.5g}, expected {e.flatten()[worst].item():.5g}") if reveal else \
            f" (largest difference {diff.max().item():.3g})"
        raise AssertionError(f"{what} is wrong{detail}")


def library_names(tree: ast.AST) -> set[str]:
    """What a cell takes from torch, for rules like "written from tensor operations": attributes of
    torch, nn, F or any module alias it imports (`nn.Linear`, `F.linear`, `torch.addmm`), methods it
    calls on values other than self (`x.softmax(...)`), and the names it imports
    (`from torch.nn.functional import softmax as sm` counts as softmax). Its own names do not count,
    so a class may name itself (`super(Linear, self)`) or hold `self.linear`."""
    modules, used = {"torch", "nn", "F"}, set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                used.update(alias.name.split("."))
                modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            used.add(node.attr)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            used.add(node.attr)  # torch.nn.functional.linear, torch.special.softmax
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                not (isinstance(node.func.value, ast.Name) and node.func.value.id == "self"):
            used.add(node.func.attr)
    return used
