"""The data-only channel between the grader and a worker: JSON plus raw tensor bytes.

A message is a 4-byte big-endian length, a JSON header, then the bytes of the tensors it names.
Tensors appear in the JSON as {"$tensor": i} and in the header's "tensors" list as dtype + shape;
the receiver rebuilds plain torch.Tensors from the bytes with numpy, so nothing that travels can
carry code (no pickle anywhere) and a tensor subclass arrives as a plain tensor.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import time
from typing import Any

import numpy as np
import torch

MAX_MESSAGE = 256 * 2**20  # bytes; a reply larger than this is refused, not read
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
    """What came is not a well-formed message."""


def _flatten(value: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"$tensor": len(tensors) - 1}
    if isinstance(value, dict):
        return {str(k): _flatten(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flatten(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot send a {type(value).__name__} (only tensors, numbers, strings, lists, dicts)")


def encode(value: Any) -> bytes:
    tensors: list[torch.Tensor] = []
    body = _flatten(value, tensors)
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


def _rebuild(value: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$tensor"}:
            index = value["$tensor"]
            if not isinstance(index, int) or not 0 <= index < len(tensors):
                raise GarbageReply(f"reply names tensor {index!r} that it does not carry")
            return tensors[index]
        return {k: _rebuild(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v, tensors) for v in value]
    return value


def decode(payload: bytes) -> Any:
    """The inverse of encode, trusting nothing in `payload`."""
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
        return _rebuild(body, tensors)
    except ChannelError:
        raise
    except Exception as e:  # any malformed reply, whatever broke on it
        raise GarbageReply(f"garbage reply ({type(e).__name__}: {e})") from None


def send(sock: socket.socket, value: Any) -> None:
    data = encode(value)
    sock.sendall(struct.pack(">Q", len(data)) + data)


def _read_exactly(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:  # the whole reply by the deadline, not each read
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the reply did not come in time")
            sock.settimeout(left)
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ChannelError("the worker closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket, deadline: float | None = None) -> Any:
    """One whole message by `deadline` (time.monotonic), or without limit."""
    (size,) = struct.unpack(">Q", _read_exactly(sock, 8, deadline))
    if size > MAX_MESSAGE:
        raise GarbageReply(f"reply of {size} bytes is over the {MAX_MESSAGE}-byte cap")
    return decode(_read_exactly(sock, size, deadline))
