"""Writing reference fixtures as JSON, shared by the make_*_fixtures.py scripts of sspa-model.

Arrays (numpy arrays, PyTorch tensors: anything with `tolist`) become nested lists; floats are
printed with 10 significant digits, which is exact for float32 inputs and ample for float64
outputs compared at 1e-5.
"""

import json


def dump(value):
    """JSON-ready nested lists and dicts."""
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "tolist"):
        return dump(value.tolist())
    if isinstance(value, float):
        return float(f"{value:.10g}")
    return value


def write(out_dir, name, payload):
    """Writes `payload` to `out_dir/name` (compact JSON) and prints its path and size."""
    path = out_dir / name
    path.write_text(json.dumps(dump(payload), separators=(",", ":")) + "\n")
    print(f"{path.relative_to(out_dir.parents[3])}: {path.stat().st_size} bytes")
