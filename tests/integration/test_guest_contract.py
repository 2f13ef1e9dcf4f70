"""The test guest's own contract, checked with hand-written QEMU lines (no vmlet).

tests/guest/check-guest.sh boots the guest once per case and checks the VMLET-* markers
its /init promises (tests/guest/README.md). Running it here means a broken guest shows up
as a guest failure, not as a puzzling vmlet failure.
"""
import subprocess

import pytest

from conftest import SOURCE

CASES = ["cdrom", "disk", "smp2", "acpi", "nocidata", "write", "sysprep", "hotplug", "panic"]


@pytest.mark.parametrize("case", CASES)
def test_guest_case(case, test_guest, qemu_available):
    r = subprocess.run([str(SOURCE / "tests" / "guest" / "check-guest.sh"), case],
                       capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                            "VMLET_GUEST_DIR": str(test_guest)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 passed, 0 failed" in r.stdout
