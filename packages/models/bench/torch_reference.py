#!/usr/bin/env python3
"""PyTorch reference for bench/train-step.mjs: the same REFERENCE DiT (AdaLN-Single, PixArt-alpha),
same sizes, same loss, Adam, on the CPU, timed with 1 and 2 intra-op threads.

Reference: batch 64 of 28x28x1 images in 4x4 patches (49 tokens), hidden 128, depth 4, 4 heads,
MLP ratio 4; eps-prediction MSE (cosine schedule) on one fixed random batch with random integer
tau; Adam (lr 1e-4). Prints one JSON object per line, with the fields of train-step.mjs and
"backend": "pytorch".

Run: /usr/bin/python3 bench/torch_reference.py   (Debian's python3-torch, CPU build)
Environment: BENCH_STEPS (default 10), BENCH_WARMUP (default 3), BENCH_THREADS (default "1,2").
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH, IMAGE, CHANNELS, PATCH = 64, 28, 1, 4
HIDDEN, DEPTH, HEADS, MLP_RATIO = 128, 4, 4, 4


def t2i_modulate(x, shift, scale):
    return x * (1 + scale) + shift


def sincos_pos_embed(dim, grid):
    """DiT's get_2d_sincos_pos_embed: first half the column, second half the row."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")

    def enc(pos):
        out = pos.reshape(-1, 1).double() * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([enc(cols), enc(rows)], dim=1).float()[None]


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x, t):
        B = x.shape[0]
        sa, ca, ga, sm, cm, gm = (self.scale_shift_table[None] + t.reshape(B, 6, -1)).chunk(6, dim=1)
        x = x + ga * self.attn(t2i_modulate(self.norm1(x), sa, ca))
        return x + gm * self.mlp(t2i_modulate(self.norm2(x), sm, cm))


class FinalLayer(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)

    def forward(self, x, t):
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        return self.linear(t2i_modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Linear patch embedding on flattened (row, col, channel) patches, NHWC input, as ours."""

    def __init__(self):
        super().__init__()
        self.grid = IMAGE // PATCH
        self.patch_embed = nn.Linear(PATCH * PATCH * CHANNELS, HIDDEN)
        self.register_buffer("pos_embed", sincos_pos_embed(HIDDEN, self.grid))
        self.t_embedder = TimestepEmbedder(HIDDEN)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(HIDDEN, 6 * HIDDEN))
        self.blocks = nn.ModuleList(Block(HIDDEN, HEADS, MLP_RATIO) for _ in range(DEPTH))
        self.final_layer = FinalLayer(HIDDEN, PATCH * PATCH * CHANNELS)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for lin in (self.t_block[1], self.final_layer.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x, t):
        B, g, p = x.shape[0], self.grid, PATCH
        patches = x.reshape(B, g, p, g, p * CHANNELS).permute(0, 1, 3, 2, 4).reshape(B, g * g, -1)
        h = self.patch_embed(patches) + self.pos_embed
        c = self.t_embedder(t)
        t0 = self.t_block(c)
        for block in self.blocks:
            h = block(h, t0)
        out = self.final_layer(h, c)
        return out.reshape(B, g, g, p, p * CHANNELS).permute(0, 1, 3, 2, 4).reshape(B, IMAGE, IMAGE, CHANNELS)


def bench(threads, steps, warmup):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DiT()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x0 = torch.rand(BATCH, IMAGE, IMAGE, CHANNELS) * 2 - 1
    eps = torch.randn(BATCH, IMAGE, IMAGE, CHANNELS)
    n = torch.randint(0, 1000, (BATCH,)).float()
    abar = torch.cos(((n / 1000 + 0.008) / 1.008) * math.pi / 2) ** 2
    xt = abar.sqrt()[:, None, None, None] * x0 + (1 - abar).sqrt()[:, None, None, None] * eps

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(xt, n), eps)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1000)
    ms = sum(times) / len(times)
    times.sort()
    print(
        json.dumps(
            {
                "name": "train_step_reference",
                "backend": "pytorch",
                "threads": threads,
                "ms_per_step": round(ms, 1),
                "images_per_s": round(BATCH / ms * 1000, 1),
                "ms_min": round(times[0], 1),
                "ms_median": round(times[len(times) // 2], 1),
                "steps": steps,
                "batch": BATCH,
                "params": sum(p.numel() for p in model.parameters()),
                "loss": round(loss, 4),
                "torch": torch.__version__,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    steps = int(os.environ.get("BENCH_STEPS", 10))
    warmup = int(os.environ.get("BENCH_WARMUP", 3))
    for threads in [int(t) for t in os.environ.get("BENCH_THREADS", "1,2").split(",")]:
        bench(threads, steps, warmup)
    sys.exit(0)
