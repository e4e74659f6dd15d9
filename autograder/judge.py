"""Judging what came back from a worker, in the grader, with the grader's own torch.

Each failure is an AssertionError whose message is what the student reads. Hidden checks pass
`reveal=False`, so their messages never carry expected values.
"""
from __future__ import annotations

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
