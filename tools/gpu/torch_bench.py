"""PyTorch (CUDA, fp32, TF32 off) figures for the same cases as io.lightmesh.engine.bench.KernelBench.

Prints one table: device-to-device copy bandwidth, matmul GFLOP/s (cuBLAS SGEMM), matrix-vector GB/s (fp32 and bf16
weights), the lightning prefill block algorithm as Hugging Face transformers writes it (a Python loop over blocks,
batched over heads), the lightning decode step, decode attention (SDPA with GQA) and causal prefill attention.
Times are CUDA-event medians after warm-up; inputs are random (never zeros).

    python3 tools/gpu/torch_bench.py [--quick]
"""
import argparse
import math
import statistics

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")

ROWS = []


def timed(fn, reps=10, warmup=3):
    """Median milliseconds of fn() over reps, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def row(name, ms, rate, unit):
    line = f"| {name:<58} | {ms:10.3f} | {rate:10.1f} {unit:<7} |"
    ROWS.append(line)
    print(line, flush=True)


def rnd(*shape, scale=1.0, dtype=torch.float32):
    return ((torch.rand(*shape, device="cuda") * 2 - 1) * scale).to(dtype)


def copy_bandwidth(quick):
    n = (1 << 26) if quick else (1 << 29)  # 2 GiB of fp32
    src, dst = rnd(n), torch.empty(n, device="cuda")
    ms = timed(lambda: dst.copy_(src))
    row(f"device copy {n * 4 >> 20} MiB (read + write)", ms, 2 * n * 4 / ms / 1e6, "GB/s")


def matmul(quick):
    n = 256 if quick else 4096
    shapes = [(256, 256, "square")] if quick else [
        (4096, 4096, "square 4096^3"), (24576, 6144, "M1 qkv_proj"), (6144, 8192, "M1 out_proj"),
        (9216, 6144, "M1 expert w1/w3"), (6144, 9216, "M1 expert w2")]
    for out, inn, name in shapes:
        x, w = rnd(n, inn), rnd(out, inn, scale=0.05)
        ms = timed(lambda: x @ w.T)
        row(f"matmul {name} F32 n={n} out={out} in={inn}", ms, 2 * n * inn * out / ms / 1e6, "GFLOP/s")


def matvec(quick):
    shapes = [(512, 768, "small")] if quick else [(6144, 8192, "M1 out_proj"), (24576, 6144, "M1 qkv_proj"),
                                                  (9216, 6144, "M1 expert w1")]
    for i, (out, inn, name) in enumerate(shapes):
        for dt, tag in ((torch.float32, "F32"), (torch.bfloat16, "BF16")):
            w = rnd(out, inn, scale=0.05, dtype=dt)
            for n in (1, 8):
                if n == 8 and i > 0:
                    continue
                x = rnd(n, inn, dtype=dt)
                ms = timed(lambda: x @ w.T, reps=50)
                row(f"matvec {name} {tag} n={n} out={out} in={inn} (weight bytes)", ms,
                    out * inn * w.element_size() / ms / 1e6, "GB/s")


def lightning_hf(q, k, v, slope, block):
    """transformers' MiniMax lightning attention prefill (block loop), on [B, H, n, D] tensors, from a zero state."""
    b, h, n, d = q.shape
    nb = (n + block - 1) // block
    query_decay = torch.exp(-slope * torch.arange(block, device="cuda").view(-1, 1) - slope)        # exp(-l (a+1))
    key_decay = torch.exp(-slope * (block - torch.arange(block, device="cuda").view(-1, 1)) + slope)  # exp(-l (m-1-b))
    diag = torch.arange(block, device="cuda").view(-1, 1) - torch.arange(block, device="cuda").view(1, -1)
    diagonal_decay = torch.exp(-slope * torch.where(diag >= 0, diag, float("inf")).view(1, 1, block, block))
    kv = torch.zeros(b, h, d, d, device="cuda")
    out = []
    for i in range(nb):
        s, e = i * block, min(n, (i + 1) * block)
        m = e - s
        qi, ki, vi = q[:, :, s:e], k[:, :, s:e], v[:, :, s:e]
        intra = torch.matmul(torch.matmul(qi, ki.transpose(-1, -2)) * diagonal_decay[:, :, :m, :m], vi)
        inter = torch.matmul(qi * query_decay[:, :m], kv)
        out.append(intra + inter)
        block_decay = torch.exp(-slope * m)
        kv = kv * block_decay + torch.matmul((ki * key_decay[:, -m:]).transpose(-1, -2), vi)
    return torch.cat(out, dim=2), kv


def lightning(quick):
    n, h, d, block = (1024, 8, 64, 256) if quick else (32768, 64, 128, 256)
    q, k, v = rnd(1, h, n, d, scale=0.1), rnd(1, h, n, d, scale=0.1), rnd(1, h, n, d)
    slope = torch.tensor([2 ** (-8 * (i + 1) / h) * 0.5 for i in range(h)], device="cuda").view(1, h, 1, 1)
    ms = timed(lambda: lightning_hf(q, k, v, slope, block), reps=3, warmup=1)
    nb = math.ceil(n / block)
    flops = h * nb * (2.0 * block * block * d + 4.0 * block * d * d)
    row(f"lightning prefill (HF block loop) n={n} H={h} D={d} block={block}", ms, flops / ms / 1e6, "GFLOP/s")


def decode(quick):
    h, d = (8, 64) if quick else (64, 128)
    for bsz in (1, 8):
        s = rnd(bsz, h, d, d, scale=0.1)
        q, k, v = rnd(bsz, h, 1, d), rnd(bsz, h, 1, d), rnd(bsz, h, 1, d)
        ratio = torch.full((1, h, 1, 1), math.exp(-0.05), device="cuda")

        def step():
            s.mul_(ratio).add_(k.transpose(-1, -2) * v)  # S = r S + k^T v   (in place, as a server would)
            return torch.matmul(q, s)

        ms = timed(step, reps=50)
        row(f"lightning decode B={bsz} H={h} D={d} (state r+w)", ms, 2 * s.numel() * 4 / ms / 1e6, "GB/s")
    kvh = 2 if quick else 8
    for t in ([2048] if quick else [4096, 32768, 131072]):
        kc, vc = rnd(1, kvh, t, d), rnd(1, kvh, t, d)
        for n in (1, 4):
            q = rnd(1, h, n, d)
            # the n new queries sit at the end of the cache: causal within them, all earlier keys visible
            mask = torch.ones(n, t, dtype=torch.bool, device="cuda").tril(diagonal=t - n)
            ms = timed(lambda: torch.nn.functional.scaled_dot_product_attention(
                q, kc, vc, attn_mask=None if n == 1 else mask, enable_gqa=True), reps=30)
            row(f"decode attention n={n} T={t} H={h} KV={kvh} D={d} (K+V bytes)", ms, 2 * kc.numel() * 4 / ms / 1e6,
                "GB/s")


def attention_prefill(quick):
    n, h, kvh, d = (512, 8, 2, 64) if quick else (4096, 64, 8, 128)
    q, k, v = rnd(1, h, n, d), rnd(1, kvh, n, d), rnd(1, kvh, n, d)
    ms = timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
               reps=5)
    row(f"flash attention prefill (SDPA causal fp32) n={n} H={h} KV={kvh} D={d}", ms,
        4.0 * h * d * (n * (n + 1) / 2) / ms / 1e6, "GFLOP/s")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()} (TF32 off, fp32 unless stated)", flush=True)
    for f in (copy_bandwidth, matmul, matvec, lightning, decode, attention_prefill):
        f(a.quick)
    print()
    print("PyTorch results (CUDA events, median)")
    print(f"| {'case':<58} | {'ms':>10} | {'rate':>18} |")
    print("|" + "-" * 60 + "|" + "-" * 12 + "|" + "-" * 20 + "|")
    for r in ROWS:
        print(r)


if __name__ == "__main__":
    main()
