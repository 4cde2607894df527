#!/usr/bin/env python3
"""Deterministic English corpus extraction for the LightMesh tokenizer and demo model.

The corpus is built from text that ships with the Python installation of the machine that runs this script
(the GPU machine's image: Python 3.12, /opt/torch/.venv). Nothing is downloaded. Sources, in this fixed order:

  1. pydoc_data.topics  - the Python language reference topics (plain English prose).
  2. docstrings of the Python standard library (.py files under sysconfig's stdlib path, sorted, test suites,
     idlelib, turtledemo and site-packages excluded), parsed with `ast`, cleaned with inspect.cleandoc.
  3. /usr/share/common-licenses/* (sorted), if present.
  4. docstrings of a fixed list of installed packages (sorted files), until the size cap is reached.

Documents are filtered (>= 80 chars, mostly letters and spaces), de-duplicated exactly, and the total is capped at
--max-bytes. The same inputs give the same corpus byte for byte; the script prints the SHA-256 of corpus.txt so
runs can be compared.

Usage: python3 corpus.py --out DIR [--max-bytes N]   -> DIR/corpus.txt (documents separated by "\\n\\x1e\\n")
"""
import argparse
import ast
import hashlib
import inspect
import os
import sys
import sysconfig

DOC_SEP = "\n\x1e\n"  # record separator between documents (never inside one: stripped from the text)

EXCLUDE_DIRS = {"test", "tests", "idlelib", "turtledemo", "site-packages", "dist-packages", "__pycache__",
                "lib2to3", "ensurepip", "testing", "_vendor", "vendored", "_vendored", "data"}
EXTRA_PACKAGES = ["numpy", "scipy", "sympy", "networkx", "pandas", "sklearn", "matplotlib", "statsmodels",
                  "torch", "transformers"]


def good(text: str) -> bool:
    if len(text) < 80:
        return False
    letters = sum(1 for c in text if c.isalpha() or c == " ")
    return letters / len(text) >= 0.72


def clean(text: str) -> str:
    text = inspect.cleandoc(text).replace("\x1e", " ").replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()


def py_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDE_DIRS and not d.startswith("."))
        for f in filenames:
            if f.endswith(".py") and not f.startswith("test_"):
                out.append(os.path.join(dirpath, f))
    return sorted(out)


def docstrings(path):
    try:
        with open(path, "rb") as fh:
            src = fh.read()
        tree = ast.parse(src)
    except Exception:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node, clean=False)
            if d:
                out.append(d)
    return out


def iter_sources():
    """Yields (source_name, text) in a fixed order."""
    try:
        from pydoc_data.topics import topics
        for key in sorted(topics):
            yield ("pydoc_data.topics:" + key, topics[key])
    except Exception:
        pass
    stdlib = sysconfig.get_paths()["stdlib"]
    for path in py_files(stdlib):
        for d in docstrings(path):
            yield (os.path.relpath(path, stdlib), d)
    lic = "/usr/share/common-licenses"
    if os.path.isdir(lic):
        for f in sorted(os.listdir(lic)):
            p = os.path.join(lic, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "r", encoding="utf-8", errors="replace") as fh:
                    # split long licence texts into paragraphs-of-documents of moderate size
                    text = fh.read()
                yield ("licenses:" + f, text)
    import importlib.util
    for pkg in EXTRA_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = sorted(spec.submodule_search_locations)[0]
        for path in py_files(root):
            for d in docstrings(path):
                yield (pkg + ":" + os.path.relpath(path, root), d)


def build_corpus(max_bytes: int):
    seen = set()
    docs = []
    counts = {}
    total = 0
    for name, raw in iter_sources():
        text = clean(raw)
        if not good(text):
            continue
        h = hashlib.sha1(text.encode("utf-8")).digest()
        if h in seen:
            continue
        seen.add(h)
        n = len(text.encode("utf-8"))
        if total + n > max_bytes:
            break
        docs.append(text)
        total += n
        src = name.split(":")[0] if ":" in name else "stdlib"
        counts[src] = counts.get(src, 0) + 1
    return docs, counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-bytes", type=int, default=24_000_000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    docs, counts = build_corpus(args.max_bytes)
    data = DOC_SEP.join(docs).encode("utf-8")
    path = os.path.join(args.out, "corpus.txt")
    with open(path, "wb") as fh:
        fh.write(data)
    print(f"corpus: python {sys.version.split()[0]} stdlib={sysconfig.get_paths()['stdlib']}")
    print(f"corpus: {len(docs)} documents, {len(data)} bytes, sha256={hashlib.sha256(data).hexdigest()}")
    print("corpus: documents per source:", json_counts(counts))


def json_counts(counts):
    import json
    return json.dumps(dict(sorted(counts.items())))


def load_docs(path):
    with open(path, "r", encoding="utf-8") as fh:
        return fh.read().split(DOC_SEP)


if __name__ == "__main__":
    main()
