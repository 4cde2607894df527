"""Side-by-side table of one device call's EngineBench log and hf_peer_bench.py log: prefill tokens/s per prompt
length and decode tokens/s per batch, LightMesh against HF transformers bf16 eager, with the ratio.

    python3 tools/gpu/peer_summary.py ENGINEBENCH_LOG HF_PEER_LOG
"""
import re
import sys


def best(pattern, text):
    out = {}
    for m in re.finditer(pattern, text):
        k, v = int(m.group(1)), float(m.group(2))
        out[k] = max(out.get(k, 0.0), v)
    return out


def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 1000 else f"{v:,.1f}"


def main():
    engine = open(sys.argv[1]).read()
    hf = open(sys.argv[2]).read()
    rows = [("prefill", "tokens", best(r"bench: prefill (\d+) tokens: [\d.]+ s \(([\d.]+) tokens/s\)", engine),
             best(r"hf-peer: prefill (\d+) tokens: [\d.]+ s \(([\d.]+) tokens/s\)", hf)),
            ("decode", "batch", best(r"bench: decode batch (\d+): .*?\(([\d.]+) tokens/s", engine),
             best(r"hf-peer: decode batch (\d+): .*?\(([\d.]+) tokens/s", hf))]
    print("| case | LightMesh tokens/s | HF transformers bf16 eager tokens/s | LightMesh / HF |")
    print("|---|---:|---:|---:|")
    for what, unit, lm, ref in rows:
        for k in sorted(set(lm) | set(ref)):
            a, b = lm.get(k), ref.get(k)
            ratio = f"{a / b:.2f}x" if a and b else "-"
            fa, fb = fmt(a), fmt(b)
            print(f"| {what} {unit} {k} | {fa} | {fb} | {ratio} |")


if __name__ == "__main__":
    main()
