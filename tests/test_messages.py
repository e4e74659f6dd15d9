"""The one schema between grader and worker: what can cross, and what cannot."""
from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from autograder import messages
from autograder.messages import Build, Call, Loaded, ModuleState, Outcome, TrainingSet


def test_messages_round_trip_with_tensors_and_nested_values():
    call = Call(Build("template_net", (784, 10), state={"linear_layer.weight": torch.zeros(10, 784)}),
                args=(TrainingSet("images"), torch.arange(6).view(2, 3)), kwargs={"lr": 0.1, "n_iter": 5},
                requires_grad=(1,), seed=3)
    back = messages.decode(messages.encode(call))
    assert isinstance(back, Call) and isinstance(back.target, Build) and back.target.cls == "template_net"
    assert torch.equal(back.target.state["linear_layer.weight"], torch.zeros(10, 784))
    assert back.args[0] == TrainingSet("images") and torch.equal(back.args[1], torch.arange(6).view(2, 3))
    assert back.kwargs == {"lr": 0.1, "n_iter": 5} and back.requires_grad == (1,) and back.seed == 3


def test_a_tensor_subclass_arrives_as_a_plain_tensor():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    back = messages.decode(messages.encode(Outcome(value=torch.zeros(3).as_subclass(Liar))), messages.FROM_WORKER)
    assert type(back.value) is torch.Tensor and not torch.equal(back.value, torch.ones(3))


@pytest.mark.parametrize("value", [b"bytes", object(), pickle, {1, 2}])
def test_objects_that_are_not_data_cannot_be_sent(value):
    with pytest.raises(TypeError, match="cannot send"):
        messages.encode(Outcome(value=value))


def test_a_worker_may_send_only_its_own_message_types():
    forged = messages.encode(Call("softmax"))  # well formed, but a Call is the grader's to send
    with pytest.raises(messages.GarbageReply, match="not allowed"):
        messages.decode(forged, messages.FROM_WORKER)
    with pytest.raises(messages.GarbageReply, match="expected a Outcome"):
        messages.expect(messages.decode(messages.encode(Loaded(errors={})), messages.FROM_WORKER), Outcome)
    state = messages.decode(messages.encode(Outcome(value=ModuleState({"w": torch.ones(2)}, {}))), messages.FROM_WORKER)
    assert torch.equal(state.value.parameters["w"], torch.ones(2))


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
    _payload({"body": {"$type": "Outcome", "value": 1, "__class__": "x"}, "tensors": []}),
    _payload({"body": {"$type": "os.system", "command": "true"}, "tensors": []}),
    pickle.dumps({"body": 1}),
])
def test_garbage_is_refused(payload):
    with pytest.raises(messages.ChannelError, match="garbage|does not carry|not allowed|unknown fields"):
        messages.decode(payload, messages.FROM_WORKER)


def test_an_oversized_message_is_refused_before_it_is_read():
    import socket

    a, b = socket.socketpair()
    a.sendall(struct.pack(">Q", messages.MAX_MESSAGE + 1))
    with pytest.raises(messages.ChannelError, match="over the"):
        messages.receive(b, messages.FROM_WORKER)
