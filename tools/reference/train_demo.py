#!/usr/bin/env python3
"""Train the LightMesh demo model: a small MiniMax-M1-shaped model, with transformers 5.17's MiniMax as the
implementation, on the English corpus of corpus.py mixed with the chats of chats.py (rendered by the engine's
ChatTemplate: see ChatCorpusRenderer), with the tokenizer of make_tokenizer.py.

Batches mix the two sources: --chat-fraction of the rows are chat windows (each starting at a chat), the rest
random windows of the documents. Chat rows are scored with the renderer's mask: assistant turns written as a
client sends them back (before the last turn) are left out of the loss.

Writes OUT/: config.json (original minimax_m1 dialect), model.safetensors (BF16, released checkpoint names),
tokenizer.json, tokenizer_config.json, expected.json (fixture format, fp32 math on the bf16-rounded weights,
CPU), README.md.

Usage: python3 train_demo.py --corpus DIR/corpus.txt --tokenizer TOKDIR --out OUT [--chats rendered.jsonl[.gz]]
                              [--chat-fraction 0.6] [--seconds 300] [--steps N]
"""
import gzip
import argparse
import json
import math
import os
import shutil
import time

import numpy as np
import torch
from tokenizers import Tokenizer

import mmref
from corpus import load_docs

LAYERS = 8
SPEC = dict(vocab=2048, hidden=256, inter=48, layers=LAYERS, heads=8, kv_heads=2, head_dim=32, rotary_dim=16,
            rope_theta=10000, block_size=256, eps=1e-5, experts=8, top_k=2,
            layer_types=["full_attention" if i % 8 == 7 else "linear_attention" for i in range(LAYERS)],
            lin_alpha=(2 * LAYERS) ** 0.25, lin_beta=1.0, full_alpha=(2 * LAYERS) ** 0.25, full_beta=1.0,
            mlp_alpha=(2 * LAYERS) ** 0.25, mlp_beta=1.0, max_pos=10240000)
BOD = 0  # <begin_of_document>


def log(*a):
    print(*a, flush=True)


def tokenize(docs, tok):
    ids = []
    for i in range(0, len(docs), 4096):
        for enc in tok.encode_batch(docs[i:i + 4096]):
            ids.append(BOD)
            ids.extend(enc.ids)
    return np.asarray(ids, dtype=np.int64)


def load_chats(path, tok):
    """Rendered chats -> (train, held out), each (ids, weights, starts): one token stream, a 0/1 loss weight per
    token (0 where the token lies in a masked span), and where each chat starts. Every 100th chat is held out."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    parts = {True: ([], [], []), False: ([], [], [])}
    texts = [r["text"] for r in rows]
    for r in rows:
        if not r["text"].isascii():
            raise ValueError(f"chat {r['chat']} is not ASCII: mask offsets would not be char offsets")
    for i in range(0, len(rows), 4096):
        for r, enc in zip(rows[i:i + 4096], tok.encode_batch(texts[i:i + 4096])):
            ids, w, starts = parts[r["chat"] % 100 == 0]
            starts.append(len(ids))
            ids.extend(enc.ids)
            first = np.fromiter((a for a, _b in enc.offsets), dtype=np.int64, count=len(enc.ids))
            keep = np.ones(len(enc.ids), dtype=np.float32)
            for s, e in r["mask"]:
                keep[(first >= s) & (first < e)] = 0
            w.append(keep)
    out = []
    for held in (False, True):
        ids, w, starts = parts[held]
        out.append((np.asarray(ids, dtype=np.int64), np.concatenate(w) if w else np.zeros(0, np.float32),
                    np.asarray(starts, dtype=np.int64)))
    return out


def chat_rows(chats, n, seq, gen):
    """n windows of seq+1 tokens, each starting at a chat, with their loss weights (of the predicted tokens)."""
    ids, w, starts = chats
    ok = starts[starts < len(ids) - seq - 1]
    pick = ok[torch.randint(0, len(ok), (n,), generator=gen).numpy()]
    x = torch.stack([torch.from_numpy(ids[o:o + seq + 1]) for o in pick.tolist()])
    m = torch.stack([torch.from_numpy(w[o + 1:o + seq + 1]) for o in pick.tolist()])
    return x, m


@torch.no_grad()
def sample_chat(model, tok, text, n_new):
    """Greedy continuation of a rendered chat cut after its last assistant header, until <end_of_sentence>."""
    dev = next(model.parameters()).device
    head = "<beginning_of_sentence>ai name=assistant\n"
    prompt = text[:text.rindex(head) + len(head)]
    ids = tok.encode(prompt).ids
    n0 = len(ids)
    for _ in range(n_new):
        nxt = int(torch.argmax(model(input_ids=torch.tensor([ids], device=dev), use_cache=False).logits[0, -1]))
        ids.append(nxt)
        if nxt == 2:
            break
    return prompt[prompt.rindex("user name=user"):], tok.decode(ids[n0:], skip_special_tokens=False)


@torch.no_grad()
def evaluate_chats(model, chats, seq, batch, n_batches, gen):
    dev = next(model.parameters()).device
    tot, cnt = 0.0, 0.0
    for _ in range(n_batches):
        x, m = chat_rows(chats, batch, seq, gen)
        x, m = x.to(dev), m.to(dev)
        lg = model(input_ids=x[:, :-1], use_cache=False).logits.float()
        ce = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
        tot += float((ce * m.reshape(-1)).sum())
        cnt += float(m.sum())
    return tot / max(cnt, 1.0)


@torch.no_grad()
def sample(model, tok, prompt, n_new, temperature, top_k, gen):
    dev = next(model.parameters()).device
    ids = [BOD] + tok.encode(prompt).ids
    for _ in range(n_new):
        lg = model(input_ids=torch.tensor([ids], device=dev), use_cache=False).logits[0, -1].float()
        if temperature <= 0:
            nxt = int(torch.argmax(lg))
        else:
            v, ix = torch.topk(lg / temperature, top_k)
            nxt = int(ix[int(torch.multinomial(torch.softmax(v, -1).cpu(), 1, generator=gen))])
        ids.append(nxt)
        if nxt == 2:
            break
    return tok.decode(ids[1:], skip_special_tokens=False)


@torch.no_grad()
def evaluate(model, data, seq, batch, n_batches, gen):
    dev = next(model.parameters()).device
    losses = []
    for _ in range(n_batches):
        off = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        x = torch.stack([torch.from_numpy(data[o:o + seq + 1]) for o in off.tolist()]).to(dev)
        out = model(input_ids=x[:, :-1], use_cache=False)
        lg = out.logits.float()
        losses.append(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1)).item())
    return sum(losses) / len(losses)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--steps", type=int, default=0, help="0: measure the speed over steps 10..40 and fix "
                    "the step count so that training fits in --seconds")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--chats", default="", help="rendered chats (ChatCorpusRenderer's JSON lines, .gz allowed)")
    ap.add_argument("--chat-fraction", type=float, default=0.6, help="share of each batch's rows that are chats")
    args = ap.parse_args()
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    tok = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    docs = load_docs(args.corpus)
    # every 100th document is held out (the corpus is ordered by source, so a tail split would be one package)
    train = tokenize([d for i, d in enumerate(docs) if i % 100 != 0], tok)
    val = tokenize([d for i, d in enumerate(docs) if i % 100 == 0], tok)
    data = np.concatenate([train, val])
    log(f"demo: {len(docs)} documents -> {len(data)} tokens ({len(train)} train, {len(val)} held out) "
        f"in {time.time() - t_start:.1f}s")
    chat_train = chat_val = None
    n_chat = 0
    if args.chats:
        chat_train, chat_val = load_chats(args.chats, tok)
        n_chat = int(round(args.batch * args.chat_fraction))
        log(f"demo: chats {len(chat_train[2])} train ({len(chat_train[0])} tokens, {int(chat_train[1].sum())} scored), "
            f"{len(chat_val[2])} held out ({len(chat_val[0])} tokens); {n_chat} of {args.batch} rows a batch are chats "
            f"({time.time() - t_start:.1f}s)")

    spec = SPEC
    mmref.use_partial_rotary_patch(True)
    cfg = mmref.hf_config(spec, initializer_range=0.02)
    cfg.output_router_logits = True
    cfg.router_aux_loss_coef = 0.01
    if dev == "cuda":   # HF's default experts path is grouped_mm; make sure it runs in fp32 with autograd here
        try:
            w = torch.randn(2, 8, 16, device=dev, requires_grad=True)
            xx = torch.randn(6, 8, device=dev, requires_grad=True)
            torch.nn.functional.grouped_mm(xx, w, offs=torch.tensor([3, 6], device=dev, dtype=torch.int32)).sum().backward()
        except Exception as e:  # noqa: BLE001
            log(f"demo: grouped_mm unusable ({type(e).__name__}: {e}); experts_implementation=eager")
            cfg._experts_implementation = "eager"
    model = mmref.MiniMaxForCausalLM(cfg)
    mmref.init_model(model, args.seed, std=0.02, norm_std=0.0)
    mmref.set_rotary(model, spec)
    model = model.to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"demo: {n_params} parameters ({n_params * 2 / 1e6:.2f} MB in bf16), device {dev}")

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or n.endswith("norm.weight") else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)
    warm = 200

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        pr = min(1.0, (step - warm) / max(1, args.steps - warm))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * pr)))

    t0 = time.time()
    step, ema, ema_doc, ema_chat = 0, None, None, None
    history = []
    auto = args.steps <= 0
    if auto:
        args.steps = 10 ** 9
    while step < args.steps:
        if auto and step == 10:
            t10 = time.time()
        if auto and step == 40:
            rate = 30 / (time.time() - t10)
            args.steps = 40 + int(rate * 0.97 * (args.seconds - (time.time() - t0)))
            log(f"demo: {rate:.2f} steps/s -> step count fixed at {args.steps}")
        if time.time() - t0 > args.seconds * 1.15:
            log(f"demo: time budget exceeded at step {step}, stopping")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        off = torch.randint(0, len(train) - args.seq - 1, (args.batch - n_chat,), generator=gen)
        x = torch.stack([torch.from_numpy(train[o:o + args.seq + 1]) for o in off.tolist()])
        m = torch.ones(x.shape[0], args.seq)
        if n_chat:
            cx, cm = chat_rows(chat_train, n_chat, args.seq, gen)
            x, m = torch.cat([x, cx]), torch.cat([m, cm])
        x, m = x.to(dev), m.to(dev).reshape(-1)
        out = model(input_ids=x[:, :-1], use_cache=False)
        lg = out.logits.float()
        ce_tok = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
        ce = (ce_tok * m).sum() / m.sum()
        loss = ce + (cfg.router_aux_loss_coef * out.aux_loss if out.aux_loss is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        cev = ce.item()
        ema = cev if ema is None else 0.98 * ema + 0.02 * cev
        if n_chat:
            with torch.no_grad():
                per = ce_tok.detach().reshape(args.batch, args.seq)
                mm = m.reshape(args.batch, args.seq)
                d = float(per[:args.batch - n_chat].mean())
                c = float((per[args.batch - n_chat:] * mm[args.batch - n_chat:]).sum() / mm[args.batch - n_chat:].sum())
            ema_doc = d if ema_doc is None else 0.98 * ema_doc + 0.02 * d
            ema_chat = c if ema_chat is None else 0.98 * ema_chat + 0.02 * c
        step += 1
        if step % 100 == 0 or step == 1:
            el = time.time() - t0
            log(f"step {step} loss {cev:.3f} (ema {ema:.3f}"
                + (f", docs {ema_doc:.3f}, chats {ema_chat:.3f}" if n_chat else "") + f") lr {lr_at(step):.2e} {el:.0f}s "
                f"{step * args.batch * args.seq / el / 1e3:.0f}k tok/s")
            history.append((step, round(ema, 4)) + ((round(ema_doc, 4), round(ema_chat, 4)) if n_chat else ()))
    train_time = time.time() - t0
    model.eval()
    # bf16-rounded weights from here on: what is saved is what is evaluated
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    egen = torch.Generator().manual_seed(99)
    val_loss = evaluate(model, val, args.seq, 16, 8, egen)
    chat_val_loss = evaluate_chats(model, chat_val, args.seq, 16, 8, egen) if chat_val is not None else None
    log(f"demo: trained {step} steps in {train_time:.0f}s, train loss (ema) {ema:.3f}, held-out loss (bf16 weights) "
        f"{val_loss:.3f} (ppl {math.exp(val_loss):.1f})"
        + (f", held-out chat loss (scored tokens) {chat_val_loss:.3f}" if chat_val_loss is not None else ""))

    # ---- write the model folder first: whatever fails later, the model is there
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    real = mmref.hf_to_real(sd, spec)
    mmref.write_json(os.path.join(args.out, "config.json"), mmref.m1_config_dict(spec, "bfloat16", 0.02))
    mmref.save_weights(real, args.out, shards=1, dtype=torch.bfloat16)
    shutil.copy(os.path.join(args.tokenizer, "tokenizer.json"), args.out)
    shutil.copy(os.path.join(args.tokenizer, "tokenizer_config.json"), args.out)
    info = {"steps": step, "train_seconds": round(train_time), "batch": args.batch, "seq": args.seq,
            "chat_rows_per_batch": n_chat, "tokens_seen": step * args.batch * args.seq, "corpus_tokens": int(len(data)),
            "chat_tokens": int(len(chat_train[0]) + len(chat_val[0])) if chat_train is not None else 0,
            "train_loss_ema": round(ema, 4), "train_doc_loss_ema": round(ema_doc, 4) if ema_doc else None,
            "train_chat_loss_ema": round(ema_chat, 4) if ema_chat else None, "heldout_loss": round(val_loss, 4),
            "heldout_chat_loss": round(chat_val_loss, 4) if chat_val_loss is not None else None, "params": n_params,
            "lr": args.lr, "seed": args.seed, "history": history,
            "torch": torch.__version__, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
    mmref.write_json(os.path.join(args.out, "train_info.json"), info)
    log(f"demo: model written to {args.out} ({time.time() - t_start:.0f}s)")

    # ---- expected.json (CPU, fp32, bf16-rounded weights, patched partial rotary)
    try:
        back = mmref.read_weights(args.out)
        ref_model = mmref.MiniMaxForCausalLM(mmref.hf_config(spec, 0.02)).float().eval()
        mmref.set_rotary(ref_model, spec)
        mmref.load_real_into(ref_model, back, spec)
        text_ids = val[:400].tolist()
        prompt = text_ids[:300]
        decode_ids = text_ids[300:306]
        with torch.no_grad():
            exp = mmref.compute_expected(ref_model, prompt, decode_ids, spec["block_size"], log=log)
            ref1, gap1 = mmref.ref_forward(back, spec, prompt + decode_ids)
        d_ref = float((ref1[:len(prompt)] - exp["prefill_full"].double()).abs().max())
        log(f"demo expected: float64 reference max|diff| {d_ref:.3e}, min router gap {gap1:.2e}, "
            f"greedy gap {exp['greedy_gap']:.2e}")
        desc = (f"Demo model (models/demo): trained {step} steps, bf16 weights; prompt = 300 held-out corpus tokens, "
                f"decode_ids = the next 6. HF cached decode vs full forward max|diff| {exp['decode_diff']:.1e}; "
                f"HF vs float64 reference max|diff| {d_ref:.1e}; min router logit gap {gap1:.1e}.")
        mmref.write_expected(os.path.join(args.out, "expected.json"), "demo", desc, "bf16", prompt, exp, decode_ids)
        log("demo prompt text:", repr(tok.decode(prompt)[-200:]), "| greedy:", repr(tok.decode(exp["greedy"])))
        info.update({"expected_ref_diff": d_ref, "expected_min_router_gap": gap1, "expected_greedy_gap": exp["greedy_gap"]})
    except Exception as e:  # noqa: BLE001
        log(f"demo: expected.json FAILED: {type(e).__name__}: {e}")

    # ---- samples (GPU when there is one)
    try:
        prompts = ["The", "Return the number of", "This function", "If the file does not exist,",
                   "The following example shows how to", "Parameters\n----------\n"]
        sgen = torch.Generator().manual_seed(7)
        samples = []
        for p in prompts:
            g = sample(model, tok, p, 60, 0.0, 0, sgen)
            s = sample(model, tok, p, 60, 0.8, 40, sgen)
            samples.append((p, g, s))
            log(f"--- prompt {p!r}\n[greedy] {g!r}\n[t=0.8,k=40] {s!r}")
        info["samples"] = samples
        if args.chats:
            opener = gzip.open if args.chats.endswith(".gz") else open
            with opener(args.chats, "rt", encoding="utf-8") as fh:
                held = [json.loads(line)["text"] for line in fh if line.strip() and json.loads(line)["chat"] % 100 == 0]
            chat_samples = []
            for text in held[:8]:
                q, a = sample_chat(model, tok, text, 96)
                chat_samples.append((q, a))
                log(f"--- chat {q!r}\n[greedy] {a!r}")
            info["chat_samples"] = chat_samples
    except Exception as e:  # noqa: BLE001
        log(f"demo: samples FAILED: {type(e).__name__}: {e}")
    mmref.write_json(os.path.join(args.out, "train_info.json"), info)
    log(f"demo: done in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
