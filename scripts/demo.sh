#!/usr/bin/env bash
# Installs what is missing, builds, and runs each tool's main job on shipped defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh
echo "== building (Release)"
bash scripts/build.sh "$root/build" -DCMAKE_BUILD_TYPE=Release

pw="$root/build/pipeweaver-cli/pipeweaver-cli"
pi="$root/build/powerinfer2-cli/powerinfer2-cli"
out="$root/out/demo"
mkdir -p "$out"

echo
echo "== pipeweaver-cli"
"$pw" --version
"$pw" --help

echo
echo "== powerinfer2-cli"
"$pi" --version
"$pi" --help
