#!/usr/bin/env bash
# Installs what vmlet needs to build and test on Debian 12 (only what is missing), then
# builds it with warnings as errors. Used by demo.sh, run-all.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  meson ninja-build pkg-config gcc libc6-dev libglib2.0-dev libjson-glib-dev libsoup-3.0-dev
  libisofs-dev libyaml-dev libsystemd-dev libseccomp-dev libcap-dev libgnutls28-dev
  # systemd-sysusers and -tmpfiles for vmlet's user and directories (not systemd as PID 1)
  systemd
  # tests: QEMU, disk and ISO tools, the test guest, pytest for integration tests
  qemu-system-x86 qemu-utils ovmf xorriso genisoimage python3-pytest util-linux procps
  busybox-static isolinux syslinux-common cpio
  # certificates for migration tests (certtool), network namespaces for peers, curl as a
  # peer (the peer API called with a node's client certificate, or with none)
  gnutls-bin iproute2 curl
  # a private D-Bus and the stand-in systemd1 for the systemd backend's contract test
  dbus-daemon python3-dbus python3-gi
  # fuzzing (libFuzzer) and sanitizers
  clang
)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2
fi

# QEMU's unprivileged user (systemd/vmlet.sysusers), as on a node.
if ! id vmlet-qemu >/dev/null 2>&1; then
  $sudo systemd-sysusers "$PWD/systemd/vmlet.sysusers" >&2
fi

if [ ! -f build/build.ninja ]; then
  meson setup build -Dwerror=true >&2
fi
meson compile -C build >&2
