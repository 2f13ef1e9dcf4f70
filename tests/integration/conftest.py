import os
import pathlib
import shutil
import subprocess

import pytest

SOURCE = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VMLET_BUILD_DIR", SOURCE / "build"))
GOLDEN = SOURCE / "tests" / "golden"
GUEST_SCRIPT = SOURCE / "tests" / "guest" / "build-guest.sh"


def vmlet_binary():
    return BUILD / "agent" / "vmlet"


@pytest.fixture(scope="session")
def qemu_available():
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed (tests/setup.sh installs it)")


@pytest.fixture(scope="session")
def test_guest():
    """The cached tiny guest (kernel + busybox initramfs on a hybrid bootable ISO)."""
    out = subprocess.run([str(GUEST_SCRIPT)], check=True, capture_output=True, text=True)
    path = pathlib.Path(out.stdout.strip().splitlines()[-1])
    assert (path / "guest.iso").is_file(), out.stdout + out.stderr
    return path
