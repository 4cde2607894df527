"""Shared helpers for the LightMesh reference generators (transformers 5.17 MiniMax as the reference).

- spec -> MiniMaxConfig (HF dialect) and -> config.json in either dialect
- deterministic initialisation (random RMSNorm weights too)
- partial-rotary patch for HF (pitfall 1 of shared/docs/minimax-m1.md)
- HF state_dict <-> real checkpoint names (HF 5.x fuses experts into mlp.experts.gate_up_proj / down_proj)
- an independent float64 implementation of the model from shared/docs/minimax-m1.md, using real names
- expected.json computation (prefill, cached decode with explicit positions, greedy without cache) and writer
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import MiniMaxConfig, MiniMaxForCausalLM
from transformers.models.minimax import modeling_minimax as mm

# ----------------------------------------------------------------------------------------------------------------
# spec / configs

SPEC_KEYS = ["vocab", "hidden", "inter", "layers", "heads", "kv_heads", "head_dim", "rotary_dim", "rope_theta",
             "layer_types", "block_size", "eps", "experts", "top_k", "lin_alpha", "lin_beta", "full_alpha",
             "full_beta", "mlp_alpha", "mlp_beta", "max_pos"]


def hf_config(s, initializer_range=0.2):
    return MiniMaxConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["inter"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        head_dim=s["head_dim"], num_local_experts=s["experts"], num_experts_per_tok=s["top_k"],
        layer_types=list(s["layer_types"]), block_size=s["block_size"], rms_norm_eps=s["eps"],
        rope_parameters={"rope_type": "default", "rope_theta": float(s["rope_theta"])},
        linear_attn_alpha_factor=s["lin_alpha"], linear_attn_beta_factor=s["lin_beta"],
        full_attn_alpha_factor=s["full_alpha"], full_attn_beta_factor=s["full_beta"],
        mlp_alpha_factor=s["mlp_alpha"], mlp_beta_factor=s["mlp_beta"],
        max_position_embeddings=s["max_pos"], initializer_range=initializer_range,
        bos_token_id=0, eos_token_id=2, pad_token_id=None, tie_word_embeddings=False,
    )


def m1_config_dict(s, dtype_name, initializer_range=0.2):
    """config.json in the original minimax_m1 dialect (as MiniMax-M1-40k/80k ship it)."""
    assert s["block_size"] == 256, "the minimax_m1 dialect implies lightning block size 256"
    return {
        "architectures": ["MiniMaxM1ForCausalLM"],
        "attention_dropout": 0.0,
        "attn_type_list": [1 if t == "full_attention" else 0 for t in s["layer_types"]],
        "auto_map": {
            "AutoConfig": "configuration_minimax_m1.MiniMaxM1Config",
            "AutoModelForCausalLM": "modeling_minimax_m1.MiniMaxM1ForCausalLM",
        },
        "bos_token_id": None,
        "eos_token_id": None,
        "head_dim": s["head_dim"],
        "hidden_act": "silu",
        "hidden_size": s["hidden"],
        "initializer_range": initializer_range,
        "intermediate_size": s["inter"],
        "layernorm_full_attention_alpha": s["full_alpha"],
        "layernorm_full_attention_beta": s["full_beta"],
        "layernorm_linear_attention_alpha": s["lin_alpha"],
        "layernorm_linear_attention_beta": s["lin_beta"],
        "layernorm_mlp_alpha": s["mlp_alpha"],
        "layernorm_mlp_beta": s["mlp_beta"],
        "max_position_embeddings": s["max_pos"],
        "model_type": "minimax_m1",
        "num_attention_heads": s["heads"],
        "num_experts_per_tok": s["top_k"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "num_local_experts": s["experts"],
        "output_router_logits": False,
        "postnorm": True,
        "rms_norm_eps": s["eps"],
        "rope_theta": s["rope_theta"],
        "rotary_dim": s["rotary_dim"],
        "router_aux_loss_coef": 0.001,
        "router_jitter_noise": 0.0,
        "shared_intermediate_size": 0,
        "shared_moe_mode": "sigmoid",
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": dtype_name,
        "transformers_version": "4.45.2",
        "use_cache": True,
        "vocab_size": s["vocab"],
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# model construction

def init_model(model, seed, std=0.2, norm_std=0.3):
    """Every parameter from one seeded generator, in named_parameters order. RMSNorm weights 1 + norm_std*randn."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + norm_std * torch.randn(p.shape, generator=g, dtype=torch.float32))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g, dtype=torch.float32))


def build_hf(spec, seed, std=0.2, norm_std=0.3):
    torch.manual_seed(seed)
    model = MiniMaxForCausalLM(hf_config(spec, initializer_range=std)).float().eval()
    init_model(model, seed, std, norm_std)
    set_rotary(model, spec)
    return model


# ----------------------------------------------------------------------------------------------------------------
# partial rotary (pitfall 1): HF 5.17 rotates all head_dim dims with inv_freq over head_dim. The patch rotates only
# the first rotary_dim dims (NeoX pairs (i, i + rotary_dim/2)), inv_freq over rotary_dim, the rest passes through.

_ORIG_APPLY = mm.apply_rotary_pos_emb


def _rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def partial_apply_rotary_pos_emb(q, k, cos, sin, *args, unsqueeze_dim=1, **kwargs):
    rd = cos.shape[-1]
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    q_rot, q_pass = q[..., :rd], q[..., rd:]
    k_rot, k_pass = k[..., :rd], k[..., rd:]
    q_rot = (q_rot * cos) + (_rotate_half(q_rot) * sin)
    k_rot = (k_rot * cos) + (_rotate_half(k_rot) * sin)
    return torch.cat((q_rot, q_pass), dim=-1), torch.cat((k_rot, k_pass), dim=-1)


def use_partial_rotary_patch(enabled):
    mm.apply_rotary_pos_emb = partial_apply_rotary_pos_emb if enabled else _ORIG_APPLY


def rope_inv_freq(rotary_dim, theta):
    return 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64).to(dtype=torch.float) / rotary_dim))


def set_rotary(model, spec):
    """inv_freq over rotary_dim (identical to HF's own when rotary_dim == head_dim)."""
    re = model.model.rotary_emb
    inv = rope_inv_freq(spec["rotary_dim"], float(spec["rope_theta"])).to(re.inv_freq.device)
    re.inv_freq = inv
    re.original_inv_freq = inv.clone()


# ----------------------------------------------------------------------------------------------------------------
# names

DERIVED = ("slope_rate", "query_decay", "key_decay", "diagonal_decay")


def hf_to_real(sd, spec):
    """HF 5.17 state_dict -> tensors under the released checkpoint's names (derived buffers dropped)."""
    out = {}
    inter = spec["inter"]
    for k, v in sd.items():
        if k.rsplit(".", 1)[-1] in DERIVED:
            continue
        if ".mlp.experts.gate_up_proj" in k:
            pre = k.replace(".mlp.experts.gate_up_proj", ".block_sparse_moe.experts")
            assert v.shape == (spec["experts"], 2 * inter, spec["hidden"]), v.shape
            for e in range(v.shape[0]):
                out[f"{pre}.{e}.w1.weight"] = v[e, :inter, :].clone().contiguous()   # gate
                out[f"{pre}.{e}.w3.weight"] = v[e, inter:, :].clone().contiguous()   # up
        elif ".mlp.experts.down_proj" in k:
            pre = k.replace(".mlp.experts.down_proj", ".block_sparse_moe.experts")
            assert v.shape == (spec["experts"], spec["hidden"], inter), v.shape
            for e in range(v.shape[0]):
                out[f"{pre}.{e}.w2.weight"] = v[e].clone().contiguous()                # down
        elif ".mlp.gate.weight" in k:
            out[k.replace(".mlp.gate.weight", ".block_sparse_moe.gate.weight")] = v.clone().contiguous()
        else:
            out[k] = v.clone().contiguous()
    return out


def real_to_hf(real, spec):
    out = {}
    E = spec["experts"]
    for k, v in real.items():
        if ".block_sparse_moe.experts." in k:
            continue
        out[k.replace(".block_sparse_moe.gate.weight", ".mlp.gate.weight")] = v
    for l in range(spec["layers"]):
        p = f"model.layers.{l}.block_sparse_moe.experts"
        w1 = [real[f"{p}.{e}.w1.weight"] for e in range(E)]
        w3 = [real[f"{p}.{e}.w3.weight"] for e in range(E)]
        w2 = [real[f"{p}.{e}.w2.weight"] for e in range(E)]
        out[f"model.layers.{l}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([a, b], dim=0) for a, b in zip(w1, w3)])
        out[f"model.layers.{l}.mlp.experts.down_proj"] = torch.stack(w2)
    return out


def load_real_into(model, real, spec):
    hf = real_to_hf({k: v.float() for k, v in real.items()}, spec)
    missing, unexpected = model.load_state_dict(hf, strict=False)
    missing = [m for m in missing if m.rsplit(".", 1)[-1] not in DERIVED]
    assert not missing and not unexpected, (missing, unexpected)


def layer_order_key(name):
    if name.startswith("model.embed_tokens"):
        return (-1, name)
    if name.startswith("model.layers."):
        return (int(name.split(".")[2]), name)
    return (10 ** 6, name)


def save_weights(real, folder, shards=1, dtype=torch.float32):
    """Writes model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json."""
    tensors = {k: v.to(dtype).contiguous() for k, v in real.items()}
    names = sorted(tensors, key=layer_order_key)
    if shards == 1:
        save_file({k: tensors[k] for k in names}, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        return ["model.safetensors"]
    # split by layer so that no layer straddles two files (the checkpoint's habit), sizes roughly even
    groups = {}
    for k in names:
        groups.setdefault(layer_order_key(k)[0], []).append(k)
    keys = sorted(groups)
    per = math.ceil(len(keys) / shards)
    files, weight_map, total = [], {}, 0
    for i in range(shards):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = [n for g in keys[i * per:(i + 1) * per] for n in groups[g]]
        save_file({k: tensors[k] for k in part}, os.path.join(folder, fname), metadata={"format": "pt"})
        for k in part:
            weight_map[k] = fname
            total += tensors[k].numel() * tensors[k].element_size()
        files.append(fname)
    write_json(os.path.join(folder, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return files


def read_weights(folder):
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as fh:
            files = sorted(set(json.load(fh)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for f in files:
        out.update(load_file(os.path.join(folder, f)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# independent float64 reference (formulas of shared/docs/minimax-m1.md), real weight names

def slope(h, H, l, L, variant):
    base = 2.0 ** (-8.0 * (h + 1) / H)
    if variant == "hf":      # transformers 5.17: 1 - l/(L-1+1e-5) + 1e-5
        return base * (1 - l / (L - 1 + 1e-5) + 1e-5)
    return base * (1 - l / (L - 1) + 1e-5)  # as written in minimax-m1.md


def _rms(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


@torch.no_grad()
def ref_forward(W, s, ids, slope_variant="hf"):
    """Returns (logits [n,V] float64, min router top-k gap in logit space)."""
    W = {k: v.to(torch.float64) for k, v in W.items()}
    n = len(ids)
    H, KV, D, L = s["heads"], s["kv_heads"], s["head_dim"], s["layers"]
    rd = s["rotary_dim"]
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    pos = torch.arange(n, dtype=torch.float64)
    t = torch.arange(n)
    causal = t[:, None] >= t[None, :]
    min_gap = float("inf")
    for l in range(L):
        p = f"model.layers.{l}."
        x1 = _rms(x, W[p + "input_layernorm.weight"], s["eps"])
        if s["layer_types"][l] == "linear_attention":
            qkv = F.silu(x1 @ W[p + "self_attn.qkv_proj.weight"].T).view(n, H, 3 * D)
            q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
            outs = []
            for h in range(H):
                lam = slope(h, H, l, L, slope_variant)
                dist = (t[:, None] - t[None, :]).to(torch.float64)
                decay = torch.where(causal, torch.exp(-lam * dist.clamp(min=0)), torch.zeros((), dtype=torch.float64))
                outs.append(((q[:, h] @ k[:, h].T) * decay) @ v[:, h])
            o = torch.stack(outs, dim=1).reshape(n, H * D)
            o = _rms(o, W[p + "self_attn.norm.weight"], 1e-6)
            o = torch.sigmoid(x1 @ W[p + "self_attn.output_gate.weight"].T) * o
            a = o @ W[p + "self_attn.out_proj.weight"].T
            alpha, beta = s["lin_alpha"], s["lin_beta"]
        else:
            q = (x1 @ W[p + "self_attn.q_proj.weight"].T).view(n, H, D)
            k = (x1 @ W[p + "self_attn.k_proj.weight"].T).view(n, KV, D)
            v = (x1 @ W[p + "self_attn.v_proj.weight"].T).view(n, KV, D)
            inv = 1.0 / (float(s["rope_theta"]) ** (torch.arange(0, rd, 2, dtype=torch.float64) / rd))
            ang = pos[:, None] * inv[None, :]
            cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
            sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]

            def rope(z):
                zr, zp = z[..., :rd], z[..., rd:]
                half = rd // 2
                rot = torch.cat([-zr[..., half:], zr[..., :half]], -1)
                return torch.cat([zr * cos + rot * sin, zp], -1)

            q, k = rope(q), rope(k)
            outs = []
            for h in range(H):
                g = h // (H // KV)
                sc = (q[:, h] @ k[:, g].T) / math.sqrt(D)
                sc = sc.masked_fill(~causal, float("-inf"))
                outs.append(torch.softmax(sc, -1) @ v[:, g])
            o = torch.stack(outs, dim=1).reshape(n, H * D)
            a = o @ W[p + "self_attn.o_proj.weight"].T
            alpha, beta = s["full_alpha"], s["full_beta"]
        h1 = alpha * x1 + beta * a
        x2 = _rms(h1, W[p + "post_attention_layernorm.weight"], s["eps"])
        rl = x2 @ W[p + "block_sparse_moe.gate.weight"].T
        srt = torch.sort(rl, dim=-1, descending=True).values
        min_gap = min(min_gap, float((srt[:, s["top_k"] - 1] - srt[:, s["top_k"]]).min()))
        probs = torch.softmax(rl, -1)
        topv, topi = torch.topk(probs, s["top_k"], dim=-1)
        topv = topv / topv.sum(-1, keepdim=True)
        y = torch.zeros_like(x2)
        for e in range(s["experts"]):
            pe = f"{p}block_sparse_moe.experts.{e}."
            wt = (topv * (topi == e)).sum(-1, keepdim=True)
            if not bool((wt != 0).any()):
                continue
            hid = F.silu(x2 @ W[pe + "w1.weight"].T) * (x2 @ W[pe + "w3.weight"].T)
            y = y + wt * (hid @ W[pe + "w2.weight"].T)
        x = s["mlp_alpha"] * x2 + s["mlp_beta"] * y
    x = _rms(x, W["model.norm.weight"], s["eps"])
    return x @ W["lm_head.weight"].T, min_gap


# ----------------------------------------------------------------------------------------------------------------
# expected.json

def probe_positions(n, block):
    cand = [0, 1, block - 1, block, block + 1, 2 * block - 1, 2 * block, 2 * block + 1, n - 1]
    return sorted({c for c in cand if 0 <= c < n})


@torch.no_grad()
def full_logits(model, ids):
    dev = next(model.parameters()).device
    return model(input_ids=torch.tensor([ids], device=dev), use_cache=False).logits[0].float().cpu()


@torch.no_grad()
def cached_decode(model, prompt, decode_ids, explicit_positions=True):
    dev = next(model.parameters()).device
    out = model(input_ids=torch.tensor([prompt], device=dev), use_cache=True)
    cache = out.past_key_values
    res = []
    for i, tok in enumerate(decode_ids):
        pos = len(prompt) + i
        kw = {}
        if explicit_positions:
            kw = dict(position_ids=torch.tensor([[pos]], device=dev), cache_position=torch.tensor([pos], device=dev))
        out = model(input_ids=torch.tensor([[tok]], device=dev), past_key_values=cache, use_cache=True, **kw)
        cache = out.past_key_values
        res.append(out.logits[0, -1].float().cpu())
    return torch.stack(res)


@torch.no_grad()
def greedy_nocache(model, prompt, steps):
    seq = list(prompt)
    gaps = []
    for _ in range(steps):
        lg = full_logits(model, seq)[-1]
        top = torch.topk(lg, 2).values
        gaps.append(float(top[0] - top[1]))
        seq.append(int(torch.argmax(lg)))
    return seq[len(prompt):], min(gaps)


def compute_expected(model, prompt, decode_ids, block, greedy_steps=12, log=print):
    full = full_logits(model, prompt)
    positions = probe_positions(len(prompt), block)
    dec = cached_decode(model, prompt, decode_ids, explicit_positions=True)
    ff = full_logits(model, prompt + decode_ids)[len(prompt):]
    diff = float((dec - ff).abs().max())
    log(f"  cached decode vs full forward: max abs diff {diff:.3e} (logit scale {float(ff.abs().max()):.2f})")
    greedy, gap = greedy_nocache(model, prompt, greedy_steps)
    log(f"  greedy (no cache): {greedy}  min top1-top2 gap {gap:.4f}")
    return {
        "prefill_full": full, "positions": positions, "decode": dec, "decode_full": ff, "decode_diff": diff,
        "greedy": greedy, "greedy_gap": gap,
    }


def _floats(arr):
    return "[" + ",".join(str(x) for x in np.asarray(arr, dtype=np.float32)) + "]"


def write_expected(path, case, description, weights_dtype, prompt, exp, decode_ids, use_cache_logits=True):
    dec = exp["decode"] if use_cache_logits else exp["decode_full"]
    parts = [
        '{"case":' + json.dumps(case),
        '"description":' + json.dumps(description),
        '"weights_dtype":' + json.dumps(weights_dtype),
        '"prompt_ids":' + json.dumps([int(i) for i in prompt]),
        '"prefill_logits":{' + ",\n".join(
            json.dumps(str(p)) + ":" + _floats(exp["prefill_full"][p].numpy()) for p in exp["positions"]) + "}",
        '"decode_ids":' + json.dumps([int(i) for i in decode_ids]),
        '"decode_logits":[' + ",\n".join(_floats(r.numpy()) for r in dec) + "]",
        '"greedy_ids":' + json.dumps([int(i) for i in exp["greedy"]]) + "}",
    ]
    text = ",\n".join(parts) + "\n"
    json.loads(text)  # validate
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
