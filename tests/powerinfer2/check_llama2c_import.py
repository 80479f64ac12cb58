#!/usr/bin/env python3
"""Cross-checks `powerinfer2-cli import --llama2c` against outside references.

  check_llama2c_import.py --cli build/powerinfer2-cli/powerinfer2-cli \
      --checkpoint stories260K.bin --tokenizer tok512.bin [--greedy stories260K.greedy200.txt]

1. Imports the checkpoint into a temporary GGUF and runs check_gguf_reference.py on it: the
   reference reader (PyPI gguf) sees the same metadata and tensors as the CLI's reader.
2. Every tensor read by gguf.GGUFReader equals the checkpoint's floats, read here with numpy
   from the llama2.c layout (no permutation of Q/K).
3. `powerinfer2-cli tokenize` on the imported file gives the ids of llama2.c's own encode()
   (transcribed below from run.c, on the raw tokenizer file) for a few texts.
4. With --greedy: a plain numpy forward pass over the GGUF tensors with llama.cpp's
   semantics (normal, adjacent-pair RoPE on attn_q/attn_k as stored, RMSNorm eps and rope
   base from the metadata) generates greedily from BOS and reproduces the reference
   program's text byte for byte: evidence that the Q/K layout is the one llama.cpp expects.

Exit status 77 (CTest's skip code here) when numpy/gguf or an input file is missing.
"""

import argparse
import os
import struct
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import numpy as np
    import gguf
except ImportError:
    print("SKIPPED: python gguf package (and numpy) not installed (pip install gguf)")
    sys.exit(SKIP)

TEXTS = [
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily.",
    "Lily's mom said, \"Let's go to the park!\"\n",
    " two  spaces ",
    "",
    "caf\u00e9 \u2603 \U0001f600",
    "zzzzzzzz",
]


def read_checkpoint(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    floats = np.frombuffer(raw, dtype="<f4", offset=28)
    hs = dim // n_heads
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = floats[pos:pos + n].reshape(shape)
        pos += n
        return a

    w = {"token_embd.weight": take(vocab, dim)}
    arrays = [("attn_norm", (dim,)), ("attn_q", (n_heads * hs, dim)), ("attn_k", (n_kv * hs, dim)),
              ("attn_v", (n_kv * hs, dim)), ("attn_output", (dim, n_heads * hs)), ("ffn_norm", (dim,)),
              ("ffn_gate", (hidden, dim)), ("ffn_down", (dim, hidden)), ("ffn_up", (hidden, dim))]
    for name, shape in arrays:
        a = take(n_layers, *shape)
        for l in range(n_layers):
            w[f"blk.{l}.{name}.weight"] = a[l]
    w["output_norm.weight"] = take(dim)
    take(seq_len, hs // 2)  # freq_cis_real
    take(seq_len, hs // 2)  # freq_cis_imag
    if not shared:
        w["output.weight"] = take(vocab, dim)
    assert pos == len(floats), f"{len(floats) - pos} floats left over"
    return w


def read_llama2c_tokenizer(path):
    raw = open(path, "rb").read()
    pos = 4
    vocab, scores = [], []
    while pos < len(raw):
        score, n = struct.unpack_from("<fi", raw, pos)
        pos += 8
        vocab.append(raw[pos:pos + n])
        scores.append(score)
        pos += n
    return vocab, scores


def llama2c_encode(text, vocab, scores):
    """run.c's encode(text, bos=0, eos=0), on bytes."""
    lookup = {}
    for i, piece in enumerate(vocab):
        lookup.setdefault(piece, i)  # run.c's bsearch over sorted pieces; pieces are unique here
    text = text.encode("utf-8")
    tokens = []
    if text:
        tokens.append(lookup[b" "])  # add_dummy_prefix
    buf = b""
    for i, c in enumerate(text):
        if c & 0xC0 != 0x80:
            buf = b""
        buf += bytes([c])
        if i + 1 < len(text) and text[i + 1] & 0xC0 == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            tokens.append(lookup[buf])
        else:
            tokens.extend(b + 3 for b in buf)  # byte fallback: <0x00> is id 3
        buf = b""
    while True:
        best, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            merged = vocab[tokens[i]] + vocab[tokens[i + 1]]
            j = lookup.get(merged, -1)
            if j != -1 and scores[j] > best:
                best, best_id, best_idx = scores[j], j, i
        if best_idx == -1:
            return tokens
        tokens[best_idx:best_idx + 2] = [best_id]


def field_value(reader, key):
    f = reader.fields[key]
    return f.parts[f.data[0]].tolist()[0] if len(f.data) == 1 else None


def greedy_text(reader, steps):
    t = {x.name: np.asarray(x.data, dtype=np.float32) for x in reader.tensors}
    get = lambda k: field_value(reader, "llama." + k)
    n_layers, n_heads, n_kv = get("block_count"), get("attention.head_count"), get("attention.head_count_kv")
    dim, eps, base = get("embedding_length"), get("attention.layer_norm_rms_epsilon"), get("rope.freq_base")
    n_rot = get("rope.dimension_count")
    hs = dim // n_heads
    f = reader.fields["tokenizer.ggml.tokens"]
    pieces = [bytes(f.parts[i]) for i in f.data]
    f = reader.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    classifier = t.get("output.weight", t["token_embd.weight"])

    def rmsnorm(x, w):
        return x / np.sqrt(np.mean(x * x) + eps) * w

    def rope(x, pos):  # ggml_rope mode 0: rotates (x[2i], x[2i+1]) of each head
        x = x.reshape(-1, hs).copy()
        i = np.arange(n_rot // 2)
        theta = pos * base ** (-2.0 * i / n_rot)
        c, s = np.cos(theta), np.sin(theta)
        x0, x1 = x[:, 0:n_rot:2].copy(), x[:, 1:n_rot:2].copy()
        x[:, 0:n_rot:2] = x0 * c - x1 * s
        x[:, 1:n_rot:2] = x0 * s + x1 * c
        return x.reshape(-1)

    keys = [[] for _ in range(n_layers)]
    values = [[] for _ in range(n_layers)]
    token, out, margin = 1, b"", np.inf
    for pos in range(steps):
        x = t["token_embd.weight"][token].astype(np.float64)
        for l in range(n_layers):
            p = f"blk.{l}."
            xb = rmsnorm(x, t[p + "attn_norm.weight"])
            q = rope(t[p + "attn_q.weight"] @ xb, pos)
            keys[l].append(rope(t[p + "attn_k.weight"] @ xb, pos).reshape(n_kv, hs))
            values[l].append((t[p + "attn_v.weight"] @ xb).reshape(n_kv, hs))
            K, V = np.stack(keys[l]), np.stack(values[l])  # [pos + 1, n_kv, hs]
            att = np.empty(dim)
            for h in range(n_heads):
                kv = h // (n_heads // n_kv)
                s = K[:, kv, :] @ q[h * hs:(h + 1) * hs] / np.sqrt(hs)
                s = np.exp(s - s.max())
                att[h * hs:(h + 1) * hs] = (s / s.sum()) @ V[:, kv, :]
            x = x + t[p + "attn_output.weight"] @ att
            xb = rmsnorm(x, t[p + "ffn_norm.weight"])
            g = t[p + "ffn_gate.weight"] @ xb
            x = x + t[p + "ffn_down.weight"] @ (g / (1 + np.exp(-g)) * (t[p + "ffn_up.weight"] @ xb))
        logits = classifier @ rmsnorm(x, t["output_norm.weight"])
        top2 = np.sort(logits)[-2:]
        margin = min(margin, top2[1] - top2[0])
        nxt = int(np.argmax(logits))
        if nxt == 1:
            break
        if types[nxt] == 6:
            piece = bytes([int(pieces[nxt][3:5], 16)])
        elif types[nxt] in (2, 3, 5):
            piece = b""
        else:
            piece = pieces[nxt].replace("\u2581".encode(), b" ")
            if token == 1 and piece.startswith(b" "):
                piece = piece[1:]
        out += piece
        token = nxt
    return out, margin


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--greedy", help="the reference program's greedy output from BOS")
    args = p.parse_args()
    for path in [args.checkpoint, args.tokenizer] + ([args.greedy] if args.greedy else []):
        if not os.path.exists(path):
            print(f"SKIPPED: {path} does not exist")
            return SKIP

    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.gguf")
        run = subprocess.run([args.cli, "import", "--llama2c", args.checkpoint, "--tokenizer", args.tokenizer,
                              "-o", out], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"import failed ({run.returncode}): {run.stderr.strip()}")
            return 1

        # 1. The reference reader against the CLI's reader.
        check = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_gguf_reference.py")
        run = subprocess.run([sys.executable, check, "--cli", args.cli, out], capture_output=True, text=True)
        print(run.stdout.strip())
        if run.returncode != 0:
            failures.append("check_gguf_reference.py failed")

        # 2. Tensor data.
        reader = gguf.GGUFReader(out)
        expected = read_checkpoint(args.checkpoint)
        got = {t.name: t for t in reader.tensors}
        if set(got) != set(expected):
            failures.append(f"tensor names differ: only in GGUF {sorted(set(got) - set(expected))}, "
                            f"missing {sorted(set(expected) - set(got))}")
        for name, want in expected.items():
            t = got.get(name)
            if t is None:
                continue
            if t.tensor_type != gguf.GGMLQuantizationType.F32:
                failures.append(f"{name}: type {t.tensor_type.name}, expected F32")
            if [int(d) for d in t.shape] != list(reversed(want.shape)):
                failures.append(f"{name}: GGUF shape {list(t.shape)}, expected {list(reversed(want.shape))}")
            elif not np.array_equal(np.asarray(t.data).reshape(want.shape), want):
                failures.append(f"{name}: data differs from the checkpoint")
        print(f"tensors: {len(expected)} checked against the checkpoint")

        # 3. Tokenization against llama2.c's encode().
        vocab, scores = read_llama2c_tokenizer(args.tokenizer)
        for text in TEXTS:
            want = llama2c_encode(text, vocab, scores)
            run = subprocess.run([args.cli, "tokenize", "-m", out, "-p", text], capture_output=True, text=True)
            have = [int(x) for x in run.stdout.split()]
            if run.returncode != 0 or have != want:
                failures.append(f"tokenize {text!r}: CLI {have} (exit {run.returncode}), llama2.c {want}")
        print(f"tokenize: {len(TEXTS)} texts agree with llama2.c's encode()")

        # 4. Greedy generation with llama.cpp's RoPE on the stored Q/K.
        if args.greedy:
            reference = open(args.greedy, "rb").read()
            text, margin = greedy_text(reader, 200)
            text += b"\n"  # the reference program's newline after the text
            if text != reference:
                n = next((i for i, (a, b) in enumerate(zip(text, reference)) if a != b),
                         min(len(text), len(reference)))
                failures.append(f"greedy text differs from {args.greedy} at byte {n}: "
                                f"{text[n:n + 40]!r} vs {reference[n:n + 40]!r}")
            else:
                print(f"greedy: 200 tokens reproduce {os.path.basename(args.greedy)} "
                      f"(smallest top-2 logit margin {margin:.3g})")

    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
