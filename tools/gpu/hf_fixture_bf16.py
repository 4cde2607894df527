"""Hugging Face transformers' own bf16 run of the engine's reference fixtures: how far HF in bf16 lands from the
fixtures' fp32 logits, in the engine tests' measure (max |logit - reference| / max |reference| per row; the largest
over the prefill rows, and over the cached decode steps), and how many greedy tokens it reproduces. This is the bound
that the tensor-core path (bf16 activations in the products) is held to in BackendFixturesTest.

Each fixture is loaded into MiniMaxForCausalLM through tools/reference/mmref.py (both config dialects, the partial
rotary patch where the case has one), cast to bf16 (weights and activations, as from_pretrained(dtype=bfloat16)
gives; RoPE frequencies stay fp32), eager attention, on the GPU when there is one.

    python3 tools/gpu/hf_fixture_bf16.py [--reference DIR_WITH_mmref.py] [--fixtures engine/src/test/resources/fixtures]
"""
import argparse
import json
import os
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reference", default="tools/reference")
    p.add_argument("--fixtures", default="engine/src/test/resources/fixtures")
    p.add_argument("--demo", default="models/demo")
    p.add_argument("--json")
    a = p.parse_args()
    sys.path.insert(0, a.reference)
    import torch
    import mmref
    from make_fixtures import CASES

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    cases = [(name, case["spec"], os.path.join(a.fixtures, name)) for name, case in CASES.items()]
    try:
        from train_demo import SPEC as DEMO_SPEC
        cases.append(("demo", DEMO_SPEC, a.demo))
    except Exception as e:  # noqa: BLE001
        print(f"hf-bf16: demo skipped: {type(e).__name__}: {e}")
    for name, spec, folder in cases:
        exp_path = os.path.join(folder, "expected.json")
        if not os.path.exists(exp_path):
            print(f"hf-bf16: {name}: no expected.json, skipped")
            continue
        with open(exp_path) as f:
            exp = json.load(f)
        mmref.use_partial_rotary_patch(spec["rotary_dim"] != spec["head_dim"])
        model = mmref.build_hf(spec, 0)
        mmref.load_real_into(model, mmref.read_weights(folder), spec)
        model.config._attn_implementation = "eager"
        model = model.to(device=dev, dtype=torch.bfloat16).eval()
        mmref.set_rotary(model, spec)  # fp32 inverse frequencies, as HF keeps them
        prompt = exp["prompt_ids"]
        full = mmref.full_logits(model, prompt)
        worst_prefill = 0.0
        for pos, ref in exp["prefill_logits"].items():
            ref = torch.tensor(ref)
            worst_prefill = max(worst_prefill, float((full[int(pos)] - ref).abs().max() / ref.abs().max()))
        dec = mmref.cached_decode(model, prompt, exp["decode_ids"])
        worst_decode = 0.0
        for i, ref in enumerate(exp["decode_logits"]):
            ref = torch.tensor(ref)
            worst_decode = max(worst_decode, float((dec[i] - ref).abs().max() / ref.abs().max()))
        greedy, _ = mmref.greedy_nocache(model, prompt, len(exp["greedy_ids"]))
        same = sum(1 for x, y in zip(greedy, exp["greedy_ids"]) if x == y)
        first_diff = next((i for i, (x, y) in enumerate(zip(greedy, exp["greedy_ids"])) if x != y), None)
        print(f"hf-bf16: {name}: prefill rows max rel err {worst_prefill:.3e}, decode steps {worst_decode:.3e}, "
              f"greedy {same}/{len(greedy)} equal (first difference at {first_diff})", flush=True)
        out[name] = {"prefill": worst_prefill, "decode": worst_decode, "greedy_equal": same,
                     "greedy_first_diff": first_diff}
        mmref.use_partial_rotary_patch(False)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
