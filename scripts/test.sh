#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with CTest (labels unit,
# golden, slow, cuda), then builds the unit and golden tests with AddressSanitizer +
# UBSan and runs them. Exits non-zero on any failure.
#
#   scripts/test.sh                 everything (what CI runs)
#   PWPI_TEST_SANITIZE=0 scripts/test.sh    skip the sanitizer pass
#   PWPI_TEST_LABELS='unit' scripts/test.sh run only those labels (a ctest -L regex)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)

bash scripts/install-deps.sh

echo "== build (Release, -Werror)"
bash scripts/build.sh "$root/build" -DCMAKE_BUILD_TYPE=Release -DPWPI_WERROR=ON

status=0
label_args=()
[[ -n "${PWPI_TEST_LABELS:-}" ]] && label_args=(-L "$PWPI_TEST_LABELS")
echo "== tests"
(cd build && ctest --output-on-failure --timeout 900 -j "$jobs" "${label_args[@]}") || status=1

if [[ "${PWPI_TEST_SANITIZE:-1}" != 0 ]]; then
  echo "== build (AddressSanitizer + UBSan)"
  # -O1 -g1: quick to compile, still fast enough to run, with line numbers in reports.
  bash scripts/build.sh "$root/build-sanitize" -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" \
    -DPWPI_SANITIZE=ON -DPWPI_WERROR=ON -DPWPI_CUDA=OFF
  echo "== tests under sanitizers (unit, golden)"
  (cd build-sanitize &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --output-on-failure --timeout 900 -j "$jobs" -L 'unit|golden' -LE 'slow|cuda') || status=1
fi

if ((status)); then
  echo "test.sh: FAILED" >&2
else
  echo "test.sh: all tests passed"
fi
exit $status
