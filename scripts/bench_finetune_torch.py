#!/usr/bin/env python3
"""One SSPA fine-tuning step in plain PyTorch: the reference side of the GPU benchmark
"SSPA training step with a ViT-B/16 image encoder at 448 px, fine-tuned, on burn's tch CUDA
backend vs PyTorch on the same GPU" (compare steps/s, images/s and peak memory with the burn
bench of the same step: sspa_train with a trainable `Backbone::ClipVit`, on burn-tch CUDA).

One step (random weights, fixed random inputs, no data loading):
  T_l = E_t([SOT][V_1..V_M] label . [EOT])   frozen CLIP text tower, grads reach the prompts only
  f_g, F_p = ViT-B/16(images)                 trainable, positions resized 14x14 -> 28x28 bicubically
  logits = SSPA head(T_k, T_l, f_g, F_p)      every default switch of `[model]` / `[ablation]`
  loss = ASL(s^g) + 1.0 * ASL(s^r); backward; global-norm clip 1.0; AdamW; EMA (0.9997)
The loss is read back every step (`loss.item()`), as burn's trainer does (`into_scalar`).

Torch class -> the burn file it mirrors (same layers, shapes, ops; weights layout [out, in] here,
[in, out] in burn, same FLOPs):
  Attention             crates/clip/src/attention.rs   fused in_proj, softmax(QK^T/sqrt(dh)+mask)V
  ResidualBlock         crates/clip/src/residual.rs    pre-LN, QuickGELU MLP
  (Transformer = list)  crates/clip/src/transformer.rs
  VisionTransformer     crates/clip/src/vit.rs (+ interpolate.rs: the two bicubic interpolation
                        matrices there equal F.interpolate(bicubic, align_corners=False); both
                        resample the table in every forward, with gradients)
  TextTransformer       crates/clip/src/text.rs forward_with_prompts / forward_embedded
  Mlp                   crates/model/src/mlp.rs        Linear(d,4d) -> GELU(erf) -> Linear(4d,d)
  CrossModalAttention   crates/model/src/cma.rs
  DynamicSemanticFilter crates/model/src/dsf.rs
  QuaternionLinear      crates/model/src/quaternion.rs (block matrix rebuilt every forward)
  Qsm                   crates/model/src/qsm.rs        synthesis = quaternion, q = d/4
  Gate                  crates/model/src/gate.rs
  GatedAlignment        crates/model/src/alignment.rs
  Gdma                  crates/model/src/gdma.rs       alignment = both
  Aggregator            crates/model/src/aggregator.rs soft; l2_normalize/logit_scale: similarity.rs
  SspaHead              crates/model/src/head.rs       image_projection = linear (512 -> 512),
                        no text projection (CLIP text width = d), global text = CAP
  asl()                 crates/model/src/asl.rs        gamma+ 0, gamma- 4, clip 0.05, eps 1e-8,
                        focusing weights detached, summed over labels, / B
  optimizer groups      crates/model/src/optim.rs      decay on every parameter of rank >= 2 but the prompts
  clip_grad_norm_       crates/model/src/optim.rs clip_grad_norm (max_norm / (norm + 1e-6))
  ema_update()          crates/model/src/ema.rs        all trainable weights, every step
  SspaModel             crates/train/src/model.rs + backbone.rs: head + prompts + image tower

Timing: `--warmup` untimed steps, torch.cuda.synchronize(), `--steps` timed steps, synchronize.
Peak memory counters are reset after the model, EMA copy, optimiser and inputs exist (AdamW's
state is created lazily in the first step, so the peak includes it). fp32 runs with TF32 off for
matmuls and cuDNN unless `--tf32` (libtorch's own defaults, which burn-tch inherits, are matmul
TF32 off and cuDNN TF32 on; the only convolution here is the patch embedding). `--precision bf16`
wraps forward + loss in torch.autocast(bfloat16); cosines, the aggregator softmax, sigmoids and
the ASL stay fp32 (SSPA.md), the optimiser and EMA are fp32.

  python scripts/bench_finetune_torch.py --device cuda --json out.json
  python scripts/bench_finetune_torch.py --device cpu --tiny          # smoke test
Needs only torch. Prints one JSON object on stdout.
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SOT, EOT, PERIOD = 49406, 49407, 269  # CLIP BPE: start, end, "."
LOGIT_SCALE_INIT = math.log(1 / 0.07)  # similarity.rs LOGIT_SCALE_INIT
LOGIT_SCALE_MAX_LN = math.log(100.0)  # similarity.rs LOGIT_SCALE_MAX_LN

FULL = dict(vision_width=768, vision_layers=12, vision_heads=12, patch=16, train_grid=14,
            text_width=512, text_layers=12, text_heads=8, context=77, vocab=49408, embed_dim=512,
            prompt_tokens=4, classes=80, batch=32, image_size=448, steps=10, warmup=3)
TINY = dict(FULL, vision_width=64, vision_layers=2, vision_heads=4, text_width=64, text_layers=2,
            text_heads=4, embed_dim=64, classes=5, batch=2, image_size=64, steps=2, warmup=1)


def fp32_region(x):
    """Autocast off and fp32 inputs: cos, softmax, sigmoid and ASL run in fp32 (SSPA.md)."""
    return torch.autocast(x.device.type, enabled=False)


# ---------------------------------------------------------------- CLIP towers (crates/clip)
class Attention(nn.Module):
    def __init__(self, width, heads, sdpa):
        super().__init__()
        self.in_proj, self.out_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.heads, self.sdpa = heads, sdpa

    def forward(self, x, causal):
        b, length, w = x.shape
        hw = w // self.heads
        fused = self.in_proj(x).reshape(b, length, 3, self.heads, hw)
        q, k, v = (fused[:, :, i].transpose(1, 2) for i in range(3))  # [B, H, L, hw]
        if self.sdpa:
            context = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            scores = q @ k.transpose(2, 3) / math.sqrt(hw)
            if causal:  # text.rs causal_mask: 0 on/below the diagonal, f32::MIN above
                mask = torch.full((length, length), torch.finfo(torch.float32).min, device=x.device)
                scores = scores + torch.triu(mask, diagonal=1)
            context = scores.softmax(dim=3) @ v
        return self.out_proj(context.transpose(1, 2).reshape(b, length, w))


class ResidualBlock(nn.Module):
    def __init__(self, width, heads, sdpa):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width, eps=1e-5), nn.LayerNorm(width, eps=1e-5)
        self.attn = Attention(width, heads, sdpa)
        self.c_fc, self.c_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x, causal=False):
        x = x + self.attn(self.ln_1(x), causal)
        h = self.c_fc(self.ln_2(x))
        return x + self.c_proj(h * torch.sigmoid(h * 1.702))  # QuickGELU


class VisionTransformer(nn.Module):
    def __init__(self, c, sdpa):
        super().__init__()
        w, scale = c["vision_width"], c["vision_width"] ** -0.5
        self.grid = c["train_grid"]
        self.conv1 = nn.Conv2d(3, w, c["patch"], stride=c["patch"], bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * scale)
        self.positional_embedding = nn.Parameter(torch.randn(self.grid ** 2 + 1, w) * scale)
        self.ln_pre, self.ln_post = nn.LayerNorm(w, eps=1e-5), nn.LayerNorm(w, eps=1e-5)
        self.blocks = nn.ModuleList(ResidualBlock(w, c["vision_heads"], sdpa)
                                    for _ in range(c["vision_layers"]))
        self.proj = nn.Parameter(torch.randn(w, c["embed_dim"]) * scale)

    def positions(self, height, width):
        """vit.rs positions(): the table as is at the training grid, else bicubically resampled."""
        table = self.positional_embedding
        if (height, width) == (self.grid, self.grid):
            return table
        w = table.shape[1]
        grid = table[1:].reshape(1, self.grid, self.grid, w).permute(0, 3, 1, 2)
        resized = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return torch.cat([table[:1], resized.permute(0, 2, 3, 1).reshape(height * width, w)], 0)

    def forward(self, images):
        x = self.conv1(images)
        b, w, gh, gw = x.shape
        x = x.reshape(b, w, gh * gw).transpose(1, 2)
        x = torch.cat([self.class_embedding.reshape(1, 1, w).expand(b, 1, w), x], 1)
        x = self.ln_pre(x + self.positions(gh, gw).unsqueeze(0))
        for block in self.blocks:
            x = block(x)
        x = self.ln_post(x).reshape(b * (gh * gw + 1), w) @ self.proj  # every token projected
        x = x.reshape(b, gh * gw + 1, -1)
        return x[:, 0], x[:, 1:]  # f_g [B, D], F_p [B, N, D]


class TextTransformer(nn.Module):
    def __init__(self, c, sdpa):
        super().__init__()
        w = c["text_width"]
        self.token_embedding = nn.Embedding(c["vocab"], w)  # burn Embedding init: N(0, 1)
        self.positional_embedding = nn.Parameter(torch.randn(c["context"], w) * 0.01)
        self.blocks = nn.ModuleList(ResidualBlock(w, c["text_heads"], sdpa) for _ in range(c["text_layers"]))
        self.ln_final = nn.LayerNorm(w, eps=1e-5)
        self.text_projection = nn.Parameter(torch.randn(w, c["embed_dim"]) * w ** -0.5)

    def forward_with_prompts(self, prompts, ids, eot):
        """text.rs forward_with_prompts: [SOT][V_1..V_M][words][EOT] 0..., pooled at `eot`.
        `ids` already holds the shifted rows (zeros at the prompt slots, which are replaced)."""
        m = prompts.shape[0]
        words = self.token_embedding(ids)
        rows, length, w = words.shape
        x = torch.cat([words[:, :1], prompts.unsqueeze(0).expand(rows, m, w), words[:, 1 + m:]], 1)
        x = x + self.positional_embedding[:length].unsqueeze(0)
        for block in self.blocks:
            x = block(x, causal=True)
        x = self.ln_final(x)
        pooled = x.gather(1, eot.reshape(rows, 1, 1).expand(rows, 1, w)).reshape(rows, w)
        return pooled @ self.text_projection


def cap_token_rows(labels, m, context):
    """Host-side id rows as text.rs builds them: SOT, M empty slots, label words, EOT, zeros."""
    ids = torch.zeros(len(labels), context, dtype=torch.long)
    eot = []
    for row, words in enumerate(labels):
        kept = words[:context - 2 - m]
        ids[row, 0] = SOT
        ids[row, 1 + m:1 + m + len(kept)] = torch.tensor(kept)
        ids[row, 1 + m + len(kept)] = EOT
        eot.append(1 + m + len(kept))
    return ids, torch.tensor(eot)


# ---------------------------------------------------------------- SSPA head (crates/model)
def l2_normalize(x):
    return x / x.square().sum(-1, keepdim=True).sqrt().clamp_min(1e-12)


def logit_scale(a):
    return a.clamp_max(LOGIT_SCALE_MAX_LN).exp()


def scaled_cosine(x, y, a):
    with fp32_region(x):
        return l2_normalize(x.float()) @ l2_normalize(y.float()).transpose(-1, -2) * logit_scale(a)


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.expand, self.contract = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        return self.contract(F.gelu(self.expand(x)))


class CrossModalAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm_query, self.norm_key_value = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.query = nn.Linear(d, d, bias=False)
        self.d = d

    def forward(self, x, y):
        query = self.query(self.norm_query(x))
        key_value = self.norm_key_value(y)
        scores = query @ key_value.transpose(1, 2) / math.sqrt(self.d)
        return scores.softmax(dim=2) @ key_value


class DynamicSemanticFilter(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attention, self.norm, self.mlp = CrossModalAttention(d), nn.LayerNorm(d, eps=1e-5), Mlp(d)

    def forward(self, text, patches):
        filtered = text + self.attention(text, patches)
        return filtered + self.mlp(self.norm(filtered))


class QuaternionLinear(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        q_in, q_out = d_in // 4, d_out // 4
        sigma = 1.0 / math.sqrt(2.0 * (q_in + q_out))  # Parcollet's quaternion Glorot init
        modulus = torch.randn(4, q_in, q_out).square().sum(0).sqrt() * sigma
        axis = torch.rand(3, q_in, q_out) * 2 - 1
        axis = axis / (axis.square().sum(0, keepdim=True) + 1e-4).sqrt()
        phase = (torch.rand(q_in, q_out) * 2 - 1) * math.pi
        imaginary = modulus * phase.sin() * axis
        self.weight_r = nn.Parameter(modulus * phase.cos())
        self.weight_x, self.weight_y, self.weight_z = (nn.Parameter(imaginary[i].clone()) for i in range(3))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def block_matrix(self):  # [in, out], as quaternion.rs
        r, x, y, z = self.weight_r, self.weight_x, self.weight_y, self.weight_z
        return torch.cat([torch.cat([r, x, y, z], 1), torch.cat([-x, r, z, -y], 1),
                          torch.cat([-y, -z, r, x], 1), torch.cat([-z, y, -x, r], 1)], 0)

    def forward(self, h):
        return F.linear(h, self.block_matrix().t(), self.bias)


class Qsm(nn.Module):
    def __init__(self, d):
        super().__init__()
        hidden = 4 * (d // 4)
        self.project = nn.Linear(3 * d, hidden)
        self.quaternion_hidden, self.quaternion_out = QuaternionLinear(hidden, hidden), QuaternionLinear(hidden, d)

    def forward(self, knowledge, context, global_):
        b, classes, d = context.shape
        joined = torch.cat([knowledge.unsqueeze(0).expand(b, classes, d), context,
                            global_.unsqueeze(1).expand(b, classes, d)], 2)
        return self.quaternion_out(F.relu(self.quaternion_hidden(self.project(joined))))


class Gate(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.modulate, self.gate = nn.Linear(d, d), nn.Linear(2 * d, d)

    def forward(self, query, attended):
        modulated = torch.tanh(self.modulate(attended))
        g = torch.sigmoid(self.gate(torch.cat([query, attended], -1)))
        return query + g * modulated


class GatedAlignment(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attention, self.gate = CrossModalAttention(d), Gate(d)
        self.norm, self.mlp = nn.LayerNorm(d, eps=1e-5), Mlp(d)

    def forward(self, query, context):
        gated = self.gate(query, self.attention(query, context))
        return gated + self.mlp(self.norm(gated))


class Gdma(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.visual_to_semantic, self.semantic_to_visual = GatedAlignment(d), GatedAlignment(d)

    def forward(self, text, patches):  # both directions read the un-updated inputs
        return self.visual_to_semantic(text, patches), self.semantic_to_visual(patches, text)


class Aggregator(nn.Module):
    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor([LOGIT_SCALE_INIT]))
        self.log_temperature = nn.Parameter(torch.zeros(1))

    def forward(self, patches, text):
        patch_logits = scaled_cosine(patches, text, self.logit_scale)  # [B, N, C], fp32
        with fp32_region(patch_logits):
            weights = (patch_logits / self.log_temperature.exp()).softmax(dim=1)
            return (weights * patch_logits).sum(1)


class SspaHead(nn.Module):
    def __init__(self, image_width, d):
        super().__init__()
        self.image_projection = nn.Linear(image_width, d)  # model.image_projection = "linear"
        self.dsf, self.qsm, self.gdma = DynamicSemanticFilter(d), Qsm(d), Gdma(d)
        self.aggregator = Aggregator()
        self.global_logit_scale = nn.Parameter(torch.tensor([LOGIT_SCALE_INIT]))

    def forward(self, knowledge, context, global_, patches):
        global_, patches = self.image_projection(global_), self.image_projection(patches)
        global_logits = scaled_cosine(global_, context, self.global_logit_scale)  # global text = CAP
        b, (classes, d) = global_.shape[0], context.shape
        filtered = self.dsf(context.unsqueeze(0).expand(b, classes, d), patches)
        unified = self.qsm(knowledge, filtered, global_)
        text, aligned = self.gdma(unified, patches)
        regional_logits = self.aggregator(aligned, text)
        with fp32_region(regional_logits):
            scores = (torch.sigmoid(global_logits) + torch.sigmoid(regional_logits)) / 2
        return global_logits, regional_logits, scores


class SspaModel(nn.Module):
    """What is trained: head + CAP prompts + the image tower (train/src/model.rs, backbone.rs)."""

    def __init__(self, c, sdpa):
        super().__init__()
        self.head = SspaHead(c["embed_dim"], c["embed_dim"])
        self.prompts = nn.Parameter(torch.randn(c["prompt_tokens"], c["text_width"]) * 0.02)
        self.backbone = VisionTransformer(c, sdpa)


def asl(logits, targets, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=1e-8):
    with fp32_region(logits):
        logits = logits.float()
        positive, negative = (targets == 1).float(), (targets == 0).float()
        p = torch.sigmoid(logits)
        shifted = (p - clip).clamp_min(0.0) if clip > 0 else p
        log_positive = p.clamp_min(eps).log()
        log_negative = (1 - shifted).clamp_min(eps).log()
        if gamma_pos > 0:
            log_positive = log_positive * (1 - p).detach().pow(gamma_pos)
        if gamma_neg > 0:
            log_negative = log_negative * shifted.detach().pow(gamma_neg)
        return -(positive * log_positive + negative * log_negative).sum() / logits.shape[0]


# ---------------------------------------------------------------- benchmark
def set_tf32(enabled):
    """TF32 for cuBLAS matmuls and cuDNN convolutions, through the new API where it exists
    (torch >= 2.9 refuses to read flags set through a mix of the two)."""
    b = torch.backends
    if hasattr(b.cuda.matmul, "fp32_precision"):
        b.cuda.matmul.fp32_precision = b.cudnn.conv.fp32_precision = "tf32" if enabled else "ieee"
        return {"enabled": enabled, "api": "fp32_precision", "matmul": b.cuda.matmul.fp32_precision,
                "cudnn_conv": b.cudnn.conv.fp32_precision}
    b.cuda.matmul.allow_tf32 = b.cudnn.allow_tf32 = enabled
    return {"enabled": enabled, "api": "allow_tf32", "matmul": b.cuda.matmul.allow_tf32,
            "cudnn_conv": b.cudnn.allow_tf32}


def count(params):
    return sum(p.numel() for p in params)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--batch", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--classes", type=int)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in matmuls and cuDNN")
    parser.add_argument("--attention", default="explicit", choices=["explicit", "sdpa"],
                        help="explicit softmax(QK^T)V as burn (default) or fused SDPA")
    parser.add_argument("--host-inputs", action="store_true",
                        help="copy images/targets from host memory every step (as a burn TensorData upload)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes for a CPU smoke test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()

    c = dict(TINY if args.tiny else FULL)
    for key in ["batch", "image_size", "steps", "warmup", "classes"]:
        if getattr(args, key) is not None:
            c[key] = getattr(args, key)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    tf32 = set_tf32(args.tf32)
    torch.manual_seed(args.seed)
    sdpa = args.attention == "sdpa"

    # Frozen text tower, fixed inputs.
    text = TextTransformer(c, sdpa).to(device).requires_grad_(False)
    generator = torch.Generator().manual_seed(args.seed)
    labels = [torch.randint(1, SOT, (int(torch.randint(1, 4, (1,), generator=generator)),),
                            generator=generator).tolist() + [PERIOD] for _ in range(c["classes"])]
    ids, eot = cap_token_rows(labels, c["prompt_tokens"], c["context"])
    ids, eot = ids.to(device), eot.to(device)
    knowledge = torch.randn(c["classes"], c["embed_dim"], generator=generator).to(device)  # T_k
    size = c["image_size"]
    host_images = torch.randn(c["batch"], 3, size, size, generator=generator)
    host_targets = (torch.rand(c["batch"], c["classes"], generator=generator) < 0.1).float()
    images, targets = host_images.to(device), host_targets.to(device)

    model = SspaModel(c, sdpa).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    # optim.rs: decay on every parameter of rank >= 2 except the CAP prompt tokens (trainer.rs).
    decayed = [p for p in params if p.ndim >= 2 and p is not model.prompts]
    plain = [p for p in params if p.ndim < 2 or p is model.prompts]
    optimizer = torch.optim.AdamW([{"params": plain, "weight_decay": 0.0},
                                   {"params": decayed, "weight_decay": 1e-4}],
                                  lr=5e-5, betas=(0.9, 0.999), eps=1e-8)
    ema = [p.detach().clone() for p in params]
    ema_decay = 0.9997

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def ema_update():
        with torch.no_grad():
            torch._foreach_mul_(ema, ema_decay)
            torch._foreach_add_(ema, params, alpha=1 - ema_decay)

    shapes = {}

    def step():
        if args.host_inputs:
            batch_images, batch_targets = host_images.to(device), host_targets.to(device)
        else:
            batch_images, batch_targets = images, targets
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            context = text.forward_with_prompts(model.prompts, ids, eot)  # T_l [C, d]
            global_, patches = model.backbone(batch_images)
            global_logits, regional_logits, _ = model.head(knowledge, context, global_, patches)
            loss = asl(global_logits, batch_targets) + 1.0 * asl(regional_logits, batch_targets)
        shapes.update(context=list(context.shape), global_=list(global_.shape), patches=list(patches.shape),
                      logits=list(regional_logits.shape))
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema_update()
        return loss.item(), grad_norm

    if cuda:
        torch.cuda.synchronize()
        before_steps = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    losses = [step()[0] for _ in range(c["warmup"])]
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(c["steps"]):
        loss, grad_norm = step()
        losses.append(loss)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    n = (size // c["patch"]) ** 2
    assert shapes["patches"] == [c["batch"], n, c["embed_dim"]], shapes
    assert shapes["context"] == [c["classes"], c["embed_dim"]], shapes
    assert shapes["logits"] == [c["batch"], c["classes"]], shapes
    steps = c["steps"]
    result = {
        "benchmark": "sspa_finetune_step",
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "cuda_version": torch.version.cuda if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "precision": args.precision,
        "tf32": tf32,
        "attention": args.attention,
        "optimizer": "torch.optim.AdamW (default implementation: foreach on CUDA), 2 groups",
        "host_inputs": args.host_inputs,
        "tiny": args.tiny,
        "config": dict(c, patches_per_image=n, tokens_per_image=n + 1,
                       positions_interpolated=size // c["patch"] != c["train_grid"],
                       lr=5e-5, weight_decay=1e-4, grad_clip=1.0, ema_decay=ema_decay, lambda_regional=1.0),
        "shapes": shapes,
        "steps_timed": steps,
        "warmup_steps": c["warmup"],
        "seconds_total": seconds,
        "seconds_per_step": seconds / steps if steps else None,
        "steps_per_second": steps / seconds if steps else None,
        "images_per_second": steps * c["batch"] / seconds if steps else None,
        "params": {
            "image_tower_trainable": count(model.backbone.parameters()),
            "head_trainable": count(model.head.parameters()),
            "prompts_trainable": model.prompts.numel(),
            "text_tower_frozen": count(text.parameters()),
            "weight_decay_group": count(decayed),
            "no_decay_group": count(plain),
        },
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_finite": all(math.isfinite(value) for value in losses),
    }
    if steps:
        result["grad_norm_last"] = float(grad_norm)
    if cuda:
        result["memory"] = {
            "allocated_before_steps_bytes": before_steps,
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(),
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 3),
        }
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.json:
        with open(args.json, "w") as file:
            file.write(text_out + "\n")


if __name__ == "__main__":
    main()
