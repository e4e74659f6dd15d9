"""Assertions the checks make, in the grader, with the grader's own torch.

Each failure is an AssertionError whose message is what the student reads: the input, what was
expected and what came (a few numbers), and the idea from the lecture. Hidden checks pass
`reveal=False`, so their messages say what failed and never carry an expected value, nor a
number computed from one.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

from .messages import Build, ModuleState, Outcome
from .rules import Facts


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, ModuleState):
        return "a module"
    if value is None:
        return "None"
    return f"a {type(value).__name__} ({str(value)[:60]})"


def _numbers(t: torch.Tensor, limit: int = 6) -> str:
    values = [f"{v:.4g}" for v in t.flatten()[:limit].tolist()]
    return "[" + ", ".join(values) + (", ..." if t.numel() > limit else "") + "]"


def assert_tensor(value: Any, what: str, shape: tuple | list | None = None, reveal: bool = True) -> torch.Tensor:
    """`value` must be a tensor (of `shape`, named in the message only with `reveal`)."""
    assert isinstance(value, torch.Tensor), f"{what} should be a tensor, but it is {describe(value)}"
    if shape is not None:
        assert list(value.shape) == list(shape), (
            f"{what} has shape {list(value.shape)}, but shape {list(shape)} was expected" if reveal
            else f"{what} has shape {list(value.shape)}, which is not the shape expected")
    return value


def parameter_shapes(value: Any, what: str) -> dict[str, list[int]]:
    """{name: shape} of the parameters a module registers; `value` must be a module."""
    assert isinstance(value, ModuleState), f"{what} should make an nn.Module (a subclass of nn.Module), not {describe(value)}"
    return {name: list(p.shape) for name, p in value.parameters.items()}


def call(submission, target: str | Build, *args: Any, idea: str = "", **kwargs: Any) -> Outcome:
    """submission.call; when it fails (the student's code raised, or its process was stopped) the
    message also says what the check looks for (`idea`), and a module that could not take the
    weights the check gives it is told which parameters it should register, not load_state_dict's
    words."""
    try:
        return submission.call(target, *args, **kwargs)
    except pytest.fail.Exception as e:
        message = str(e.msg)
        if isinstance(target, Build) and target.state and "in loading state_dict" in message:
            message = (f"{target.cls}(...) could not take the weights this check gives it: it should register the "
                       f"parameters {', '.join(sorted(target.state))} (nn.Parameter attributes, or the nn.Linear "
                       f"layer that holds them, under these names)")
        pytest.fail(f"{message}. {idea}" if idea else message, pytrace=False)


def assert_close(actual: Any, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4,
                 reveal: bool = True, idea: str = "") -> None:
    """`actual` equals `expected` to tolerance; with `reveal`, the message shows the worst entry
    and both tensors' first numbers, then `idea`."""
    actual = assert_tensor(actual, what, expected.shape, reveal)
    assert actual.dtype.is_floating_point or not expected.dtype.is_floating_point, \
        f"{what} should hold real numbers, but it is {describe(actual)}"
    a, e = actual.double().cpu(), expected.double().cpu()
    hint = f" {idea}" if idea else ""
    assert torch.isfinite(a).all() or not torch.isfinite(e).all(), f"{what} contains inf or nan.{hint}"
    if not torch.allclose(a, e, atol=atol, rtol=rtol):
        if not reveal:
            raise AssertionError(f"{what} is wrong.{hint}")
        diff = (a - e).abs()
        worst = [int(i) for i in torch.unravel_index(diff.flatten().argmax(), e.shape)] if e.dim() else []
        at = f" at position {worst}" if worst else ""
        raise AssertionError(f"{what} is wrong{at}: got {a.flatten()[int(diff.flatten().argmax())].item():.5g}, "
                             f"expected {e.flatten()[int(diff.flatten().argmax())].item():.5g} "
                             f"(got {_numbers(a)}, expected {_numbers(e)}).{hint}")


def assert_rules(facts: Facts, unit: str, forbidden: set[str] = frozenset(), instead: str = "") -> None:
    """The unit's cell is plain code and takes none of `forbidden` from a library."""
    assert not facts.escapes, (f"{unit} reaches outside plain code ({', '.join(facts.escapes)}); a TA will "
                               f"look at it. {' '.join(facts.advice)}")
    used = sorted(facts.names & set(forbidden))
    assert not used, f"{unit} must not use {', '.join(used)}." + (f" {instead}" if instead else "")
