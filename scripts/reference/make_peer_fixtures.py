#!/usr/bin/env python3
"""Reference values for sspa-model's peer heads, written to crates/model/tests/fixtures/*.json.

Run once after changing a peer head's equations (CI only reads the committed fixtures), with the
PyTorch 2.9.0 venv of scripts/install-torch:

    eval "$(scripts/install-torch)" && python scripts/reference/make_peer_fixtures.py

PyTorch only (no numpy), float64 arithmetic on float32 inputs (every input and weight is rounded to
float32 first, so the Rust side reads exactly the same numbers). Weights of linear layers are
stored in burn's `Linear` layout `[in, out]` (`y = x W + b`, the transpose of PyTorch's). Each head
is built from PyTorch's own layers, independently of the Rust code:

* linear: `nn.Linear(c, C)` on the global feature.
* mlp: `nn.Linear(2c, h) -> GELU (exact) -> nn.Linear(h, C)` on `cat(global, patches.mean(1))`.
* query-decoder (ML-Decoder's structure, Ridnik et al. 2023, as crates/model/src/query_decoder.rs
  documents it): tokens `relu(nn.Linear(c, D)(patches))`; learnable queries `[K, D]`,
  `K = min(C, max_queries)`; `q = LayerNorm(queries)`; `nn.MultiheadAttention(D, H,
  batch_first=True)` of the queries over the tokens (no self-attention among queries);
  `h = LayerNorm(q + attn)`; `h = LayerNorm(h + Linear(relu(Linear(h))))`; group FC: query k's
  embedding times its own `[D, g]` matrix (`g = ceil(C / K)`), flattened, cut to C, plus a bias.
  The attention's packed `in_proj_weight` `[3D, D]` is stored as the three burn-layout matrices
  `query`, `key`, `value` (`[D, D]` each), `out_proj` as `output`.

Every fixture holds the inputs, the weights, the logits, a fixed `upstream` tensor and the
gradients of the scalar `sum(logits * upstream)` with respect to the inputs and every parameter
(burn layout).
"""

import math
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

import fixture_json

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "model" / "tests" / "fixtures"
GENERATOR = torch.Generator().manual_seed(20250224)
torch.set_default_dtype(torch.float64)


def f32(tensor):
    """Round to float32 and back: the values both sides see."""
    return tensor.to(torch.float32).to(torch.float64)


def randn(*shape, scale=1.0):
    return f32(torch.randn(*shape, generator=GENERATOR) * scale)


def uniform(*shape, bound):
    return f32((torch.rand(*shape, generator=GENERATOR) * 2.0 - 1.0) * bound)


def write(name, payload):
    fixture_json.write(OUT, name, payload)


def set_linear(linear):
    """Random float32-exact weights (PyTorch's init bound, 1/sqrt(in)) into an nn.Linear."""
    bound = 1.0 / math.sqrt(linear.in_features)
    with torch.no_grad():
        linear.weight.copy_(uniform(linear.out_features, linear.in_features, bound=bound))
        linear.bias.copy_(uniform(linear.out_features, bound=bound))


def set_layer_norm(norm):
    with torch.no_grad():
        norm.weight.copy_(f32(1.0 + 0.2 * torch.randn(norm.weight.shape, generator=GENERATOR)))
        norm.bias.copy_(randn(*norm.bias.shape, scale=0.2))


def linear_record(linear):
    """An nn.Linear's weights in burn's layout, and their gradients."""
    return (
        {"weight": linear.weight.t(), "bias": linear.bias},
        {"weight": linear.weight.grad.t(), "bias": linear.bias.grad},
    )


def layer_norm_record(norm):
    return {"gamma": norm.weight, "beta": norm.bias}, {"gamma": norm.weight.grad, "beta": norm.bias.grad}


def backward(logits, inputs):
    """Gradients of sum(logits * upstream) for a fixed random upstream."""
    upstream = randn(*logits.shape)
    (logits * upstream).sum().backward()
    return upstream, {name: tensor.grad for name, tensor in inputs.items()}


# ------------------------------------------------------------------------------------ linear
def linear_fixture():
    batch, width, classes = 3, 6, 5
    head = nn.Linear(width, classes)
    set_linear(head)
    inputs = {"global": randn(batch, width).requires_grad_()}
    logits = head(inputs["global"])
    upstream, input_grads = backward(logits, inputs)
    weights, weight_grads = linear_record(head)
    write(
        "linear_head.json",
        {
            "image_width": width,
            "classes": classes,
            "inputs": inputs,
            "classifier": weights,
            "logits": logits,
            "upstream": upstream,
            "grad_inputs": input_grads,
            "grad_classifier": weight_grads,
        },
    )


# --------------------------------------------------------------------------------------- mlp
def mlp_fixture():
    batch, patches, width, hidden_width, classes = 3, 4, 6, 10, 5
    hidden = nn.Linear(2 * width, hidden_width)
    classifier = nn.Linear(hidden_width, classes)
    set_linear(hidden)
    set_linear(classifier)
    inputs = {
        "global": randn(batch, width).requires_grad_(),
        "patches": randn(batch, patches, width).requires_grad_(),
    }
    joined = torch.cat([inputs["global"], inputs["patches"].mean(dim=1)], dim=1)
    logits = classifier(F.gelu(hidden(joined), approximate="none"))
    upstream, input_grads = backward(logits, inputs)
    hidden_weights, hidden_grads = linear_record(hidden)
    classifier_weights, classifier_grads = linear_record(classifier)
    write(
        "mlp_head.json",
        {
            "image_width": width,
            "hidden_width": hidden_width,
            "classes": classes,
            "inputs": inputs,
            "hidden": hidden_weights,
            "classifier": classifier_weights,
            "logits": logits,
            "upstream": upstream,
            "grad_inputs": input_grads,
            "grad_hidden": hidden_grads,
            "grad_classifier": classifier_grads,
        },
    )


# ----------------------------------------------------------------------------- query decoder
class ReferenceQueryDecoder(nn.Module):
    def __init__(self, width, classes, d_model, heads, feedforward, max_queries):
        super().__init__()
        self.classes = classes
        self.queries_count = min(classes, max_queries)
        self.per_group = math.ceil(classes / self.queries_count)
        self.embed = nn.Linear(width, d_model)
        self.queries = nn.Parameter(randn(self.queries_count, d_model))
        self.norm_query = nn.LayerNorm(d_model, eps=1e-5)
        self.attention = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.norm_attention = nn.LayerNorm(d_model, eps=1e-5)
        self.feedforward_expand = nn.Linear(d_model, feedforward)
        self.feedforward_contract = nn.Linear(feedforward, d_model)
        self.norm_feedforward = nn.LayerNorm(d_model, eps=1e-5)
        std = math.sqrt(2.0 / (d_model * self.per_group + self.queries_count * self.per_group))
        self.group_weight = nn.Parameter(randn(self.queries_count, d_model, self.per_group, scale=std))
        self.group_bias = nn.Parameter(randn(classes, scale=0.1))
        for linear in (self.embed, self.feedforward_expand, self.feedforward_contract, self.attention.out_proj):
            set_linear(linear)
        bound = 1.0 / math.sqrt(d_model)
        with torch.no_grad():
            self.attention.in_proj_weight.copy_(uniform(3 * d_model, d_model, bound=bound))
            self.attention.in_proj_bias.copy_(uniform(3 * d_model, bound=bound))
        for norm in (self.norm_query, self.norm_attention, self.norm_feedforward):
            set_layer_norm(norm)

    def forward(self, patches):
        batch = patches.shape[0]
        tokens = F.relu(self.embed(patches))
        queries = self.norm_query(self.queries).unsqueeze(0).expand(batch, -1, -1)
        attended, _ = self.attention(queries, tokens, tokens, need_weights=False)
        decoded = self.norm_attention(queries + attended)
        feedforward = self.feedforward_contract(F.relu(self.feedforward_expand(decoded)))
        decoded = self.norm_feedforward(decoded + feedforward)
        grouped = torch.einsum("bkd,kdg->bkg", decoded, self.group_weight)
        return grouped.flatten(1)[:, : self.classes] + self.group_bias


def query_decoder_case(name, max_queries):
    batch, patches, width, d_model, heads, feedforward, classes = 3, 4, 6, 8, 2, 16, 5
    head = ReferenceQueryDecoder(width, classes, d_model, heads, feedforward, max_queries)
    inputs = {"patches": randn(batch, patches, width).requires_grad_()}
    logits = head(inputs["patches"])
    upstream, input_grads = backward(logits, inputs)

    weights, grads = {}, {}
    for key in ("embed", "feedforward_expand", "feedforward_contract"):
        weights[key], grads[key] = linear_record(getattr(head, key))
    for key in ("norm_query", "norm_attention", "norm_feedforward"):
        weights[key], grads[key] = layer_norm_record(getattr(head, key))
    attention = head.attention
    packed, packed_bias = attention.in_proj_weight, attention.in_proj_bias
    for index, key in enumerate(("query", "key", "value")):
        rows = slice(index * d_model, (index + 1) * d_model)
        weights[key] = {"weight": packed[rows].t(), "bias": packed_bias[rows]}
        grads[key] = {"weight": packed.grad[rows].t(), "bias": packed_bias.grad[rows]}
    weights["output"], grads["output"] = linear_record(attention.out_proj)
    weights["queries"], grads["queries"] = head.queries, head.queries.grad
    weights["group_weight"], grads["group_weight"] = head.group_weight, head.group_weight.grad
    weights["group_bias"], grads["group_bias"] = head.group_bias, head.group_bias.grad
    return {
        "name": name,
        "image_width": width,
        "classes": classes,
        "d_model": d_model,
        "heads": heads,
        "feedforward_width": feedforward,
        "max_queries": max_queries,
        "inputs": inputs,
        "weights": weights,
        "logits": logits,
        "upstream": upstream,
        "grad_inputs": input_grads,
        "grad_weights": grads,
    }


def query_decoder_fixture():
    # One query per class (5 ≤ 100), and 2 queries scoring groups of 3 (the last output unused).
    write(
        "query_decoder.json",
        {"cases": [query_decoder_case("one_query_per_class", 100), query_decoder_case("groups_of_three", 2)]},
    )


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    linear_fixture()
    mlp_fixture()
    query_decoder_fixture()


if __name__ == "__main__":
    main()
