#!/usr/bin/env python3
"""Parity fixtures for CLIP's ModifiedResNet tower (`crates/clip/src/resnet`).

Reference: OpenCLIP's `open_clip.modified_resnet.ModifiedResNet` (the same code as OpenAI
CLIP's `model.py`), a TINY seeded instance: stages [2, 1, 1, 2], width 2 (pooling width 64),
2 heads, 16-d output, image size 64 (a 2×2 positional grid). Every BatchNorm gets random affine
parameters and running statistics (OpenCLIP zero-initialises `bn3.weight`, which would hide
the residual branches), and the projection biases are random.

Written to OUT_DIR:
- `tiny_rn.safetensors`: the state dict with OpenAI key names under `visual.` (F32, plus the
  int64 `num_batches_tracked` buffers a real checkpoint carries);
- `tiny_rn.json`: the configuration and, for two inputs, the expected global feature
  (`model(x)`, the attention pool) and dense patch features computed here in plain torch from
  the reference module's weights: `c_proj(v_proj(token))` for every token of the last feature
  map (MaskCLIP; no positional embedding, no query/key).

Inputs are not stored: both sides compute them from the formula below (float64, then cast to
float32), `x[b, c, h, w] = sin(0.37 h + 0.23 w + 1.3 c + 2.1 b) + 0.5 cos(0.013 h w + 0.7 c − 0.4 b)`.
The second input (96×64, a 3×2 feature map) needs the positional embedding resized: the spatial
part is interpolated with `F.interpolate(mode="bicubic", align_corners=False)` and the reference
module is run with it.

Needs torch==2.9.0, open_clip_torch (with torchvision, `pip install --no-deps`), safetensors.
Usage: make_clip_resnet_fixtures.py OUT_DIR   (normally crates/clip/tests/fixtures/resnet)
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from open_clip.modified_resnet import ModifiedResNet

CONFIG = {"layers": [2, 1, 1, 2], "width": 2, "heads": 2, "output_dim": 16, "image_size": 64}
INPUTS = [(2, 64, 64), (2, 96, 64)]  # (batch, height, width)


def formula_input(batch, height, width):
    b, c, h, w = np.meshgrid(np.arange(batch), np.arange(3), np.arange(height), np.arange(width), indexing="ij")
    b, c, h, w = (a.astype(np.float64) for a in (b, c, h, w))
    values = np.sin(0.37 * h + 0.23 * w + 1.3 * c + 2.1 * b) + 0.5 * np.cos(0.013 * h * w + 0.7 * c - 0.4 * b)
    return torch.from_numpy(values.astype(np.float32))


def build():
    torch.manual_seed(20260127)
    model = ModifiedResNet(
        layers=CONFIG["layers"],
        output_dim=CONFIG["output_dim"],
        heads=CONFIG["heads"],
        image_size=CONFIG["image_size"],
        width=CONFIG["width"],
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)
        for name in ["q_proj", "k_proj", "v_proj", "c_proj"]:
            getattr(model.attnpool, name).bias.normal_(0.0, 0.1)
    return model.eval()


def feature_map(model, x):
    x = model.stem(x)
    for layer in [model.layer1, model.layer2, model.layer3, model.layer4]:
        x = layer(x)
    return x


def dense_patches(model, x):
    fmap = feature_map(model, x)
    tokens = fmap.flatten(2).transpose(1, 2)  # [B, h*w, C], row-major over (h, w)
    pool = model.attnpool
    return F.linear(F.linear(tokens, pool.v_proj.weight, pool.v_proj.bias), pool.c_proj.weight, pool.c_proj.bias)


def resized_positional_embedding(embedding, grid, height, width):
    channels = embedding.shape[1]
    spatial = embedding[1:].reshape(1, grid, grid, channels).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=(height, width), mode="bicubic", align_corners=False)
    return torch.cat([embedding[:1], spatial.reshape(channels, height * width).T], dim=0)


def global_features(model, x):
    fmap_h, fmap_w = feature_map(model, x).shape[2:]
    grid = CONFIG["image_size"] // 32
    if (fmap_h, fmap_w) == (grid, grid):
        return model(x)
    original = model.attnpool.positional_embedding
    try:
        model.attnpool.positional_embedding = nn.Parameter(
            resized_positional_embedding(original.detach(), grid, fmap_h, fmap_w)
        )
        return model(x)
    finally:
        model.attnpool.positional_embedding = original


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    model = build()
    state = {f"visual.{key}": value.detach().contiguous() for key, value in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "tiny_rn.safetensors"))

    cases = []
    with torch.no_grad():
        for batch, height, width in INPUTS:
            x = formula_input(batch, height, width)
            global_ = global_features(model, x)
            patches = dense_patches(model, x)
            fmap = feature_map(model, x)
            cases.append({
                "batch": batch,
                "height": height,
                "width": width,
                "feature_map": list(fmap.shape[2:]),
                "global": [round(v, 7) for v in global_.flatten().tolist()],
                "patches": [round(v, 7) for v in patches.flatten().tolist()],
            })
            print(f"{height}x{width}: global {tuple(global_.shape)} patches {tuple(patches.shape)} "
                  f"|global| max {global_.abs().max():.3f}")
    with open(os.path.join(out_dir, "tiny_rn.json"), "w") as file:
        json.dump({"config": CONFIG, "prefix": "visual.", "cases": cases}, file, indent=1)
        file.write("\n")


if __name__ == "__main__":
    main()
