#!/usr/bin/env bash
# The guide's live migration on two scratch nodes: vmletd hv-1 and hv-2, each in a network
# namespace of its own, the seed's linux-vm evicted from hv-1 to hv-2 while `vmlet get -w`
# shows its rows and the guest keeps running. Installs what is missing and builds first;
# needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
guest=$(tests/guest/build-guest.sh | tail -n 1)
exec /usr/bin/python3 tests/demo_migration.py "$guest"
