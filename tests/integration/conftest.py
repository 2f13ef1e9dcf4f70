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


def build_test_guest():
    """The tiny guest's directory (kernel + busybox initramfs on a hybrid bootable ISO),
    built by tests/guest/build-guest.sh or found in its cache."""
    out = subprocess.run([str(GUEST_SCRIPT)], check=True, capture_output=True, text=True)
    path = pathlib.Path(out.stdout.strip().splitlines()[-1])
    if not (path / "guest.iso").is_file():
        raise RuntimeError(f"{GUEST_SCRIPT} made no guest.iso in {path}:\n"
                           + out.stdout + out.stderr)
    return path


@pytest.fixture(scope="session")
def test_guest():
    return build_test_guest()
