#!/usr/bin/env python3
"""Reference values for sspa-model, written to crates/model/tests/fixtures/*.json.

Run once after changing a block's equations (CI only reads the committed fixtures):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy
    /tmp/venv/bin/python scripts/reference/make_sspa_fixtures.py

numpy only, float64 arithmetic on float32 inputs (every input is rounded to float32 first, so the
Rust side reads exactly the same numbers). Weights are stored in burn's `Linear` layout
`[in, out]` (`y = x W + b`). Each reference is written independently of the Rust code:

* ASL follows Ridnik et al.'s `AsymmetricLoss` (ASL repo, `src/loss_functions/losses.py`):
  xs_pos = sigmoid(x); xs_neg = 1 - xs_pos; xs_neg = clip(xs_neg + clip, max=1);
  los_pos = y log(clamp(xs_pos, eps)); los_neg = (1 - y) log(clamp(xs_neg, eps));
  pt = xs_pos y + xs_neg (1 - y); w = (1 - pt)^(gamma_pos y + gamma_neg (1 - y)); loss *= w;
  -loss.sum(). Adapted to SSPA.md: `y` becomes [t = 1] and `1 - y` becomes [t = 0] (so
  t = -1 contributes nothing) and the sum is divided by the batch size. Gradients w.r.t. the
  logits are central finite differences (step 1e-6) of that function, once with the focusing
  weight frozen at the evaluation point (detach_focusing) and once with it live.
* The quaternion layer is the quaternion algebra itself: out[o] = sum_i W[i, o] (x) h[i] + b with
  the Hamilton product (a1 + b1 i + c1 j + d1 k)(a2 + b2 i + c2 j + d2 k), not a block matrix.
* QSM, gate, cross-modal attention, MLP and aggregator are the SSPA.md equations written out
  with numpy (LayerNorm eps 1e-5, biased variance; exact GELU via math.erf).
"""

import math
import pathlib

import numpy as np

import fixture_json

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "model" / "tests" / "fixtures"
RNG = np.random.default_rng(20240729)


def f32(array):
    """Round to float32 and back: the values both sides see."""
    return np.asarray(array, dtype=np.float32).astype(np.float64)


def randn(*shape, scale=1.0):
    return f32(RNG.standard_normal(shape) * scale)


def write(name, payload):
    fixture_json.write(OUT, name, payload)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------- ASL
def asl_reference(logits, targets, gamma_pos, gamma_neg, clip, eps, frozen_weight_at=None):
    y_pos = (targets == 1).astype(np.float64)
    y_neg = (targets == 0).astype(np.float64)

    def parts(x):
        xs_pos = sigmoid(x)
        xs_neg = 1.0 - xs_pos
        if clip is not None and clip > 0:
            xs_neg = np.minimum(xs_neg + clip, 1.0)
        los_pos = y_pos * np.log(np.maximum(xs_pos, eps))
        los_neg = y_neg * np.log(np.maximum(xs_neg, eps))
        pt = xs_pos * y_pos + xs_neg * y_neg
        gamma = gamma_pos * y_pos + gamma_neg * y_neg
        weight = np.power(1.0 - pt, gamma)
        return los_pos + los_neg, weight

    loss, weight = parts(logits)
    if gamma_pos > 0 or gamma_neg > 0:
        if frozen_weight_at is not None:
            _, weight = parts(frozen_weight_at)
        loss = loss * weight
    return -loss.sum() / logits.shape[0]


def finite_difference(function, x, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (function(up) - function(down)) / (2 * step)
    return grad


def asl_fixture():
    cases = []
    settings = [
        ("defaults", 0.0, 4.0, 0.05, 1e-8),
        ("focal_both_sides", 1.0, 4.0, 0.05, 1e-8),
        ("no_margin", 2.0, 3.0, 0.0, 1e-8),
        ("plain_bce", 0.0, 0.0, 0.0, 1e-8),
    ]
    for name, gamma_pos, gamma_neg, clip, eps in settings:
        logits = randn(4, 5, scale=2.0)
        targets = f32(RNG.choice([1.0, 0.0, 0.0, -1.0], size=(4, 5)))
        targets[0, :] = [1, 0, -1, 0, 1]
        if name == "no_margin":
            # saturated logits: the eps clamp is active in float32 and in float64 alike
            logits[1, :2] = [30.0, -30.0]
            targets[1, :2] = [0.0, 1.0]
        loss = asl_reference(logits, targets, gamma_pos, gamma_neg, clip, eps)
        grad_detached = finite_difference(
            lambda x: asl_reference(x, targets, gamma_pos, gamma_neg, clip, eps, logits), logits
        )
        grad_live = finite_difference(
            lambda x: asl_reference(x, targets, gamma_pos, gamma_neg, clip, eps), logits
        )
        cases.append(
            {
                "name": name,
                "gamma_pos": gamma_pos,
                "gamma_neg": gamma_neg,
                "clip": clip,
                "eps": eps,
                "logits": logits,
                "targets": targets,
                "loss": loss,
                "grad_detached": grad_detached,
                "grad_live": grad_live,
            }
        )
    write("asl.json", {"cases": cases})


# --------------------------------------------------------------------------------- quaternion
def hamilton(p, q):
    a1, b1, c1, d1 = p
    a2, b2, c2, d2 = q
    return (
        a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
        a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
        a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
        a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
    )


def quaternion_linear(h, weights, bias):
    """h: [..., 4 q_in] as [r | x | y | z]; weights: four [q_in, q_out]; bias [4 q_out]."""
    r, x, y, z = weights
    q_in, q_out = r.shape
    flat = h.reshape(-1, 4 * q_in)
    out = np.zeros((flat.shape[0], 4 * q_out))
    for row in range(flat.shape[0]):
        components = [flat[row, c * q_in : (c + 1) * q_in] for c in range(4)]
        for o in range(q_out):
            total = np.zeros(4)
            for i in range(q_in):
                w = (r[i, o], x[i, o], y[i, o], z[i, o])
                v = tuple(components[c][i] for c in range(4))
                total += np.array(hamilton(w, v))
            for c in range(4):
                out[row, c * q_out + o] = total[c]
    return (out + bias).reshape(*h.shape[:-1], 4 * q_out)


def quaternion_params(q_in, q_out):
    return {
        "weight_r": randn(q_in, q_out, scale=0.5),
        "weight_x": randn(q_in, q_out, scale=0.5),
        "weight_y": randn(q_in, q_out, scale=0.5),
        "weight_z": randn(q_in, q_out, scale=0.5),
        "bias": randn(4 * q_out, scale=0.1),
    }


def apply_quaternion(params, h):
    weights = [params[k] for k in ("weight_r", "weight_x", "weight_y", "weight_z")]
    return quaternion_linear(h, weights, params["bias"])


def linear_params(d_in, d_out):
    bound = 1.0 / math.sqrt(d_in)
    return {
        "weight": f32(RNG.uniform(-bound, bound, (d_in, d_out))),
        "bias": f32(RNG.uniform(-bound, bound, d_out)),
    }


def apply_linear(params, x):
    out = x @ params["weight"]
    if "bias" in params:
        out = out + params["bias"]
    return out


def quaternion_and_qsm_fixtures():
    layer = quaternion_params(2, 3)
    h = randn(3, 8)
    write("quaternion.json", {"layer": layer, "input": h, "output": apply_quaternion(layer, h)})

    d, q, batch, classes = 8, 2, 2, 3
    project = linear_params(3 * d, 4 * q)
    hidden = quaternion_params(q, q)
    out = quaternion_params(q, d // 4)
    knowledge = randn(classes, d)
    context = randn(batch, classes, d)
    global_feature = randn(batch, d)
    joined = np.concatenate(
        [
            np.broadcast_to(knowledge, (batch, classes, d)),
            context,
            np.broadcast_to(global_feature[:, None, :], (batch, classes, d)),
        ],
        axis=-1,
    )
    h = apply_linear(project, joined)
    unified = apply_quaternion(out, np.maximum(apply_quaternion(hidden, h), 0.0))
    write(
        "qsm.json",
        {
            "d_model": d,
            "quaternion_width": q,
            "project": project,
            "quaternion_hidden": hidden,
            "quaternion_out": out,
            "knowledge": knowledge,
            "context": context,
            "global": global_feature,
            "output": unified,
        },
    )


# ----------------------------------------------------------------------------- gate, CMA, MLP
def gate_fixture():
    d = 6
    modulate = linear_params(d, d)
    gate = linear_params(2 * d, d)
    query = randn(2, 3, d)
    attended = randn(2, 3, d)
    modulated = np.tanh(apply_linear(modulate, attended))
    g = sigmoid(apply_linear(gate, np.concatenate([query, attended], axis=-1)))
    write(
        "gate.json",
        {
            "modulate": modulate,
            "gate": gate,
            "query": query,
            "attended": attended,
            "output": query + g * modulated,
            "gate_values": g,
        },
    )


def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def cma_fixture():
    d = 8
    params = {
        "norm_query_gamma": f32(1.0 + 0.1 * RNG.standard_normal(d)),
        "norm_query_beta": randn(d, scale=0.1),
        "norm_key_value_gamma": f32(1.0 + 0.1 * RNG.standard_normal(d)),
        "norm_key_value_beta": randn(d, scale=0.1),
        "query_weight": f32(RNG.uniform(-1, 1, (d, d)) / math.sqrt(d)),
    }
    x = randn(2, 3, d)
    y = randn(2, 5, d)
    queries = layer_norm(x, params["norm_query_gamma"], params["norm_query_beta"]) @ params["query_weight"]
    key_value = layer_norm(y, params["norm_key_value_gamma"], params["norm_key_value_beta"])
    attention = softmax(queries @ key_value.transpose(0, 2, 1) / math.sqrt(d), axis=-1)
    write(
        "cma.json",
        {**params, "x": x, "y": y, "output": attention @ key_value, "attention": attention},
    )


def mlp_fixture():
    d = 4
    expand = linear_params(d, 4 * d)
    contract = linear_params(4 * d, d)
    x = randn(3, d, scale=2.0)
    hidden = apply_linear(expand, x)
    erf = np.vectorize(math.erf)
    gelu = 0.5 * hidden * (1.0 + erf(hidden / math.sqrt(2.0)))
    write("mlp.json", {"expand": expand, "contract": contract, "input": x, "output": apply_linear(contract, gelu)})


# --------------------------------------------------------------------------------- aggregator
def aggregator_fixture():
    batch, patches, classes, d = 2, 5, 3, 8
    f = randn(batch, patches, d)
    t = randn(batch, classes, d)
    a, b = 2.0, -0.5
    alpha = math.exp(min(a, math.log(100.0)))
    fn = f / np.linalg.norm(f, axis=-1, keepdims=True)
    tn = t / np.linalg.norm(t, axis=-1, keepdims=True)
    logits = alpha * (fn @ tn.transpose(0, 2, 1))  # [B, N, C]
    weights = softmax(logits / math.exp(b), axis=1)
    write(
        "aggregator.json",
        {
            "patches": f,
            "text": t,
            "logit_scale": a,
            "log_temperature": b,
            "patch_logits": logits,
            "soft_weights": weights,
            "soft": (weights * logits).sum(axis=1),
            "mean": logits.mean(axis=1),
            "hard": logits.max(axis=1),
        },
    )


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    asl_fixture()
    quaternion_and_qsm_fixtures()
    gate_fixture()
    cma_fixture()
    mlp_fixture()
    aggregator_fixture()


if __name__ == "__main__":
    main()
