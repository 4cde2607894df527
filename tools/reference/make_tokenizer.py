#!/usr/bin/env python3
"""Train the LightMesh test/demo tokenizer: a GPT-2 style byte-level BPE with MiniMax-M1's special tokens.

Vocabulary (2048 ids):
  0..3       special tokens <begin_of_document>, <beginning_of_sentence>, <end_of_sentence>, <end_of_document>
  4..2043    256 byte symbols + 1784 BPE merges learned on corpus.txt (see corpus.py)
  2044..2047 added (non-special) tokens <think>, </think>, <tool_calls>, </tool_calls>

Writes OUT/tokenizer.json, OUT/tokenizer_config.json and OUT/tokenizer_cases.json (encode/decode expectations).

Usage: python3 make_tokenizer.py --corpus DIR/corpus.txt --out OUT
"""
import argparse
import json
import os

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from corpus import load_docs

SPECIAL = ["<begin_of_document>", "<beginning_of_sentence>", "<end_of_sentence>", "<end_of_document>"]
ADDED = ["<think>", "</think>", "<tool_calls>", "</tool_calls>"]
VOCAB = 2048

# Chat template reconstructed from the format in shared/docs/minimax-m1.md (not copied from the release).
CHAT_TEMPLATE = (
    "{{ '<begin_of_document>' }}"
    "{%- set ns = namespace(start=0) -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ '<beginning_of_sentence>system ai_setting=assistant\\n' + messages[0]['content'] + '<end_of_sentence>\\n' }}"
    "{%- set ns.start = 1 -%}"
    "{%- endif -%}"
    "{%- if tools -%}"
    "{{ '<beginning_of_sentence>system tool_setting=tools\\nYou are provided with these tools:\\n<tools>\\n' }}"
    "{%- for tool in tools -%}{{ tool | tojson }}{{ '\\n' }}{%- endfor -%}"
    "{{ '</tools>\\n\\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide "
    "tool-name and json-object of arguments, following the format below:\\n<tool_calls>\\n"
    "{\\'name\\': <tool-name-1>, \\'arguments\\': <args-json-object-1>}\\n...\\n</tool_calls><end_of_sentence>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages[ns.start:] -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{ '<beginning_of_sentence>system ai_setting=assistant\\n' + message['content'] + '<end_of_sentence>\\n' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ '<beginning_of_sentence>user name=user\\n' + message['content'] + '<end_of_sentence>\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '<beginning_of_sentence>ai name=assistant\\n' + (message['content'] or '') + '<end_of_sentence>\\n' }}"
    "{%- elif message['role'] == 'tool' -%}"
    "{{ '<beginning_of_sentence>tool name=tools\\ntool name: ' + (message['name'] or '') + '\\ntool result: ' "
    "+ message['content'] + '\\n\\n<end_of_sentence>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<beginning_of_sentence>ai name=assistant\\n' }}{%- endif -%}"
)


def cases():
    mixed = ("The quick brown fox (1234) jumps over 5.5 lazy dogs; naïve café façade — «quoted» "
             "日本語のテキスト and עברית, emoji 🦊🐶 then code `x += 1` ... ")
    mixed300 = (mixed * 4)[:300]
    code = ("def f(xs, *, key=None): return {k: [v ** 2 for v in vs if v is not None] for k, vs in "
            "sorted(xs.items(), key=key or (lambda kv: (-len(kv[1]), kv[0])))}  # noqa: E501\t"
            "assert f({'a': [1, None, 3]}) == {'a': [1, 9]}, \"mismatch!=\" ; print(0x1F, 1e-9, a[::-1])")
    return [
        "",
        "Hello world",
        "The lightning attention layers keep a fixed-size state for every head.",
        " leading space",
        "trailing space ",
        "   three leading, two  inner,   three trailing   ",
        "tab\tseparated\tvalues\t",
        "line one\nline two\n\nparagraph\n",
        "windows\r\nline\r\nendings",
        "\n\n",
        " \n \t \n",
        "12345 3.14159",
        "2024-11-13 10:45:00 +0100 1,000,000",
        "don't we'll I'M they've she'd it's",
        "Wait!!! What?!?... (really) [yes] {no} <maybe> --- ***",
        "https://example.com/path?query=1&b=2#frag",
        "emoji 😀 👍🏽 family 👨\u200d👩\u200d👧\u200d👦 flags 🇫🇷🇯🇵",
        "中文测试：你好，世界！日本語とカタカナ、한국어",
        "مرحبا بالعالم",
        "cafe\u0301 e\u0301le\u0300ve na\u0308ive",
        "4-byte: 𝄞 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀",
        "<beginning_of_sentence>user name=user\nhi<end_of_sentence>",
        "<begin_of_document><beginning_of_sentence>system ai_setting=assistant\nYou are helpful.<end_of_sentence>\n"
        "<beginning_of_sentence>ai name=assistant\n",
        "<think>\nabc\n</think>\n",
        "<tool_calls>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_calls>",
        "text<end_of_document>after",
        "<think>not closed",
        "<notaspecial> <think >",
        mixed300,
        code,
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    docs = load_docs(args.corpus)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(ADDED),
        min_frequency=2,
        special_tokens=[AddedToken(s, special=True, normalized=False) for s in SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in ADDED])
    n = tok.get_vocab_size(with_added_tokens=True)
    assert n == VOCAB, n
    for i, s in enumerate(SPECIAL):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    for i, s in enumerate(ADDED):
        assert tok.token_to_id(s) == VOCAB - len(ADDED) + i, (s, tok.token_to_id(s))
    tok.save(os.path.join(args.out, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))  # reload: cases come from the saved file

    added_decoder = {}
    for s in SPECIAL + ADDED:
        added_decoder[str(tok.token_to_id(s))] = {
            "content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": s in SPECIAL}
    config = {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added_decoder,
        "bos_token": "<begin_of_document>",
        "eos_token": "<end_of_sentence>",
        "unk_token": "<end_of_document>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1000000,
        "tokenizer_class": "GPT2Tokenizer",
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(config, fh, ensure_ascii=False, indent=2)
        fh.write("\n")

    out = []
    for text in cases():
        ids = tok.encode(text).ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        out.append({"text": text, "ids": ids, "decoded": decoded})
        flag = "" if decoded == text else "   (decode differs from text)"
        print(f"case {text[:40]!r}: {len(ids)} ids{flag}")
    with open(os.path.join(args.out, "tokenizer_cases.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, ensure_ascii=False, indent=1)
        fh.write("\n")

    # cross-check with transformers' loader when present
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(args.out)
        bad = [c["text"] for c in out if hf.encode(c["text"], add_special_tokens=True) != c["ids"]]
        print("transformers AutoTokenizer:", type(hf).__name__, "vocab", len(hf), "mismatching cases:", bad)
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
        print("chat template:", repr(hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)))
    except Exception as e:  # noqa: BLE001
        print("transformers cross-check skipped:", type(e).__name__, e)
    sample = "Return the number of items in the container."
    enc = tok.encode(sample)
    print("sample:", enc.tokens)
    print(f"tokenizer: vocab {n}, merges learned on {len(docs)} documents")


if __name__ == "__main__":
    main()
