#!/usr/bin/env python3
"""PIL + multiprocessing baseline for the shard stage's decode and resize.

Does what `cargo bench -p sspa-data --bench shard_throughput -- shard` does with the `eval`
policy: decode each PNG of the demo set, convert to RGB, bicubic-resize the shorter side to SIZE
and centre-crop SIZE x SIZE (CLIP preprocessing), and append the uint8 pixels to shard files of
1,000 images. Reports images/s.

    python3 -m venv /tmp/pil-venv && /tmp/pil-venv/bin/pip install Pillow
    /tmp/pil-venv/bin/python scripts/bench_shard_pil.py DATA_DIR [--size 224] [--workers N]

DATA_DIR is the built mosaic set, e.g. target/sspa-bench/data-8000-2000/fashion-mosaic.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from multiprocessing import Pool

from PIL import Image

SIZE = 224


def load(path):
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        scale = SIZE / min(width, height)
        resized = image.resize(
            (max(SIZE, round(width * scale)), max(SIZE, round(height * scale))), Image.BICUBIC
        )
        left = (resized.width - SIZE) // 2
        top = (resized.height - SIZE) // 2
        return resized.crop((left, top, left + SIZE, top + SIZE)).tobytes()


def init(size):
    global SIZE
    SIZE = size


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    paths = []
    for split in ("test", "train"):
        with open(os.path.join(args.data_dir, f"{split}.json")) as f:
            paths += [os.path.join(args.data_dir, entry[0]) for entry in json.load(f)["images"]]
    started = time.perf_counter()
    written = 0
    with tempfile.TemporaryDirectory() as out, Pool(args.workers, init, (args.size,)) as pool:
        shard = None
        for i, pixels in enumerate(pool.imap(load, paths, chunksize=64)):
            if i % 1000 == 0:
                if shard:
                    shard.close()
                shard = open(os.path.join(out, f"shard-{i // 1000:05}.bin"), "wb")
            shard.write(pixels)
            written += len(pixels)
        if shard:
            shard.close()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"pil: {len(paths)} images ({args.size} px, {args.workers} processes) in {seconds:.2f} s = "
        f"{len(paths) / seconds:.0f} images/s, {written / 2**20:.1f} MiB written, "
        f"peak RSS parent {peak:.1f} MiB / largest child {children:.1f} MiB"
    )


if __name__ == "__main__":
    sys.exit(main())
