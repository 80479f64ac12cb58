#!/usr/bin/env python3
"""Cross-checks powerinfer2-cli's GGUF reader against the reference reader (PyPI's `gguf`,
maintained with llama.cpp).

For each GGUF file given, this reads it with gguf.GGUFReader, builds the JSON object that
`powerinfer2-cli inspect --json` prints (every array in full), runs the CLI and compares the
two; any difference is printed and the exit status is 1.

  check_gguf_reference.py --cli build/powerinfer2-cli/powerinfer2-cli model.gguf ...
  check_gguf_reference.py --dump model.gguf      # only print the reference's JSON

Exit status 77 (CTest's skip code here) when the gguf package or a file is missing.
"""

import argparse
import json
import os
import subprocess
import sys

SKIP = 77

try:
    import gguf
    from gguf import GGUFValueType
except ImportError:
    print("SKIPPED: python gguf package not installed (pip install gguf)")
    sys.exit(SKIP)


def scalar(part, vtype):
    v = part.tolist()[0]
    if vtype == GGUFValueType.BOOL:
        return bool(v)
    if vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(v)
    return int(v)


def decode(parts, i, vtype):
    """Decodes one value starting at parts[i]; returns (value, next index).

    gguf.GGUFReader flattens nested arrays in ReaderField.data, but its `parts` keep every
    encoded field in file order, so the structure is rebuilt from them."""
    if vtype == GGUFValueType.STRING:
        return bytes(parts[i + 1]).decode("utf-8"), i + 2  # length, bytes
    if vtype == GGUFValueType.ARRAY:
        itype = GGUFValueType(int(parts[i][0]))
        n = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(n):
            v, i = decode(parts, i, itype)
            items.append(v[2] if itype == GGUFValueType.ARRAY else v)
        return ("array", itype, items), i
    return scalar(parts[i], vtype), i + 1


def reference_json(path):
    r = gguf.GGUFReader(path)
    out = {
        "file": path,
        "format": "GGUF",
        "version": int(r.fields["GGUF.version"].parts[0][0]),
        "file_size": os.path.getsize(path),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
    }
    meta = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        vtype = GGUFValueType(int(field.parts[2][0]))  # parts: key length, key, type, value...
        value, end = decode(field.parts, 3, vtype)
        assert end == len(field.parts), f"{name}: {len(field.parts) - end} parts not decoded"
        entry = {"type": vtype.name.lower()}
        if vtype == GGUFValueType.ARRAY:
            entry["element_type"] = value[1].name.lower()
            entry["length"] = len(value[2])
            entry["value"] = value[2]
        else:
            entry["value"] = value
        meta[name] = entry
    out["metadata"] = meta

    tensors = []
    totals = {"tensors": 0, "parameters": 0, "bytes": 0, "by_type": {}}
    for t in r.tensors:
        tname = t.tensor_type.name
        shape = [int(d) for d in t.shape]  # ne[0] first, as in the file
        tensors.append({
            "name": t.name,
            "type": tname,
            "shape": shape,
            "offset": int(t.data_offset),
            "size": int(t.n_bytes),
            "n_elements": int(t.n_elements),
        })
        by = totals["by_type"].setdefault(tname, {"tensors": 0, "parameters": 0, "bytes": 0})
        for agg in (totals, by):
            agg["tensors"] += 1
            agg["parameters"] += int(t.n_elements)
            agg["bytes"] += int(t.n_bytes)
    out["tensors"] = tensors
    # The CLI lists types by ggml id; compare as unordered objects.
    out["totals"] = totals
    return out


def differences(a, b, where=""):
    """Yields 'where: reference X, cli Y' lines (floats compared exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a.keys() | b.keys():
            if k not in a:
                yield f"{where}/{k}: only in the CLI output"
            elif k not in b:
                yield f"{where}/{k}: missing from the CLI output"
            else:
                yield from differences(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{where}: reference has {len(a)} elements, CLI {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}/{i}")
    elif type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                         and not isinstance(a, bool) and not isinstance(b, bool)):
        yield f"{where}: reference {a!r} ({type(a).__name__}), CLI {b!r} ({type(b).__name__})"
    elif a != b:
        yield f"{where}: reference {a!r}, CLI {b!r}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", help="path of powerinfer2-cli")
    p.add_argument("--dump", action="store_true", help="print the reference JSON and stop")
    p.add_argument("files", nargs="+")
    args = p.parse_args()

    for path in args.files:
        if not os.path.exists(path):
            print(f"SKIPPED: {path} does not exist")
            return SKIP
    failed = False
    for path in args.files:
        ref = reference_json(path)
        if args.dump:
            print(json.dumps(ref, indent=2, ensure_ascii=False))
            continue
        if not args.cli:
            p.error("--cli is required unless --dump is given")
        run = subprocess.run([args.cli, "inspect", "--json", "--max-array", "1000000000", path],
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{path}: powerinfer2-cli failed ({run.returncode}): {run.stderr.strip()}")
            failed = True
            continue
        got = json.loads(run.stdout)
        diffs = list(differences(ref, got))
        if diffs:
            failed = True
            print(f"{path}: {len(diffs)} differences between gguf.GGUFReader and powerinfer2-cli:")
            for d in diffs[:50]:
                print("  " + d)
        else:
            print(f"{path}: OK ({len(ref['metadata'])} keys, {len(ref['tensors'])} tensors agree with gguf "
                  f"{getattr(gguf, '__version__', '')})".replace(" )", ")"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
