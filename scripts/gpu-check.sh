#!/usr/bin/env bash
# Everything that needs a GPU, in one run: builds with CUDA, runs the cuda-labelled
# tests, then the GPU benchmarks, and writes logs, JSON results and summary.txt into OUT_DIR.
# Made for a short lease of a GPU machine (an H100 or H200, ~15 minutes): each step is timed
# and a failed step does not stop the ones after it; the exit status is non-zero if any failed.
#
#   scripts/gpu-check.sh OUT_DIR
#   PWPI_GPU_BUILD=DIR     use this CUDA build (configured from this checkout) instead of building
#   PWPI_DEPS_PREFIX=DIR   extra CMAKE_PREFIX_PATH, for machines without the Debian packages
#                          (CLI11, nlohmann_json, Eigen3, Catch2 v2, liburing unpacked there)
#   PWPI_CUDA_ARCHS=LIST   CMAKE_CUDA_ARCHITECTURES (default: native, the card present)
#   PWPI_GPU_THREADS=N     CPU threads of the benchmarks (default: all cores)
#   PWPI_GPU_SKIP=LIST     steps to skip, among: tests prefill sparse profile
#
# Benchmarks (the "1b" model: TinyLlama-1.1B's shape, random weights from tools/make-model):
#   prefill   prompt tokens/s, 512-token prompts, Q4_0 and Q8_0, CPU vs --device cuda
#   sparse    decode tokens/s of the dReLU sparse model (.pi2.gguf with profile and predictors),
#             CPU only vs the hottest neurons on the GPU, with half the FFN left on storage and
#             in memory
#   profile   pipeweaver-cli profile --device cuda: GEMM and attention efficiencies against the
#             datasheet peak that configs/clusters use (989 TFLOP/s H100/H200, 312 A100; bf16)
set -uo pipefail

[[ $# -eq 1 ]] || { echo "usage: scripts/gpu-check.sh OUT_DIR" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
threads="${PWPI_GPU_THREADS:-$(nproc)}"
skip=" ${PWPI_GPU_SKIP:-} "
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
summary="$out/summary.txt"
: > "$summary"
failed=0

note() { echo "$*" | tee -a "$summary"; }
# step NAME CMD...: runs CMD with its output in OUT_DIR/NAME.log, notes status and seconds.
step() {
  local name="$1"; shift
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  note "step $name: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0)) s"
  if [[ $rc -ne 0 ]]; then
    failed=1
    tail -n 30 "$out/$name.log"
  fi
  return $rc
}
json_num() { grep -o "\"$1\":[-0-9.e+]*" "$2" | head -n 1 | cut -d: -f2; }
json_str() { grep -o "\"$1\":\"[^\"]*\"" "$2" | head -n 1 | cut -d'"' -f4; }

note "gpu-check: $(date -u +%FT%TZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
note "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; benchmarks use $threads threads"
if command -v nvidia-smi > /dev/null; then
  note "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1)"
else
  note "gpu: nvidia-smi not found"
fi

# ---- build
build="${PWPI_GPU_BUILD:-$root/build-gpu}"
if [[ -z "${PWPI_GPU_BUILD:-}" ]]; then
  gen=(); command -v ninja > /dev/null && gen=(-G Ninja)
  cfg=(-DCMAKE_BUILD_TYPE=Release -DPWPI_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${PWPI_CUDA_ARCHS:-native}")
  [[ -n "${PWPI_DEPS_PREFIX:-}" ]] && cfg+=("-DCMAKE_PREFIX_PATH=$PWPI_DEPS_PREFIX")
  step configure cmake -S "$root" -B "$build" "${gen[@]}" "${cfg[@]}" || exit 1
  step build cmake --build "$build" -j "$(nproc)" --target powerinfer2-cli pipeweaver-cli make-model \
    test_powerinfer2_cuda test_pipeweaver_cuda || exit 1
fi
cli="$build/powerinfer2-cli/powerinfer2-cli"
pw="$build/pipeweaver-cli/pipeweaver-cli"
make_model="$build/tools/make-model"
note "build: $("$cli" --version 2>&1 | head -n 1)"
"$cli" --version 2>&1 | grep -q 'CUDA on' || note "warning: $build is not a CUDA build"

# ---- tests
if [[ "$skip" != *" tests "* ]]; then
  step tests-cuda bash -c "cd '$build' && ctest -L cuda --output-on-failure --timeout 600"
  note "  $(grep -E 'tests passed|tests failed' "$out/tests-cuda.log" | tail -n 1)"
  grep -q 'Skipped' "$out/tests-cuda.log" && note "  warning: some cuda tests were SKIPPED (no device?)"
fi

# ---- prefill: CPU vs GPU on the 1b model
if [[ "$skip" != *" prefill "* ]]; then
  for t in q4_0 q8_0; do
    step "model-1b-$t" "$make_model" -q --preset 1b --type "$t" --seed 1 -t "$threads" -o "$work/1b-$t.gguf"
    for dev in cpu cuda; do
      step "prefill-1b-$t-$dev" bash -c "'$cli' bench -m '$work/1b-$t.gguf' -p 512 -n 0 -r 3 -t $threads --device $dev --json > '$out/prefill-1b-$t-$dev.json'"
    done
  done
  for dev in cpu cuda; do  # a long prompt: 4 batches of 512, attention over up to 2048 positions
    step "prefill-1b-q4_0-p2048-$dev" bash -c "'$cli' bench -m '$work/1b-q4_0.gguf' -p 2048 -n 0 -r 2 -t $threads --device $dev --json > '$out/prefill-1b-q4_0-p2048-$dev.json'"
  done
  note ""
  note "| 1b prefill | CPU tok/s ($threads threads) | GPU tok/s | GPU / CPU |"
  note "| --- | ---: | ---: | ---: |"
  for t in q4_0 q8_0 q4_0-p2048; do
    c="$out/prefill-1b-$t-cpu.json" g="$out/prefill-1b-$t-cuda.json"
    if [[ -s "$c" && -s "$g" ]]; then
      note "$(awk -v t="$t" -v c="$(json_num prefill_tok_s "$c")" -v g="$(json_num prefill_tok_s "$g")" \
        'BEGIN { n = t ~ /p2048/ ? 2048 : 512; sub(/-p2048/, "", t);
                 printf "| %s, %d tokens | %.1f | %.1f | %.1fx |", toupper(t), n, c, g, g / c }')"
    fi
  done
fi

# ---- pipeweaver: the device profile
if [[ "$skip" != *" profile "* ]]; then
  gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n 1)"
  peak=989000  # H100 / H200 SXM dense bf16 (configs/clusters/h100-*.json)
  [[ "$gpu_name" == *A100* ]] && peak=312000
  step pipeweaver-profile "$pw" profile --device cuda --peak-gflops "$peak" -o "$out/device-profile-cuda.json"
  if [[ -s "$out/device-profile-cuda.json" ]]; then
    note ""
    note "pipeweaver profile --device cuda ($gpu_name, peak $peak GFLOP/s given):"
    grep -E 'efficiency|peak' "$out/pipeweaver-profile.log" | sed 's/^/  /' | tee -a "$summary" > /dev/null
    note "  configs/clusters assume: H100 gemm_efficiency 0.55, attention_efficiency 0.4; A100 see a100-*.json"
  fi
fi

# ---- sparse decode: the hottest neurons on the GPU
if [[ "$skip" != *" sparse "* ]]; then
  model="$work/1b-drelu.gguf" conv="$work/1b-drelu.pi2.gguf"
  step model-1b-drelu "$make_model" -q --preset 1b --type q4_0 --activation drelu --seed 1 -t "$threads" -o "$model" &&
    step convert "$cli" convert -m "$model" -o "$conv" --cluster-size 4 -t "$threads" &&
    step profile-activations "$cli" profile-activations -m "$model" --random-tokens 1024 --window 256 -o "$conv" -t "$threads" &&
    step train-predictor "$cli" train-predictor -m "$model" --random-tokens 1536 --samples 1024 --window 256 -o "$conv" -t "$threads"
  if [[ -s "$conv" ]]; then
    sparse_run() {  # NAME THREADS ARGS...
      local name="$1" t="$2"; shift 2
      step "sparse-$name" bash -c "'$cli' bench -m '$conv' -p 0 -n 32 -r 2 -t $t --json $* > '$out/sparse-$name.json'"
    }
    sparse_run dense-cpu-mem "$threads" "--mode dense"
    sparse_run cpu-mem "$threads" ""
    sparse_run gpu-mem "$threads" "--device cuda"
    sparse_run cpu-off50 "$threads" "--offload-ffn 0.5"
    sparse_run gpu640m-off50 "$threads" "--offload-ffn 0.5 --device cuda --gpu-memory 640MiB"
    sparse_run gpu-off50 "$threads" "--offload-ffn 0.5 --device cuda"
    # A phone-sized CPU share: 4 threads.
    sparse_run cpu-off50-t4 4 "--offload-ffn 0.5"
    sparse_run gpu640m-off50-t4 4 "--offload-ffn 0.5 --device cuda --gpu-memory 640MiB"
    note ""
    note "| 1b dReLU sparse decode | tok/s | FFN on GPU | MiB read/token | GPU wait ms/token |"
    note "| --- | ---: | ---: | ---: | ---: |"
    for name in dense-cpu-mem cpu-mem gpu-mem cpu-off50 gpu640m-off50 gpu-off50 cpu-off50-t4 gpu640m-off50-t4; do
      f="$out/sparse-$name.json"
      [[ -s "$f" ]] || continue
      note "$(awk -v n="$name" -v tg="$(json_num decode_tok_s "$f")" -v share="$(json_num gpu_ffn_share "$f")" \
        -v rd="$(json_num bytes_read_per_token "$f")" -v w="$(json_num gpu_wait_ms_per_token "$f")" \
        'BEGIN { printf "| %s | %.2f | %.0f%% | %.2f | %.2f |", n, tg, 100 * share, rd / 1048576, w }')"
    done
  fi
fi

note ""
note "gpu-check: $([[ $failed -eq 0 ]] && echo 'all steps ok' || echo 'SOME STEPS FAILED') (logs in $out)"
echo
echo "==== summary ($summary)"
cat "$summary"
exit $failed
