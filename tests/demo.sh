#!/usr/bin/env bash
# vmlet as a new user meets it: vmletd on a scratch node runs the DVP guide's linux-vm
# (tests/seed/linux-vm.yaml applied with `vmlet apply`, the tiny test guest standing in for
# its Ubuntu disk), `vmlet get` shows it Running, the guest's console shows the cloud-init
# user-data it received, then `vmlet stop` and clean-up. Installs what is missing and
# builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
guest=$(tests/guest/build-guest.sh | tail -n 1)
exec /usr/bin/python3 tests/demo.py "$guest"
