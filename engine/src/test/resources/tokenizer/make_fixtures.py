"""Writes the hand-built tokenizer.json variants used by TokenizerTest (python3 make_fixtures.py).

Each variant has a 256-token byte vocabulary (id = byte value, in GPT-2's byte-to-unicode alphabet), a few dozen
merges chosen so that rank order matters, and added tokens. With --hf (needs the `tokenizers` package), also
writes <variant>.cases.json: HF's ids for every text in TEXTS and HF's decoding of a few raw id sequences.
"""
import json, sys

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, [chr(c) for c in cs]))

B2U = bytes_to_unicode()
def bl(s): return "".join(B2U[b] for b in s.encode("utf-8"))

MERGES = [
    ("Ġ", "t"), ("h", "e"), ("l", "l"), ("Ġt", "he"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("o", "r"),
    ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"), ("a", "a"), (bl("你")[0], bl("你")[1]),
    (bl("你")[:2], bl("你")[2]), ("e", "l"), ("Ġ", "h"), ("Ġh", "el"), ("Ġhel", "l"), ("Ġhell", "o"),
    ("'", "s"), ("Ġ", "Ġ"), ("ĠĠ", "ĠĠ"), ("Ċ", "Ċ"), ("1", "2"), ("12", "3"), ("i", "n"), ("in", "g"),
    ("t", "h"), ("th", "ing"), ("Ġ", "s"), ("Ġs", "o"), ("Ġso", "me"), ("m", "e"),
    (bl("好")[0], bl("好")[1]), (bl("好")[:2], bl("好")[2]), (bl("😀")[:2], bl("😀")[2:]),
    (bl("😀")[0], bl("😀")[1]), (bl("😀")[2], bl("😀")[3]),
]

def vocab_and_merges(extra=()):
    vocab = {B2U[b]: b for b in range(256)}
    merges = []
    for a, b in MERGES:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
        merges.append((a, b))
    for t in extra:
        if t not in vocab:
            vocab[t] = len(vocab)
    return vocab, merges

def added(id_, content, special, lstrip=False, rstrip=False, single_word=False, normalized=None):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}

M1_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

def tokenizer(pre, normalizer=None, merges_as_arrays=False, ignore_merges=False, extra_vocab=(), added_tokens=None):
    vocab, merges = vocab_and_merges(extra_vocab)
    base = 1000
    if added_tokens is None:
        added_tokens = [added(base, "<begin_of_document>", True), added(base + 1, "<beginning_of_sentence>", True),
                        added(base + 2, "<end_of_sentence>", True), added(base + 3, "<end_of_document>", True),
                        added(base + 4, "<think>", False, normalized=False), added(base + 5, "</think>", False, normalized=False)]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                  "vocab": vocab,
                  "merges": [[a, b] for a, b in merges] if merges_as_arrays else [a + " " + b for a, b in merges]},
    }

def byte_level(add_prefix_space, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}

def split(pattern, behavior, invert=False, kind="Regex"):
    return {"type": "Split", "pattern": {kind: pattern}, "behavior": behavior, "invert": invert}

VARIANTS = {
    # The shape of MiniMax-M1's tokenizer.json: a Split with its own regex, then ByteLevel without regex.
    "m1like": tokenizer({"type": "Sequence", "pretokenizers": [split(M1_REGEX, "Isolated"), byte_level(False, False)]}),
    # GPT-2 shape plus the options M1 does not use: prefix space, NFC, array merges, ignore_merges, strip flags.
    "gpt2": tokenizer(byte_level(True, True), normalizer={"type": "NFC"}, merges_as_arrays=True, ignore_merges=True,
                      extra_vocab=["Ġxyz", "hello world"],
                      added_tokens=[added(1000, "<end_of_sentence>", True),
                                    added(1001, "[MASK]", True, lstrip=True, rstrip=True),
                                    added(1002, "cat", False, single_word=True),
                                    added(1003, "é!", False, normalized=True),
                                    added(1004, "<tool>", False, normalized=False),
                                    added(1005, "<tool_calls>", False, normalized=False)]),
    "merged_prev": tokenizer({"type": "Sequence", "pretokenizers": [split(" ", "MergedWithPrevious", kind="String"), byte_level(False, False)]}),
    "merged_next": tokenizer({"type": "Sequence", "pretokenizers": [split(r"\s+", "MergedWithNext"), byte_level(False, False)]}),
    "removed_invert": tokenizer({"type": "Sequence", "pretokenizers": [split(r"\p{L}+", "Removed", invert=True), byte_level(False, True)]}),
    "contiguous": tokenizer({"type": "Sequence", "pretokenizers": [split(r"\p{P}", "Contiguous"), byte_level(True, False)]}),
}

TEXTS = [
    "", "hello", " hello", "hello world", "the thing", " the  thing  ", "aaa", "aaaa aaaaa", "I'm here, it's OK. DON'T",
    "12345 1234567", "line1\nline2\n\n\nline3\r\n", "tabs\tand  \t spaces   ", "你好, 世界! 你你好好", "emoji 😀😀 👩‍👩‍👧 ok",
    "e\u0301 caf\u00e9 cafe\u0301!", "nbsp\u00a0here and\u3000ideo", "<end_of_sentence>", "a<end_of_sentence>b",
    "<beginning_of_sentence>user name=user\nhi<end_of_sentence>\n", "<think>\nreason\n</think>\nanswer",
    "x [MASK] y  [MASK]z", "cat concat cat_ cat. (cat)", "é! e\u0301! ", "<tool><tool_calls><tool_c", " xyz xyzw",
    "hello world hello  world", "so some something thing", "...!!!???", "  leading and trailing  ", "\n", " ",
    "mixed 123abc456 def", "CamelCaseWords and UPPER lower", "Ünïcödé ΑΒΓ αβγ кириллица", "<end_of_document><begin_of_document>",
]

DECODE_IDS = [
    [0xE4, 0xBD], [0xE4, 0xBD, 0xA0], [0xFF, 0x41], [0xE4, 0x41, 0xBD], [0xF0, 0x9F, 0x98], [0xED, 0xA0, 0x80],
    [0xC0, 0xAF], [0xF4, 0x90, 0x80, 0x80], [0x68, 0xE4, 0xBD, 0xA0, 0x21], [1000, 0x20, 1002],
]

def main():
    for name, tok in VARIANTS.items():
        with open(name + ".tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False, indent=1)
    if "--hf" in sys.argv:
        from tokenizers import Tokenizer
        for name in VARIANTS:
            t = Tokenizer.from_file(name + ".tokenizer.json")
            cases = [{"text": s, "ids": t.encode(s, add_special_tokens=False).ids} for s in TEXTS]
            for c in cases:
                c["decoded"] = t.decode(c["ids"], skip_special_tokens=False)
            decodes = [{"ids": ids, "decoded": t.decode(ids, skip_special_tokens=False),
                        "decoded_skip_special": t.decode(ids, skip_special_tokens=True)} for ids in DECODE_IDS]
            out = sys.argv[sys.argv.index("--hf") + 1] if len(sys.argv) > sys.argv.index("--hf") + 1 else "."
            with open(out + "/" + name + ".cases.json", "w", encoding="utf-8") as f:
                json.dump({"cases": cases, "decode": decodes}, f, ensure_ascii=False, indent=1)

if __name__ == "__main__":
    main()
