#!/usr/bin/env bash
# Installs what the build and the tests need from Debian 12 packages, only if missing.
# Runs apt-get directly as root, else through sudo.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config git python3
  libcli11-dev nlohmann-json3-dev libeigen3-dev catch2 liburing-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "install-deps: error: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Optional: PyPI's gguf package, the reference GGUF reader our golden cross-checks use.
# Best effort: without it those tests report themselves skipped.
if ! python3 -c "import gguf" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check gguf >/dev/null 2>&1 ||
    echo "install-deps: note: could not pip-install 'gguf'; the GGUF reference cross-checks will be skipped" >&2
fi
