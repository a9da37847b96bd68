#!/usr/bin/env bash
# Installs hlwq's build and test dependencies from Debian's packages (Debian 12). Safe to rerun.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS=(g++ cmake ninja-build pkg-config
      libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libutf8proc-dev libcpp-httplib-dev libedit-dev
      libeigen3-dev  # GPTQ's Cholesky and GEMMs (header-only)
      clang libclang-rt-dev libomp-dev llvm)  # sanitizer + libFuzzer build (SECURITY.md); llvm: llvm-symbolizer
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all build dependencies are installed"
fi
