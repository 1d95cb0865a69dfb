#!/usr/bin/env python3
"""CPU throughput of PyTorch CLIP towers (OpenCLIP, random init), for the ratios printed by
`cargo bench -p sspa-clip` (`crates/clip/benches/clip.rs` runs the same workloads in burn).

Workloads (the same on both sides):
- RN50 image tower at 224×224, batches of 4: stem + stages + attention pool (global) and the
  MaskCLIP dense patch features `c_proj(v_proj(tokens))` of the 7×7 map, as in burn;
- ViT-B/32 image tower at 224×224, batches of 4 (OpenCLIP's forward: global feature);
- text tower (ViT-B/32's: width 512, 12 layers, 8 heads) on 32 sentences of 77 tokens
  (SOT, 8–20 word ids, EOT, zero padding), one batch.

`torch.set_num_threads(2)` (the machine's cores), no grad, one warm-up, best rate of 3 rounds.
Needs torch==2.9.0, open_clip_torch and torchvision (`pip install --no-deps`).

Usage: bench_clip_torch.py [OUT_JSON]   (default crates/clip/benches/torch_timings.json)
"""

import json
import os
import sys
import time

import torch
import torch.nn.functional as F

import open_clip

ROUNDS = 2
IMAGES = 4
SENTENCES = 32


def rate(items, run):
    run()
    best = 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        best = max(best, items / (time.perf_counter() - start))
    return best


def tokens(count, context=77, vocab=49408):
    generator = torch.Generator().manual_seed(0)
    rows = torch.zeros(count, context, dtype=torch.long)
    for row in range(count):
        words = 8 + row % 13
        rows[row, 0] = vocab - 2
        rows[row, 1:1 + words] = torch.randint(1, vocab - 2, (words,), generator=generator)
        rows[row, 1 + words] = vocab - 1
    return rows


def resnet_features(visual, images):
    x = visual.stem(images)
    for layer in [visual.layer1, visual.layer2, visual.layer3, visual.layer4]:
        x = layer(x)
    pool = visual.attnpool
    global_ = pool(x)
    patches = pool.c_proj(pool.v_proj(x.flatten(2).transpose(1, 2)))
    return global_, patches


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "crates", "clip", "benches", "torch_timings.json")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    images = torch.randn(IMAGES, 3, 224, 224)
    results = {}
    with torch.no_grad():
        rn50 = open_clip.create_model("RN50", pretrained=None).eval()
        results["rn50_images_per_second"] = rate(IMAGES, lambda: resnet_features(rn50.visual, images))
        del rn50
        vit = open_clip.create_model("ViT-B-32", pretrained=None).eval()
        results["vit_b32_images_per_second"] = rate(IMAGES, lambda: vit.visual(images))
        text = tokens(SENTENCES)
        results["text_b32_sentences_per_second"] = rate(SENTENCES, lambda: vit.encode_text(text))
    results["note"] = (f"PyTorch {torch.__version__} CPU, 2 threads, random init; best of {ROUNDS} rounds; "
                       f"{IMAGES} images at 224, {SENTENCES} sentences of 77 tokens")
    for key, value in results.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    with open(out, "w") as file:
        json.dump(results, file, indent=1)
        file.write("\n")


if __name__ == "__main__":
    main()
