"""Marking the functions of a check module that run inside the worker.

A check (a pytest test, in the grader) asks the worker to run a probe with data arguments; the
probe touches the student's code and returns data (tensors, numbers, strings); the check judges.
Probes are identified by '<check module stem>:<function name>' on both sides of the channel.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable)
REGISTRY: dict[str, Callable] = {}  # every probe defined so far in this process, by id


def probe(fn: F) -> F:
    fn.__probe_id__ = f"{Path(inspect.getfile(fn)).stem}:{fn.__name__}"
    REGISTRY[fn.__probe_id__] = fn
    return fn


class ProbeContext:
    """What a probe sees inside the worker: the student's namespace, the data, the device."""

    def __init__(self, namespace: dict, data: dict, device: str):
        self.namespace, self.data, self.device = namespace, data, device

    def unit(self, name: str) -> Any:
        if name not in self.namespace:
            raise LookupError(f"{name} is not defined by the submission")
        return self.namespace[name]


class ForbiddenCall(RuntimeError):
    """Raised inside the worker when student code calls a library function the unit must not use."""


class forbid:
    """Within the block, each `(owner, attribute)` raises ForbiddenCall when called."""

    def __init__(self, *targets: tuple[object, str]):
        self.targets, self.saved = targets, []

    def __enter__(self) -> "forbid":
        for owner, name in self.targets:
            original = getattr(owner, name, None)
            if original is None:
                continue

            def refuse(*args, _name=f"{getattr(owner, '__name__', type(owner).__name__)}.{name}", **kwargs):
                raise ForbiddenCall(f"{_name} must not be used here")

            self.saved.append((owner, name, original))
            setattr(owner, name, refuse)
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)
