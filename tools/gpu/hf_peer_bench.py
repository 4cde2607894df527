"""The peer benchmark: Hugging Face transformers' MiniMaxForCausalLM in bf16, eager attention, on the GPU, on the same
model shape and lengths as EngineBench's 1.25B-parameter M1-shape run (hidden 2048, 16 layers with softmax attention
at every 8th, 16 x 128 heads, 4 kv heads, 8 experts top-2, intermediate 1024, vocab 32000, lightning block 256).
Weights are random (throughput does not depend on them); HF rotates all 128 dims of a head where the engine's
checkpoint rotates 64 (no difference in cost that matters).

Prints, per prompt length, prefill tokens/s (one forward of the whole prompt, logits of the last token only, as
EngineBench), and decode tokens/s at each batch size (greedy, KV/lightning cache, after a --decode-context prompt).
Times are wall clock around torch.cuda.synchronize(), the best of --repeat runs. With --json FILE also writes them.

    python3 tools/gpu/hf_peer_bench.py [--prompt-lengths 1024,4096] [--batches 1,8] [--decode-tokens 32]
"""
import argparse
import json
import time

import torch
import transformers
from transformers import MiniMaxConfig, MiniMaxForCausalLM


def config(a):
    layers = a.layers
    types = ["full_attention" if i % 8 == 7 else "linear_attention" for i in range(layers)]
    c = MiniMaxConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate, num_hidden_layers=layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
        num_local_experts=a.experts, num_experts_per_tok=a.top_k, layer_types=types, block_size=a.block,
        max_position_embeddings=max(a.prompt_lengths) + 1024,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=0, eos_token_id=2, pad_token_id=None, tie_word_embeddings=False)
    c._attn_implementation = "eager"
    return c


def sync():
    torch.cuda.synchronize()


@torch.no_grad()
def prefill(model, n, vocab, repeat):
    ids = torch.randint(0, vocab, (1, n), device="cuda")
    best = float("inf")
    for r in range(repeat + 1):  # the first run warms up
        sync()
        t0 = time.perf_counter()
        model(input_ids=ids, use_cache=False, logits_to_keep=1)
        sync()
        dt = time.perf_counter() - t0
        if r > 0:
            best = min(best, dt)
    return best


@torch.no_grad()
def decode(model, batch, context, steps, vocab):
    ids = torch.randint(0, vocab, (batch, context), device="cuda")
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(4):  # warm-up steps
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    sync()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prompt-lengths", default="1024,4096")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--decode-context", type=int, default=128)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--json")
    a = p.parse_args()
    a.prompt_lengths = [int(x) for x in a.prompt_lengths.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    torch.manual_seed(0)
    with torch.device("cuda"):  # initialise on the GPU: on the CPU, 1.25B parameters take about a minute
        model = MiniMaxForCausalLM(config(a)).to(dtype=torch.bfloat16).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"hf-peer: transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name()}, MiniMaxForCausalLM bf16 eager, {params / 1e6:.1f}M parameters, "
          f"attn {model.config._attn_implementation}", flush=True)
    res = {"transformers": transformers.__version__, "torch": torch.__version__, "parameters": params,
           "prefill": [], "decode": []}
    for n in a.prompt_lengths:
        s = prefill(model, n, a.vocab, a.repeat)
        print(f"hf-peer: prefill {n} tokens: {s:.3f} s ({n / s:.0f} tokens/s)", flush=True)
        res["prefill"].append({"tokens": n, "seconds": s, "tokens_per_s": n / s})
    for b in batches:
        s = decode(model, b, a.decode_context, a.decode_tokens, a.vocab)
        tps = b * a.decode_tokens / s
        print(f"hf-peer: decode batch {b}: {a.decode_tokens} steps in {s:.3f} s ({tps:.1f} tokens/s)", flush=True)
        res["decode"].append({"batch": b, "steps": a.decode_tokens, "seconds": s, "tokens_per_s": tps})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
