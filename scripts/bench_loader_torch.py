#!/usr/bin/env python3
"""torchvision baseline for the fine-tuning loader.

What a PyTorch user would write for the training split of a built demo set: a Dataset that opens
each image file with PIL, `RandomResizedCrop(SIZE)` (torchvision's defaults, bilinear) +
`RandomHorizontalFlip()` + `ToTensor()` + `Normalize(CLIP mean, std)`, multi-hot targets, and a
`DataLoader(batch_size=32, shuffle=True, num_workers=cores, drop_last=True)`. Reports batches/s
and images/s from the loader's creation to the last batch, as
`cargo bench -p sspa-data --bench shard_throughput -- load` does for sspa-pipe's loader over the
shards of the same images.

    scripts/bench_loader_torch.py DATA_DIR [--size 448] [--workers N] [--batches 200]

DATA_DIR is the built set, e.g. target/sspa-bench/data-2000-200-640x480/fashion-mosaic. Needs
torch, torchvision and Pillow.
"""

import argparse
import json
import os
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class Images(Dataset):
    def __init__(self, data_dir, size):
        with open(os.path.join(data_dir, "train.json")) as f:
            annotations = json.load(f)
        classes = annotations["classes"]
        self.items = []
        for path, labels in annotations["images"]:
            target = torch.zeros(len(classes))
            for label in labels:
                target[classes.index(label)] = 1.0
            self.items.append((os.path.join(data_dir, path), target))
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, target = self.items[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), target


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = Images(args.data_dir, args.size)
    started = time.perf_counter()
    loader = DataLoader(
        dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True
    )
    batches = 0
    checksum = 0.0
    for images, _targets in loader:
        checksum += float(images[images.shape[0] // 2, 0, 0, 0])
        batches += 1
        if batches >= args.batches:
            break
    seconds = time.perf_counter() - started
    print(
        f"torchvision DataLoader ({args.workers} workers, random resized crop + flip): {batches} batches "
        f"of {args.batch}x3x{args.size}x{args.size} in {seconds:.2f} s = {batches / seconds:.1f} "
        f"batches/s ({batches * args.batch / seconds:.0f} images/s) [{checksum:.3f}]"
    )


if __name__ == "__main__":
    main()
