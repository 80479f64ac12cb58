#!/usr/bin/env bash
# Dense engine throughput on the "1b" model (TinyLlama-1.1B shape, random weights from
# tools/make-model) in Q4_0, Q8_0 and F16, 2 threads, beside llama.cpp's CPU figures on the
# same shape; plus the machine's streaming read bandwidth and what it allows for decode.
# The models are written once into a cache folder (about 3.9 GB), and again only when
# make-model is newer than them. Uses only the project's binaries, bash and awk.
#
#   scripts/bench-dense.sh [BUILD_DIR]        (default: build)
#   PWPI_BENCH_CACHE=DIR     cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/pwpi-bench)
#   PWPI_BENCH_REPS=N        timed repetitions (default 3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
make_model="$build/tools/make-model"
cli="$build/powerinfer2-cli/powerinfer2-cli"
ops_bench="$build/tests/powerinfer2/bench_powerinfer2_ops"
for exe in "$make_model" "$cli"; do
  [[ -x "$exe" ]] || { echo "error: $exe not found; build first (scripts/build.sh)" >&2; exit 2; }
done
cache="${PWPI_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pwpi-bench}"
reps="${PWPI_BENCH_REPS:-3}"
threads=2
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# One number from a one-line JSON object: json_num KEY FILE.
json_num() { grep -o "\"$1\":[-0-9.e+]*" "$2" | head -n 1 | cut -d: -f2; }

echo "bench-dense: 1b preset (dim 2048, FFN 5632, 22 layers, 32/4 heads, vocab 32000), $threads threads, $reps reps"
echo "load average at start: $(loadavg)  (other jobs share the cores when it is above $threads)"

# The models, written once.
types=(q4_0 q8_0 f16)
for t in "${types[@]}"; do
  f="$cache/1b-$t-seed1.gguf"
  if [[ ! -f "$f" || "$make_model" -nt "$f" ]]; then
    start=$(date +%s.%N)
    "$make_model" -q --preset 1b --type "$t" --seed 1 -t "$threads" -o "$f"
    printf '  wrote %s in %.1f s\n' "$f" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')"
  fi
done

# Streaming read bandwidth: the better of the ops benchmark's two streaming sums (plain, and
# prefetching ahead as the kernels do); its tiny matvec run is ignored.
bw1="" bw2=""
cmake --build "$build" --target bench_powerinfer2_ops > /dev/null 2>&1 || true  # built on demand
if [[ -x "$ops_bench" ]]; then
  "$ops_bench" -t 1,2 --types f32 --no-matmul --no-rows16 --shape 64,64 --reps 5 > "$work/bw.txt"
  best_bw() { awk -v pat="$1" '$0 ~ pat && $(NF-1) + 0 > best {best = $(NF-1) + 0} END {printf "%.1f", best}' "$work/bw.txt"; }
  bw1=$(best_bw '^ *1 thread') bw2=$(best_bw '^ *2 threads')
  echo "streaming read bandwidth (best of plain / prefetching sums): 1 thread $bw1 GB/s, 2 threads $bw2 GB/s"
else
  echo "streaming read bandwidth: n/a ($ops_bench not built)"
fi

# Bytes a decode step reads: every matrix but the embedding (one row of it), i.e. 22 layers
# of q, k, v, o, gate, up, down plus the output head, at the type's bytes per weight.
weights=$(awk 'BEGIN {d = 2048; kv = 256; f = 5632; print 22 * (2 * d * d + 2 * d * kv + 3 * d * f) + 32000 * d}')
bytes_per_weight() { case "$1" in q4_0) echo 0.5625 ;; q8_0) echo 1.0625 ;; f16) echo 2 ;; esac; }
llama_pp() { case "$1" in q4_0) echo 121 ;; q8_0) echo 90.5 ;; f16) echo 120 ;; esac; }
llama_tg() { case "$1" in q4_0) echo 43.8 ;; q8_0) echo 26.3 ;; f16) echo 15.8 ;; esac; }

rows=()
for t in "${types[@]}"; do
  f="$cache/1b-$t-seed1.gguf"
  "$cli" bench -m "$f" -p 512 -n 128 -t "$threads" -r "$reps" --json > "$work/$t.json"
  pp=$(json_num prefill_tok_s "$work/$t.json") pps=$(json_num prefill_tok_s_stddev "$work/$t.json")
  tg=$(json_num decode_tok_s "$work/$t.json") tgs=$(json_num decode_tok_s_stddev "$work/$t.json")
  rss=$(json_num peak_rss_bytes "$work/$t.json")
  gb=$(awk -v w="$weights" -v b="$(bytes_per_weight "$t")" 'BEGIN {print w * b / 1e9}')
  rows+=("$(awk -v t="$t" -v pp="$pp" -v pps="$pps" -v tg="$tg" -v tgs="$tgs" -v rss="$rss" -v gb="$gb" \
    -v lpp="$(llama_pp "$t")" -v ltg="$(llama_tg "$t")" -v bw="${bw2:-0}" 'BEGIN {
      ceil = bw > 0 ? sprintf("%.1f", bw / gb) : "n/a";
      printf "| %-4s | %6.1f ± %4.1f | %5.2f ± %4.2f | %5.0f MiB | %5.2f GB | %5.1f GB/s | %5s | %5.1f / %4.1f |",
        toupper(t), pp, pps, tg, tgs, rss / 1048576, gb, tg * gb, ceil, lpp, ltg }')")
done

echo
echo "| type | pp512 tok/s | tg128 tok/s | peak RSS | read/token | decode reads | tg ceiling at ${bw2:-?} GB/s | llama.cpp pp / tg |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo
echo "read/token: weight bytes one decode step streams (all matrices but the embedding);"
echo "decode reads = tg x read/token; tg ceiling = streaming bandwidth / read/token (decode is"
echo "memory-bound when 'decode reads' nears the streaming bandwidth, kernel-bound when well below)."
echo "load average at end: $(loadavg)"
