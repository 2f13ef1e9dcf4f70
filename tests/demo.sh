#!/usr/bin/env bash
# vmlet's main job on an embedded default: render the DVP guide's linux-vm example into a
# QEMU command line and boot the tiny test guest with exactly that line, printing what
# happens. Installs what is missing and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
guest=$(tests/guest/build-guest.sh | tail -n 1)
exec /usr/bin/python3 tests/demo.py "$guest"
