#!/usr/bin/env bash
# Installs what vmlet needs to build and test on Debian 12 (only what is missing), then
# builds it with warnings as errors. Used by demo.sh, run-all.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  meson ninja-build pkg-config gcc libc6-dev libglib2.0-dev libjson-glib-dev libsoup-3.0-dev
  libisofs-dev libyaml-dev
  # tests: QEMU, disk and ISO tools, the test guest, pytest for integration tests
  qemu-system-x86 qemu-utils ovmf xorriso genisoimage python3-pytest util-linux procps
  busybox-static isolinux syslinux-common cpio
  # fuzzing (libFuzzer) and sanitizers
  clang
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2
fi

if [ ! -f build/build.ninja ]; then
  meson setup build -Dwerror=true >&2
fi
meson compile -C build >&2
