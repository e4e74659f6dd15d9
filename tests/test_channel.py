"""The data-only channel: what can cross from a worker, and what cannot."""
from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from autograder import channel


def test_tensors_numbers_and_structures_round_trip():
    value = {"t": torch.arange(6, dtype=torch.float32).view(2, 3), "n": [1, 2.5, None, "s"],
             "b": torch.tensor([True, False]), "i": torch.tensor([3], dtype=torch.int64)}
    back = channel.decode(channel.encode(value))
    assert torch.equal(back["t"], value["t"]) and back["t"].dtype == torch.float32
    assert back["n"] == [1, 2.5, None, "s"] and torch.equal(back["b"], value["b"]) and back["i"].dtype == torch.int64


def test_a_tensor_subclass_arrives_as_a_plain_tensor():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    back = channel.decode(channel.encode(torch.zeros(3).as_subclass(Liar)))
    assert type(back) is torch.Tensor and not torch.equal(back, torch.ones(3))


@pytest.mark.parametrize("value", [b"bytes", object(), pickle, {1, 2}])
def test_objects_that_are_not_data_cannot_be_sent(value):
    with pytest.raises(TypeError, match="cannot send"):
        channel.encode(value)


def _payload(header: dict, blob: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw + blob


@pytest.mark.parametrize("payload", [
    b"",
    b"\x00\x00\x00\x05{not json",
    _payload({"body": {"$tensor": 0}, "tensors": []}),
    _payload({"body": 1, "tensors": [{"dtype": "object", "shape": [1]}]}, b"x" * 8),
    _payload({"body": 1, "tensors": [{"dtype": "float32", "shape": [4]}]}, b"x" * 8),
    _payload({"body": 1, "tensors": [{"dtype": "float32", "shape": [-1]}]}),
    _payload({"body": 1, "tensors": []}, b"trailing"),
    pickle.dumps({"body": 1}),
])
def test_garbage_replies_are_refused(payload):
    with pytest.raises(channel.ChannelError, match="garbage|does not carry"):
        channel.decode(payload)


def test_oversized_message_is_refused_before_it_is_read(monkeypatch):
    import socket

    a, b = socket.socketpair()
    a.sendall(struct.pack(">Q", channel.MAX_MESSAGE + 1))
    with pytest.raises(channel.ChannelError, match="over the"):
        channel.receive(b)
