#!/usr/bin/env python3
"""The frozen encoders' forward passes in plain PyTorch on the CPU: the reference side of
`cargo bench -p sspa-encoders --bench encoders`, which runs this script right after its own
timings and prints `burn / PyTorch` for each workload.

Workloads (the Rust bench passes the same sizes):
  minilm        MiniLM-L6 sentence embeddings, `--sentences` texts in batches of 32 whose
                word-piece counts are `--lengths` (the real tokenizer's, from the Rust side)
  efficientnet  EfficientNet-Lite0 feature map + pooled feature, per `--image-workloads` entry
                SIZE:IMAGES:BATCH, IMAGES random images of SIZE px in batches of BATCH
Random weights of the real shapes (scripts/torch_encoders.py), eval mode, torch.no_grad(), the
result read back every batch. Best of `--rounds` timed passes after one untimed pass.

  python scripts/bench_encoders_torch.py --lengths 7,18,17,12 --image-workloads 224:8:8,112:64:32
Needs only torch. Prints one JSON object on stdout.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_encoders import MINILM, EfficientNetLite0, MiniLm, token_rows  # noqa: E402


def best_rate(run, items, rounds):
    run()
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = max(best, items / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="7,18,17,12", help="word pieces per sentence, cycled")
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--image-workloads", default="224:8:8", help="SIZE:IMAGES:BATCH,...")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    pattern = [int(n) for n in args.lengths.split(",")]
    lengths = [pattern[i % len(pattern)] for i in range(args.sentences)]
    minilm = MiniLm(MINILM).eval()
    batches = [token_rows(lengths[i:i + 32], generator) for i in range(0, len(lengths), 32)]

    def encode():
        with torch.no_grad():
            for ids, mask in batches:
                minilm(ids, mask).clone()  # read back, as burn's into_data copies

    net = EfficientNetLite0().eval()

    def efficientnet(size, count, batch):
        images = torch.randn(count, 3, size, size, generator=generator)

        def features():
            with torch.no_grad():
                for chunk in images.split(batch):
                    fmap = net.features(chunk)  # the classifier is not part of the features
                    fmap.flatten(2).transpose(1, 2).contiguous(), fmap.mean(dim=(2, 3)).clone()

        return {"size": size, "images": count, "batch": batch,
                "images_per_second": best_rate(features, count, args.rounds)}

    workloads = [tuple(int(v) for v in w.split(":")) for w in args.image_workloads.split(",")]

    print(json.dumps({
        "benchmark": "sspa_encoders",
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "minilm_sentences_per_second": best_rate(encode, args.sentences, args.rounds),
        "efficientnet": [efficientnet(*w) for w in workloads],
        "config": {"lengths": pattern, "sentences": args.sentences, "rounds": args.rounds},
    }, indent=2))


if __name__ == "__main__":
    main()
