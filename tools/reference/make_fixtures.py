#!/usr/bin/env python3
"""Logit fixtures for the LightMesh engine tests, from transformers 5.17's MiniMax (float32, CPU, eval).

Cases (folders under --out, each: config.json, weights, expected.json):
  hf_f32_single                HF dialect, 8 layers (softmax at 7), block 16, f32, one model.safetensors, prompt 70
  m1_f32_sharded_partial_rope  minimax_m1 dialect, 8 layers (softmax at 3, 7), block 256, rotary_dim 16 of 32,
                               f32, 3 shards + index, prompt 600
  hf_bf16_single               HF dialect, 6 layers (softmax at 2, 5), block 32, BF16 weights (reference computed in
                               fp32 on the bf16-rounded weights), prompt 100

Every case is also checked against an independent float64 implementation of the model (mmref.ref_forward) on the
WRITTEN weights, and reloaded through the inverse name mapping (and transformers' own from_pretrained for the HF
dialect). Seeds are bumped until no MoE routing decision or greedy choice is a near tie.

Usage: python3 make_fixtures.py --out DIR [--only CASE ...]
"""
import argparse
import os
import shutil
import time

import numpy as np
import torch
import transformers

import mmref

BASE = dict(vocab=2048, hidden=64, inter=48, heads=4, kv_heads=2, head_dim=32, rope_theta=10000, eps=1e-5,
            experts=4, top_k=2, max_pos=8192)

CASES = {
    "hf_f32_single": dict(
        spec=dict(BASE, layers=8, rotary_dim=32, block_size=16,
                  layer_types=["full_attention" if i % 8 == 7 else "linear_attention" for i in range(8)],
                  lin_alpha=1.7, lin_beta=0.9, full_alpha=1.3, full_beta=1.1, mlp_alpha=1.5, mlp_beta=0.8),
        dialect="hf", dtype="f32", shards=1, prompt_len=70, seed=1001,
        description="HF-dialect config (model_type minimax, layer_types, block_size 16); 8 layers, softmax at 7; "
                    "hidden 64, 4 heads x 32 (H*D=128 != hidden), 2 kv heads, 4 experts top-2, intermediate 48; "
                    "f32 weights in one model.safetensors; prompt of 70 random ids (4 full blocks + 6)."),
    "m1_f32_sharded_partial_rope": dict(
        spec=dict(BASE, layers=8, rotary_dim=16, block_size=256,
                  layer_types=["full_attention" if i in (3, 7) else "linear_attention" for i in range(8)],
                  lin_alpha=1.9, lin_beta=0.85, full_alpha=1.4, full_beta=1.2, mlp_alpha=1.6, mlp_beta=0.95),
        dialect="m1", dtype="f32", shards=3, prompt_len=600, seed=2002,
        description="Original minimax_m1 dialect config (attn_type_list, layernorm_*_alpha/beta, postnorm, "
                    "rotary_dim 16 of head_dim 32, rope_theta); lightning block 256 (implied); 8 layers, softmax at "
                    "3 and 7; f32 weights in 3 shards with model.safetensors.index.json; prompt of 600 random ids "
                    "(crosses 2 block boundaries). Reference: HF patched to rotate only the first rotary_dim dims."),
    "hf_bf16_single": dict(
        spec=dict(BASE, layers=6, rotary_dim=32, block_size=32,
                  layer_types=["full_attention" if i in (2, 5) else "linear_attention" for i in range(6)],
                  lin_alpha=1.6, lin_beta=0.7, full_alpha=1.2, full_beta=1.3, mlp_alpha=1.8, mlp_beta=0.6),
        dialect="hf", dtype="bf16", shards=1, prompt_len=100, seed=3003,
        description="HF-dialect config, 6 layers, softmax at 2 and 5, block_size 32; BF16 weights in one "
                    "model.safetensors; logits computed in fp32 from the bf16-rounded weights; prompt of 100 "
                    "random ids."),
}

ROUTER_GAP_MIN = 2e-4   # router logits: k-th vs (k+1)-th best, float64 reference
GREEDY_GAP_MIN = 2e-3   # final logits: best vs second best at each greedy step


def log(*a):
    print(*a, flush=True)


def rotary_noop_proof():
    """The partial-rotary patch with rotary_dim == head_dim must reproduce unpatched HF bit for bit."""
    spec = dict(CASES["hf_f32_single"]["spec"])
    rng = np.random.default_rng(5)
    ids = [int(i) for i in rng.integers(0, spec["vocab"], 40)]
    mmref.use_partial_rotary_patch(False)
    model = mmref.build_hf(spec, 77)
    a = mmref.full_logits(model, ids)
    mmref.use_partial_rotary_patch(True)
    b = mmref.full_logits(model, ids)
    spec16 = dict(spec, rotary_dim=16)
    mmref.set_rotary(model, spec16)
    c = mmref.full_logits(model, ids)
    mmref.use_partial_rotary_patch(False)
    log(f"rotary patch: rotary_dim=head_dim vs unpatched max diff {float((a - b).abs().max()):.3e} (must be 0); "
        f"rotary_dim=16 vs full max diff {float((a - c).abs().max()):.3e} (must be > 0)")
    assert float((a - b).abs().max()) == 0.0
    assert float((a - c).abs().max()) > 1e-3


def make_case(name, cfg, out_root):
    spec = cfg["spec"]
    partial = spec["rotary_dim"] != spec["head_dim"]
    mmref.use_partial_rotary_patch(partial)
    folder = os.path.join(out_root, name)
    for attempt in range(8):
        seed = cfg["seed"] + attempt
        t0 = time.time()
        log(f"[{name}] seed {seed}")
        model = mmref.build_hf(spec, seed)
        if cfg["dtype"] == "bf16":   # round every weight to bf16 and compute in fp32 from the rounded values
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.to(torch.bfloat16).float())
        rng = np.random.default_rng(seed)
        prompt = [int(i) for i in rng.integers(0, spec["vocab"], cfg["prompt_len"])]
        decode_ids = [int(i) for i in rng.integers(0, spec["vocab"], 6)]
        real = mmref.hf_to_real(model.state_dict(), spec)

        exp = mmref.compute_expected(model, prompt, decode_ids, spec["block_size"], log=log)
        # independent float64 check over prompt+decode and prompt+greedy
        seq1 = prompt + decode_ids
        ref1, gap1 = mmref.ref_forward(real, spec, seq1)
        hf1 = torch.cat([exp["prefill_full"], exp["decode_full"]])
        d_prefill = float((ref1[:len(prompt)] - exp["prefill_full"].double()).abs().max())
        d_dec = float((ref1[len(prompt):] - exp["decode"].double()).abs().max())
        ref2, gap2 = mmref.ref_forward(real, spec, prompt + exp["greedy"])
        ref_greedy = [int(torch.argmax(ref2[len(prompt) - 1 + i])) for i in range(len(exp["greedy"]))]
        ref_orig, _ = mmref.ref_forward(real, spec, seq1, slope_variant="doc")
        d_slope = float((ref_orig - ref1).abs().max())
        log(f"  float64 reference: prefill max|diff| {d_prefill:.3e}, cached decode {d_dec:.3e}, "
            f"greedy agrees: {ref_greedy == exp['greedy']}; min router gap {min(gap1, gap2):.2e}; "
            f"greedy gap {exp['greedy_gap']:.2e}; slope formula (L-1) vs HF's (L-1+1e-5): {d_slope:.3e}")
        scale = float(hf1.abs().max())
        assert d_prefill < 1e-3 * max(1.0, scale) and d_dec < 1e-3 * max(1.0, scale), "HF disagrees with float64 ref"
        assert ref_greedy == exp["greedy"], "greedy disagrees with float64 reference"
        if min(gap1, gap2) < ROUTER_GAP_MIN or exp["greedy_gap"] < GREEDY_GAP_MIN:
            log("  near tie: next seed")
            continue
        break
    else:
        raise RuntimeError("no seed without near ties")

    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    dtype = torch.bfloat16 if cfg["dtype"] == "bf16" else torch.float32
    if cfg["dialect"] == "hf":
        hc = model.config
        hc.dtype = "bfloat16" if cfg["dtype"] == "bf16" else "float32"
        hc.save_pretrained(folder)
    else:
        mmref.write_json(os.path.join(folder, "config.json"),
                         mmref.m1_config_dict(spec, "bfloat16" if cfg["dtype"] == "bf16" else "float32"))
    files = mmref.save_weights(real, folder, shards=cfg["shards"], dtype=dtype)

    # reload checks: written tensors -> fresh HF model through the inverse mapping must give identical logits
    back = mmref.read_weights(folder)
    assert set(back) == set(real), set(back) ^ set(real)
    fresh = mmref.build_hf(spec, 0)
    mmref.load_real_into(fresh, back, spec)
    d_reload = float((mmref.full_logits(fresh, prompt) - exp["prefill_full"]).abs().max())
    log(f"  reload through inverse mapping: max diff {d_reload:.3e}")
    assert d_reload == 0.0
    if cfg["dialect"] == "hf":
        try:
            hfm = transformers.MiniMaxForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
            mmref.set_rotary(hfm, spec)
            d_fp = float((mmref.full_logits(hfm, prompt) - exp["prefill_full"]).abs().max())
            log(f"  transformers from_pretrained(folder): max diff {d_fp:.3e}")
        except Exception as e:  # noqa: BLE001
            log(f"  transformers from_pretrained(folder) failed: {type(e).__name__}: {e}")
        # HF's own writer uses the same names (plus derived buffers)
        tmp = folder + ".hfsave"
        model.save_pretrained(tmp)
        theirs = mmref.read_weights(tmp)
        extra = sorted(k for k in theirs if k not in real)
        same = all(torch.equal(theirs[k].float(), real[k].float()) for k in real)
        log(f"  save_pretrained names match ours: {set(theirs) - set(extra) == set(real)}, values equal: {same}, "
            f"extra in HF's file: {sorted({e.rsplit('.', 1)[-1] for e in extra})}")
        shutil.rmtree(tmp)

    use_cache_logits = exp["decode_diff"] < 1e-4 * max(1.0, scale)
    if not use_cache_logits:
        log("  WARNING: cached decode disagrees with full forward; writing full-forward logits as decode_logits")
    desc = (cfg["description"] + f" Seed {seed}; weights N(0, 0.2), RMSNorm weights 1 + 0.3 N(0,1). "
            f"HF cached decode vs full forward max|diff| {exp['decode_diff']:.1e}; "
            f"HF vs float64 reference max|diff| {max(d_prefill, d_dec):.1e}.")
    mmref.write_expected(os.path.join(folder, "expected.json"), name, desc, cfg["dtype"], prompt, exp, decode_ids,
                         use_cache_logits)
    sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
    log(f"  wrote {folder}: {sizes} total {sum(sizes.values()) / 1e6:.2f} MB in {time.time() - t0:.1f}s")
    mmref.use_partial_rotary_patch(False)


def pitfall2_demo():
    """Shows what HF's cached decode does without explicit position_ids when layer 0 is lightning."""
    cfg = CASES["hf_f32_single"]
    spec = cfg["spec"]
    mmref.use_partial_rotary_patch(False)
    model = mmref.build_hf(spec, cfg["seed"])
    rng = np.random.default_rng(9)
    prompt = [int(i) for i in rng.integers(0, spec["vocab"], 40)]
    dec = [int(i) for i in rng.integers(0, spec["vocab"], 4)]
    good = mmref.cached_decode(model, prompt, dec, explicit_positions=True)
    bad = mmref.cached_decode(model, prompt, dec, explicit_positions=False)
    ff = mmref.full_logits(model, prompt + dec)[len(prompt):]
    log(f"pitfall 2: cached decode with explicit positions vs full {float((good - ff).abs().max()):.3e}; "
        f"without position_ids vs full {float((bad - ff).abs().max()):.3e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}")
    os.makedirs(args.out, exist_ok=True)
    rotary_noop_proof()
    pitfall2_demo()
    for name, cfg in CASES.items():
        if args.only and name not in args.only:
            continue
        make_case(name, cfg, args.out)


if __name__ == "__main__":
    main()
