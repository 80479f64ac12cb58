#!/usr/bin/env python3
"""Checks `powerinfer2-cli quantize` against PyPI gguf's numpy quantizer (gguf.quants,
bit-exact with ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref).

Writes a small GGUF with gguf.GGUFWriter (fixed pseudo-random F32 and F16 matrices, with
blocks made to hit the quantizers' edge cases: all zeros, exact rounding ties, a negative
extreme, equal extremes of both signs, tiny and huge scales), quantizes it with the CLI to
Q8_0 and to Q4_0, opens the outputs with gguf.GGUFReader and compares every quantized
tensor's bytes with gguf.quants.quantize of the same input; the other tensors must be
unchanged and general.file_type must be llama.cpp's (Q8_0 = 7, Q4_0 = 2).

  check_quants_reference.py --cli build/powerinfer2-cli/powerinfer2-cli

Exit status 77 (CTest's skip code here) when numpy or gguf (with gguf.quants) is missing.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import warnings

SKIP = 77

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as QT
    from gguf.quants import quantize
except ImportError as e:
    print(f"SKIPPED: python gguf package with gguf.quants not installed ({e})")
    sys.exit(SKIP)

FILE_TYPES = {"q8_0": (QT.Q8_0, 7), "q4_0": (QT.Q4_0, 2)}


def edge_blocks():
    """Blocks of 32 that exercise the rounding rules."""
    b = []
    b.append(np.zeros(32))                                   # d = 0 (Q4_0: d = -0)
    t = np.array([(k % 16) * (1 if k % 2 else -1) + 0.5 for k in range(32)])
    t[31] = 127.0                                            # Q8_0 id = 1: exact .5 ties
    b.append(t)
    b.append(np.linspace(-3.0, 1.0, 32))                     # negative extreme first
    e = np.linspace(-1.0, 1.0, 32)
    e[3], e[20] = 2.5, -2.5                                  # equal magnitudes: the first wins
    b.append(e)
    b.append(np.arange(32) * 1e-7)                           # d in fp16 subnormals
    b.append(np.arange(32) * 1e-9)                           # d underflows to 0 in fp16
    b.append(np.arange(-16, 16) * 3000.0)                    # large but finite d
    b.append(np.array([8.0 * k / 7.5 for k in range(-16, 16)]))  # x/d + 8.5 lands on integers
    return np.stack(b).astype(np.float32)


def test_tensors():
    rng = np.random.default_rng(20240607)
    scales = np.exp2(rng.uniform(-8, 4, size=(24, 8, 1)))
    a = (rng.standard_normal((24, 8, 32)) * scales).astype(np.float32).reshape(24, 256)
    a[3, :] = edge_blocks().reshape(-1)
    a[5, 64:96] = 0.0
    h = (rng.standard_normal((16, 96)) * 0.05).astype(np.float16)
    return {
        "blk.0.ffn_up.weight": a,                                        # F32 [24, 256]
        "blk.0.attn_q.weight": h,                                        # F16 [16, 96]
        "blk.0.attn_norm.weight": rng.standard_normal(256).astype(np.float32),  # 1-D: kept
        "blk.0.ffn_down.weight": rng.standard_normal((8, 172)).astype(np.float32),  # 172: kept
    }


def write_input(path, tensors):
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("quantize reference check")
    w.add_file_type(0)
    for name, data in tensors.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def check(cli, tmp, kind):
    qtype, ftype = FILE_TYPES[kind]
    src = os.path.join(tmp, "in.gguf")
    out = os.path.join(tmp, f"out-{kind}.gguf")
    tensors = test_tensors()
    write_input(src, tensors)
    run = subprocess.run([cli, "quantize", src, out, kind, "-t", "2"], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"{kind}: powerinfer2-cli quantize failed ({run.returncode}): {run.stderr.strip()}")
        return False
    r = gguf.GGUFReader(out)
    ok = True
    got_ftype = int(r.fields["general.file_type"].parts[-1][0])
    if got_ftype != ftype:
        print(f"{kind}: general.file_type {got_ftype}, expected {ftype}")
        ok = False
    by_name = {t.name: t for t in r.tensors}
    n_quantized = 0
    for name, data in tensors.items():
        t = by_name.get(name)
        if t is None:
            print(f"{kind}: {name} missing from the output")
            ok = False
            continue
        quantizable = data.ndim == 2 and data.shape[1] % 32 == 0
        got = np.asarray(t.data).reshape(-1).view(np.uint8)
        if quantizable:
            n_quantized += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fp16 overflow of huge scales, as ggml
                want = quantize(data.astype(np.float32), qtype).reshape(-1).view(np.uint8)
            if t.tensor_type != qtype:
                print(f"{kind}: {name} is {t.tensor_type.name}, expected {qtype.name}")
                ok = False
            elif not np.array_equal(got, want):
                bad = np.flatnonzero(got != want)
                print(f"{kind}: {name}: {bad.size} of {want.size} bytes differ from gguf.quants, first at byte {bad[0]}")
                ok = False
        else:
            want = data.reshape(-1).view(np.uint8)
            if not np.array_equal(got, want):
                print(f"{kind}: {name} should be copied unchanged")
                ok = False
    if ok:
        print(f"{kind}: OK ({n_quantized} tensors byte-identical to gguf.quants {getattr(gguf, '__version__', '')}, "
              f"{len(tensors) - n_quantized} unchanged)".replace(" ,", ","))
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", required=True, help="path of powerinfer2-cli")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [check(args.cli, tmp, kind) for kind in FILE_TYPES]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
