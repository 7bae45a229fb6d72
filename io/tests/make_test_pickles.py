#!/usr/bin/env python3
"""Writes the pickles used by ferrofold-io's unpickler tests to io/tests/data/.

Produces protocol-2 pickles shaped exactly like `torch.save` state dicts, without
needing torch: stand-in `torch` modules provide the globals the pickles name.
Run with plain python3 from anywhere.
"""
import collections
import io
import os
import pickle
import sys
import types

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
torch._utils = utils
sys.modules.update({"torch": torch, "torch._utils": utils})


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


def _rebuild_parameter(*args):
    raise NotImplementedError


for f in (_rebuild_tensor_v2, _rebuild_parameter):
    f.__module__ = "torch._utils"
    setattr(utils, f.__name__, f)

for name in ("FloatStorage", "LongStorage", "HalfStorage"):
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)


class Storage:
    def __init__(self, kind, key, numel):
        self.pid = ("storage", getattr(torch, kind), key, "cpu", numel)


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def dumps(obj, protocol=2):
    buf = io.BytesIO()
    Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def state_dict():
    """Storage 0: 6 floats shared by a [2, 3] weight, its transpose and a [2] slice;
    storage 1: 4 int64; storage 2: 2 halves (as a Parameter); plus a nested dict and
    non-tensor values, and torch's `_metadata` attribute (a BUILD)."""
    f32 = Storage("FloatStorage", "0", 6)
    sd = collections.OrderedDict()
    sd["layer.weight"] = Tensor(f32, 0, (2, 3), (3, 1))
    sd["layer.weight_t"] = Tensor(f32, 0, (3, 2), (1, 3))
    sd["layer.bias"] = Tensor(f32, 4, (2,), (1,))
    sd["ids"] = Tensor(Storage("LongStorage", "1", 4), 0, (1, 4), (4, 1))
    sd["half"] = Parameter(Tensor(Storage("HalfStorage", "2", 2), 0, (2,), (1,)))
    sd["extra"] = {"scale": Tensor(f32, 5, (), ()), "epoch": 3, "lr": 0.5, "name": "x"}
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    for protocol in (2, 4):
        with open(os.path.join(out, f"state_dict_p{protocol}.pkl"), "wb") as f:
            f.write(dumps(state_dict(), protocol))
