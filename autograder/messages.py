"""The one schema of everything that crosses between the grader and a worker, and its framing.

A frame is an 8-byte big-endian length, then a 4-byte length and a JSON header, then the raw bytes
of the tensors the header names. Messages are the dataclasses below; in JSON a message is
{"$type": name, field: value...}, a tensor {"$tensor": i} with its dtype and shape in the header.
The receiver rebuilds plain torch.Tensors from the bytes with numpy, so nothing that travels can
carry code (no pickle anywhere), a tensor subclass arrives as a plain tensor, and each side
accepts only the message types the other side may send (`decode(..., allowed=...)`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

MAX_MESSAGE = 256 * 2**20  # bytes; a frame larger than this is refused, not read
MAX_HEADER = 4 * 2**20  # JSON numbers cost ten times their text in memory: big data goes as tensors
_DTYPES = {
    "float32": (torch.float32, np.float32), "float64": (torch.float64, np.float64),
    "float16": (torch.float16, np.float16), "int64": (torch.int64, np.int64),
    "int32": (torch.int32, np.int32), "int16": (torch.int16, np.int16),
    "int8": (torch.int8, np.int8), "uint8": (torch.uint8, np.uint8), "bool": (torch.bool, np.bool_),
}
_NAMES = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}


class ChannelError(RuntimeError):
    """The other side went away, or sent what cannot be read."""


class GarbageReply(ChannelError):
    """What came is not a well-formed message of an allowed type."""


# ---- grader -> server ------------------------------------------------------------------------

@dataclass(frozen=True)
class Start:
    """What the server imports and how it confines every worker (see confine.py). Nothing here
    is a secret of the grader's, since a worker's memory is a copy of the server's: the paths a
    worker may read (not those it may not), no seed, no class order."""
    helpers: str  # the course's helper module, which the provided cells import as `utils`
    dataset: str
    train_split: str  # what the workers hold, under its name and the withheld split's
    withheld_split: str
    level: str
    userns: bool
    landlock: int
    read: tuple[str, ...]
    links: dict[str, str]
    devices: tuple[str, ...]
    device: str
    file_bytes: int
    cpu_seconds: int
    processes: int
    scratch_bytes: int
    threads: int


@dataclass(frozen=True)
class LoadData:
    """Load the training images, with these labels: the grader's renaming of the classes, made
    where no worker can see how."""
    labels: Any


@dataclass(frozen=True)
class Spawn:
    """Fork a worker (its channel and output pipe travel beside this message), in the cgroup
    whose cgroup.procs files are `cgroup` (empty where there is none)."""
    cgroup: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spawned:
    pid: int
    uid: int | None
    folder: str | None


@dataclass(frozen=True)
class Ready:
    """The server has done what Start or LoadData asked; `error` says why it could not."""
    error: str | None = None


# ---- grader -> worker ------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    """Run the course's setup cells, then the student's unit cells, in one namespace."""
    setup: tuple[str, ...]
    units: dict[str, str]


@dataclass(frozen=True)
class Build:
    """A value: an object of a class the cells define, `cls(*args, **kwargs)`, then
    `load_state_dict(state)` when a state is given."""
    cls: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    state: dict | None = None


@dataclass(frozen=True)
class TrainingSet:
    """A value: the course's training images or labels, which the worker holds."""
    part: str  # "images" or "labels"


@dataclass(frozen=True)
class Call:
    """Call `target` (a name the cells define, or an object to build and call) on values the
    grader chose. `requires_grad` lists the tensor arguments to differentiate; `backward` g means
    (output * g).sum().backward() after the call; `on_device` moves tensors and objects to the
    grading device first; `seed` seeds torch, random and numpy first."""
    target: str | Build
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    grad: bool = True
    requires_grad: tuple[int, ...] = ()
    backward: Any = None
    on_device: bool = False
    seed: int | None = None


# ---- worker -> grader ------------------------------------------------------------------------

@dataclass(frozen=True)
class Confined:
    """The worker's first word, before any cell runs: why its confinement failed, or None."""
    error: str | None = None


@dataclass(frozen=True)
class SetupDone:
    """After the provided cells, before any student cell: why they failed, or None."""
    error: str | None = None


@dataclass(frozen=True)
class Loaded:
    """After the student's unit cells: which raised what (None when a cell ran)."""
    errors: dict[str, str | None]


@dataclass(frozen=True)
class ModuleState:
    """How an nn.Module travels: its named parameters and buffers, as plain tensors."""
    parameters: dict
    buffers: dict


@dataclass(frozen=True)
class Outcome:
    """What a Call gave: its value, the arguments as they are after it (built objects as their
    state; None in the training set's places, which the grader knows), the gradients asked for
    ('args[i]' and built objects' 'argN.<parameter>'), or an error."""
    value: Any = None
    args: tuple = ()
    grads: dict = field(default_factory=dict)
    error: str | None = None


MESSAGES = {cls.__name__: cls for cls in (Start, LoadData, Spawn, Spawned, Ready, Load, Build, TrainingSet, Call, Confined,
                                          SetupDone, Loaded, ModuleState, Outcome)}
# All a worker may send, nested ones included. Confined and SetupDone are believed only as the
# first words of a worker and of a Load, which no student code can have written before.
FROM_WORKER = (Confined, SetupDone, Loaded, Outcome, ModuleState)
FROM_SERVER = (Ready, Spawned)


# ---- encoding --------------------------------------------------------------------------------

def _flatten(value: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"$tensor": len(tensors) - 1}
    if dataclasses.is_dataclass(value) and type(value).__name__ in MESSAGES:
        return {"$type": type(value).__name__,
                **{f.name: _flatten(getattr(value, f.name), tensors) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): _flatten(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flatten(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot send a {type(value).__name__} (only tensors, numbers, strings, lists, dicts)")


def encode(message: Any) -> bytes:
    """The frame body of `message`: header length, JSON header, tensor bytes."""
    tensors: list[torch.Tensor] = []
    body = _flatten(message, tensors)
    specs, blobs = [], []
    for t in tensors:
        # as_subclass: a subclass's overrides never run here; bf16 and others go as float32.
        t = torch.Tensor.as_subclass(t, torch.Tensor).detach().cpu()
        if t.dtype not in _NAMES:
            t = t.float()
        array = np.ascontiguousarray(t.numpy())
        specs.append({"dtype": _NAMES[t.dtype], "shape": list(array.shape)})
        blobs.append(array.tobytes())
    header = json.dumps({"body": body, "tensors": specs}, allow_nan=True).encode()
    payload = struct.pack(">I", len(header)) + header + b"".join(blobs)
    if len(payload) > MAX_MESSAGE:
        raise ValueError(f"message of {len(payload)} bytes is over the {MAX_MESSAGE}-byte cap")
    return payload


def _rebuild(value: Any, tensors: list[torch.Tensor], allowed: dict[str, type]) -> Any:
    if isinstance(value, list):
        return tuple(_rebuild(v, tensors, allowed) for v in value)
    if not isinstance(value, dict):
        return value
    if set(value) == {"$tensor"}:
        index = value["$tensor"]
        if not isinstance(index, int) or not 0 <= index < len(tensors):
            raise GarbageReply(f"it names tensor {index!r} that it does not carry")
        return tensors[index]
    if "$type" in value:
        cls = allowed.get(value["$type"])
        if cls is None:
            raise GarbageReply(f"a {str(value['$type'])[:40]!r} message is not allowed here")
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: _rebuild(v, tensors, allowed) for k, v in value.items() if k != "$type"}
        if not set(fields) <= names:
            raise GarbageReply(f"a {cls.__name__} with unknown fields {sorted(set(fields) - names)[:3]}")
        return cls(**fields)
    return {k: _rebuild(v, tensors, allowed) for k, v in value.items()}


def decode(payload: bytes, allowed: tuple[type, ...] = tuple(MESSAGES.values())) -> Any:
    """The inverse of encode, trusting nothing in `payload`: only `allowed` message types are
    rebuilt (lists arrive as tuples)."""
    try:
        (size,) = struct.unpack(">I", payload[:4])
        if size > MAX_HEADER:
            raise ValueError(f"a JSON header of {size} bytes")
        header = json.loads(payload[4: 4 + size])
        specs, body = header["tensors"], header["body"]
        offset, tensors = 4 + size, []
        for spec in specs:
            torch_dtype, np_dtype = _DTYPES[spec["dtype"]]
            shape = [int(n) for n in spec["shape"]]
            if any(n < 0 for n in shape):
                raise ValueError("negative size")
            nbytes = math.prod(shape) * np.dtype(np_dtype).itemsize
            if offset + nbytes > len(payload):
                raise ValueError("tensor bytes missing")
            array = np.frombuffer(payload, dtype=np_dtype, count=math.prod(shape), offset=offset).reshape(shape)
            tensors.append(torch.from_numpy(array.copy()).to(torch_dtype))
            offset += nbytes
        if offset != len(payload):
            raise ValueError("trailing bytes")
        return _rebuild(body, tensors, {cls.__name__: cls for cls in allowed})
    except ChannelError:
        raise
    except Exception as e:  # any malformed message, whatever broke on it
        raise GarbageReply(f"garbage ({type(e).__name__}: {str(e)[:200]})") from None


def expect(message: Any, kind: type) -> Any:
    """`message` if it is a `kind`, else GarbageReply: a well-formed message of the wrong type
    is as useless as garbage."""
    if not isinstance(message, kind):
        raise GarbageReply(f"expected a {kind.__name__}, got {type(message).__name__}")
    return message


# ---- framing ---------------------------------------------------------------------------------

def frame(message: Any) -> bytes:
    """The whole frame of `message`, ready for sendall."""
    data = encode(message)
    return struct.pack(">Q", len(data)) + data


def send(sock: socket.socket, message: Any) -> None:
    sock.sendall(frame(message))


def _read_exactly(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:  # the whole message by the deadline, not each read
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the message did not come in time")
            sock.settimeout(left)
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ChannelError("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket, allowed: tuple[type, ...], deadline: float | None = None) -> Any:
    """One whole message of an `allowed` type by `deadline` (time.monotonic), or without limit."""
    (size,) = struct.unpack(">Q", _read_exactly(sock, 8, deadline))
    if size > MAX_MESSAGE:
        raise GarbageReply(f"a message of {size} bytes is over the {MAX_MESSAGE}-byte cap")
    return decode(_read_exactly(sock, size, deadline), allowed)
