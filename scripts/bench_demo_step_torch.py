#!/usr/bin/env python3
"""The demo's SSPA training step in plain PyTorch on the CPU: the reference side of
`cargo bench -p sspa-train --bench demo_step`, which runs this script itself right after its own
steps and prints `burn / PyTorch`.

One step, with the demo's shapes (domains/demo.toml: 112 px EfficientNet-Lite0 features, so
N = 16 patches of width c = 1280 and a global feature; d = 192, C = 10, B = 64, M = 4):
  T_l = MiniLM([CLS] V_1..V_4 label [SEP])     frozen 6-layer BERT (384 wide, 12 heads), mean
                                               pooled + L2-normalised; grads reach the prompts only
  logits = SSPA head(T_k, T_l, f_g, F_p)       Linear(384, 192) on T_k and T_l, Linear(1280, 192)
                                               on the image features, every default switch
  loss = ASL(s^g) + ASL(s^r); backward; AdamW (2 groups, lr 1e-3, wd 1e-4); EMA (0.997)
The batch is gathered from a host feature bank by a shuffled index every step and the loss is read
back (`loss.item()`), as burn's trainer does (`FeatureSet::batch`, `into_scalar`). The MiniLM
weights are random (same shapes and FLOPs as the real ones); the token rows have the lengths the
caller passes (`--lengths`, the real tokenizer's word-piece counts of the demo labels).

The head's layers are the ones of scripts/bench_finetune_torch.py (each mirrors a burn file).

  python scripts/bench_demo_step_torch.py --lengths 7,3,4,3,3,4,3,4,3,4 --steps 30
Needs only torch. Prints one JSON object on stdout.
"""

import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_finetune_torch import Aggregator, DynamicSemanticFilter, Gdma, LOGIT_SCALE_INIT, Qsm, asl, scaled_cosine  # noqa: E402
from torch_encoders import MINILM, MiniLm, token_rows  # noqa: E402

# ---------------------------------------------------------------- SSPA head (crates/model)
class DemoHead(nn.Module):
    """head.rs with a text projection (d_t = 384 != d) and a linear image projection."""

    def __init__(self, image_width, text_width, d):
        super().__init__()
        self.image_projection = nn.Linear(image_width, d)
        self.text_projection = nn.Linear(text_width, d)
        self.dsf, self.qsm, self.gdma = DynamicSemanticFilter(d), Qsm(d), Gdma(d)
        self.aggregator = Aggregator()
        self.global_logit_scale = nn.Parameter(torch.tensor([LOGIT_SCALE_INIT]))

    def forward(self, knowledge, context, global_, patches):
        knowledge, context = self.text_projection(knowledge), self.text_projection(context)
        global_, patches = self.image_projection(global_), self.image_projection(patches)
        global_logits = scaled_cosine(global_, context, self.global_logit_scale)
        b, (classes, d) = global_.shape[0], context.shape
        filtered = self.dsf(context.unsqueeze(0).expand(b, classes, d), patches)
        unified = self.qsm(knowledge, filtered, global_)
        text, aligned = self.gdma(unified, patches)
        return global_logits, self.aggregator(aligned, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="7,3,4,3,3,4,3,4,3,4",
                        help="word pieces per label, [CLS] and [SEP] included (C = their count)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patches", type=int, default=16)
    parser.add_argument("--image-width", type=int, default=1280)
    parser.add_argument("--embed-dim", type=int, default=192)
    parser.add_argument("--prompt-tokens", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    lengths = [int(n) for n in args.lengths.split(",")]
    classes, b, n, c, d, m = len(lengths), args.batch, args.patches, args.image_width, args.embed_dim, args.prompt_tokens
    text = MiniLm(MINILM).requires_grad_(False)
    ids, mask = token_rows(lengths, generator)
    knowledge = torch.randn(classes, MINILM["width"], generator=generator)
    images = b * (args.warmup + args.steps)
    bank_global = torch.randn(images, c, generator=generator)
    bank_patches = torch.randn(images, n, c, generator=generator)
    bank_targets = (torch.rand(images, classes, generator=generator) < 0.25).float()
    order = torch.randperm(images, generator=generator)

    head = DemoHead(c, MINILM["width"], d)
    prompts = nn.Parameter(torch.randn(m, MINILM["width"]) * 0.02)
    params = [prompts] + list(head.parameters())
    decayed = [p for p in head.parameters() if p.ndim >= 2]
    plain = [prompts] + [p for p in head.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": plain, "weight_decay": 0.0},
                                   {"params": decayed, "weight_decay": 1e-4}], lr=1e-3)
    ema = [p.detach().clone() for p in params]
    ema_decay = 0.997

    def step(i):
        rows = order[i * b:(i + 1) * b]
        global_, patches, targets = bank_global[rows], bank_patches[rows], bank_targets[rows]
        optimizer.zero_grad(set_to_none=True)
        context = text.forward_with_prompts(prompts, ids, mask)
        global_logits, regional_logits = head(knowledge, context, global_, patches)
        loss = asl(global_logits, targets) + asl(regional_logits, targets)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, ema_decay)
            torch._foreach_add_(ema, params, alpha=1 - ema_decay)
        return loss.item()

    losses = [step(i) for i in range(args.warmup)]
    start = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        losses.append(step(i))
    seconds = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "sspa_demo_step",
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "config": {"batch": b, "classes": classes, "patches": n, "image_width": c, "embed_dim": d,
                   "prompt_tokens": m, "token_lengths": lengths, "lr": 1e-3, "weight_decay": 1e-4,
                   "ema_decay": ema_decay, "text_encoder": "MiniLM-L6 shapes (random weights, frozen)"},
        "steps_timed": args.steps,
        "seconds_total": seconds,
        "seconds_per_step": seconds / args.steps,
        "steps_per_second": args.steps / seconds,
        "trainable_params": sum(p.numel() for p in params),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_finite": all(math.isfinite(x) for x in losses),
    }, indent=2))


if __name__ == "__main__":
    main()
