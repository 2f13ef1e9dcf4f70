#!/bin/bash
# Boot the test guest built by build-guest.sh under plain QEMU (no vmlet)
# and check the serial markers its /init promises. This proves the guest
# itself works, so vmlet's tests can trust it.
#
# Usage: tests/guest/check-guest.sh [CASE...]
#   CASEs: cdrom disk smp2 acpi nocidata write sysprep hotplug panic
#   (default: all). Exits non-zero on the first failing case.
# Environment: VMLET_GUEST_DIR as for build-guest.sh; CHECK_TIMEOUT (60 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIMEOUT=${CHECK_TIMEOUT:-60}
ALL_CASES=(cdrom disk smp2 acpi nocidata write sysprep hotplug panic)

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v xorriso >/dev/null || need+=(xorriso)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

GUEST=$("$HERE/build-guest.sh" | tail -n1)
WORK=$(mktemp -d /tmp/vmlet-check-guest.XXXXXX)
QEMU_PID=
# Kill the QEMU of the current case, if a case left it running.
stop_qemu() {
    if [ -n "$QEMU_PID" ]; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
        QEMU_PID=
    fi
}
cleanup() {
    stop_qemu
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
fail() {
    echo "FAIL [$CASE]: $*" >&2
    echo "---- serial console ($LOG) ----" >&2
    tr -d '\r' <"$LOG" | tail -n 60 >&2 || true
    exit 1
}

# Serial log with the console's \r removed.
serial() { tr -d '\r' <"$LOG"; }

# wait_for REGEX [SECONDS]: wait until a whole serial line matches. Greps
# the log directly (no tr) to keep the poll cheap on a 2-core host.
CR=$'\r'
seen() { grep -Eq "^($1)$CR?\$" "$LOG"; }
wait_for() {
    local re=$1 limit=${2:-$TIMEOUT} t0
    t0=$(now_ms)
    while ! seen "$re"; do
        [ $(($(now_ms) - t0)) -lt $((limit * 1000)) ] || fail "no line matching '$re' within ${limit}s"
        kill -0 "$QEMU_PID" 2>/dev/null || { seen "$re" && return 0; fail "QEMU exited before '$re'"; }
        sleep 0.05
    done
}

# wait_qemu_exit SECONDS: QEMU must exit by itself (guest power-off), rc 0.
wait_qemu_exit() {
    local limit=$1 t0 rc
    t0=$(now_ms)
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        [ $(($(now_ms) - t0)) -lt $((limit * 1000)) ] || fail "QEMU still running ${limit}s after power-off"
        sleep 0.05
    done
    rc=0
    wait "$QEMU_PID" || rc=$?
    QEMU_PID=
    [ "$rc" = 0 ] || fail "QEMU exited with rc $rc"
}

# make_seed DIR USERDATA: a NoCloud seed ISO, as cloud-init expects it.
make_seed() {
    local dir=$1
    mkdir -p "$dir/seed"
    printf '%s' "$2" >"$dir/seed/user-data"
    printf 'instance-id: iid-%s\nlocal-hostname: vmlet-check\n' "$CASE" >"$dir/seed/meta-data"
    printf 'version: 2\nethernets: {}\n' >"$dir/seed/network-config"
    xorriso -as mkisofs -quiet -o "$dir/seed.iso" -V cidata -J -r "$dir/seed" 2>/dev/null
}

# check_cidata DIR: every seed file was printed byte for byte, with the
# right size and sha256.
check_cidata() {
    local dir=$1 f size sum got
    for f in meta-data user-data network-config; do
        size=$(stat -c %s "$dir/seed/$f")
        sum=$(sha256sum "$dir/seed/$f" | cut -d' ' -f1)
        serial | grep -qx "VMLET-CIDATA-FILE $f $size $sum" ||
            fail "no 'VMLET-CIDATA-FILE $f $size $sum'"
        got=$(serial | sed -n "/^VMLET-CIDATA-BEGIN $f\$/,/^VMLET-CIDATA-END $f\$/p" | sed '1d;$d')
        [ "$got" = "$(cat "$dir/seed/$f")" ] || fail "content of $f differs: got '$got'"
    done
    serial | grep -qx VMLET-CIDATA-OK || fail "no VMLET-CIDATA-OK"
}

# start_qemu ARGS...: common machine; the case adds boot and seed devices.
start_qemu() {
    LOG=$DIR/serial.log
    : >"$LOG"
    T_EXEC=$(now_ms)
    qemu-system-x86_64 -machine q35 -accel tcg -m 256 \
        -nodefaults -no-user-config -display none \
        -serial "file:$LOG" -qmp "unix:$DIR/qmp.sock,server=on,wait=off" \
        "$@" >"$DIR/qemu.out" 2>&1 &
    QEMU_PID=$!
}

# Time from QEMU exec to the BOOT-OK line, and the guest's own uptime then.
report_boot() {
    local up
    wait_for 'VMLET-GUEST-BOOT-OK uptime=[0-9.]+'
    up=$(serial | sed -n 's/^VMLET-GUEST-BOOT-OK uptime=//p' | head -n1)
    echo "  [$CASE] BOOT-OK $(($(now_ms) - T_EXEC)) ms after exec (guest uptime ${up} s)"
}

# qmp CMD-JSON...: run QMP commands in order, print the replies.
qmp() {
    /usr/bin/python3 - "$DIR/qmp.sock" "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            return m
json.loads(f.readline())  # greeting
for cmd in ["{\"execute\":\"qmp_capabilities\"}"] + sys.argv[2:]:
    f.write(cmd + "\n"); f.flush()
    r = reply()
    if "error" in r:
        sys.exit("QMP error for %s: %s" % (cmd, r["error"]))
    print(json.dumps(r))
EOF
}

POWEROFF_UD=$'#cloud-config\n#vmlet: poweroff-after 3\nhostname: vmlet-check\n'
CD_BOOT() { echo -drive "file=$GUEST/guest.iso,media=cdrom,if=none,id=boot,readonly=on" -device ide-cd,drive=boot,bus=ide.0,bootindex=0; }
SEED_CD() { echo -drive "file=$DIR/seed.iso,media=cdrom,if=none,id=seed,readonly=on" -device ide-cd,drive=seed,bus=ide.1; }

# A boot that ends in "#vmlet: poweroff-after 3": the basic contract.
poweroff_case() {
    local nproc=$1 blockre=$2
    shift 2
    make_seed "$DIR" "$POWEROFF_UD"
    start_qemu "$@"
    report_boot
    wait_for "VMLET-NPROC $nproc"
    wait_for 'VMLET-MEM-KB [0-9]+'
    wait_for 'VMLET-CIDATA-OK'
    check_cidata "$DIR"
    wait_for "VMLET-BLOCK $blockre"
    wait_for 'VMLET-TICK uptime=[0-9.]+'
    wait_for 'VMLET-POWEROFF'
    wait_qemu_exit 15
}

case_cdrom() {
    # shellcheck disable=SC2046
    poweroff_case 1 'sr0 sr1' $(CD_BOOT) $(SEED_CD)
}

case_disk() {
    # The seed goes on virtio-blk as well, to cover cidata on a disk.
    qemu-img convert -O qcow2 "$GUEST/guest.iso" "$DIR/boot.qcow2"
    poweroff_case 1 'vda vda1 vdb' \
        -drive "file=$DIR/boot.qcow2,format=qcow2,if=none,id=boot" -device virtio-blk-pci,drive=boot,bootindex=0 \
        -drive "file=$DIR/seed.iso,format=raw,if=none,id=seed,readonly=on" -device virtio-blk-pci,drive=seed
}

case_smp2() {
    # shellcheck disable=SC2046
    poweroff_case 2 'sr0 sr1' -smp 2 $(CD_BOOT) $(SEED_CD)
}

case_nocidata() {
    # Boot from the raw ISO as a disk, no seed at all.
    start_qemu -drive "file=$GUEST/guest.iso,format=raw,if=none,id=boot,readonly=on" \
        -device virtio-blk-pci,drive=boot,bootindex=0
    report_boot
    wait_for 'VMLET-CIDATA-NONE'
    wait_for 'VMLET-BLOCK vda vda1'
    wait_for 'VMLET-TICK uptime=[0-9.]+'
}

case_acpi() {
    make_seed "$DIR" $'#cloud-config\n'
    # shellcheck disable=SC2046
    start_qemu $(CD_BOOT) $(SEED_CD)
    report_boot
    wait_for 'VMLET-TICK uptime=[0-9.]+'
    local t0
    t0=$(now_ms)
    qmp '{"execute":"system_powerdown"}' >/dev/null
    wait_for 'VMLET-ACPI-POWERDOWN' 10
    wait_qemu_exit 10
    echo "  [$CASE] system_powerdown -> QEMU exit $(($(now_ms) - t0)) ms"
}

case_write() {
    make_seed "$DIR" $'#cloud-config\n#vmlet: write-pattern vda ab 1024\n#vmlet: poweroff-after 5\n'
    qemu-img create -q -f qcow2 "$DIR/data.qcow2" 8M
    # shellcheck disable=SC2046
    start_qemu $(CD_BOOT) $(SEED_CD) \
        -drive "file=$DIR/data.qcow2,format=qcow2,if=none,id=data" -device virtio-blk-pci,drive=data
    report_boot
    wait_for 'VMLET-WRITE-OK vda'
    wait_for 'VMLET-POWEROFF'
    wait_qemu_exit 15
    qemu-io -f qcow2 -r -c 'read -P 0xab 0 1M' -c 'read -P 0 1M 1M' "$DIR/data.qcow2" | grep -q 'read 1048576/1048576' ||
        fail "data.qcow2 does not hold 1 MiB of 0xab"
}

case_sysprep() {
    make_seed "$DIR" "$POWEROFF_UD"
    mkdir -p "$DIR/sysprep"
    printf '<?xml version="1.0"?>\n<unattend/>\n' >"$DIR/sysprep/Autounattend.xml"
    xorriso -as mkisofs -quiet -o "$DIR/sysprep.iso" -V SYSPREP -J -r "$DIR/sysprep" 2>/dev/null
    local size sum
    size=$(stat -c %s "$DIR/sysprep/Autounattend.xml")
    sum=$(sha256sum "$DIR/sysprep/Autounattend.xml" | cut -d' ' -f1)
    # shellcheck disable=SC2046
    start_qemu $(CD_BOOT) $(SEED_CD) \
        -drive "file=$DIR/sysprep.iso,media=cdrom,if=none,id=sp,readonly=on" -device ide-cd,drive=sp,bus=ide.2
    report_boot
    wait_for "VMLET-SYSPREP-FILE Autounattend.xml $size $sum"
    wait_for 'VMLET-POWEROFF'
    wait_qemu_exit 15
}

case_hotplug() {
    make_seed "$DIR" $'#cloud-config\n'
    qemu-img create -q -f qcow2 "$DIR/hot.qcow2" 16M
    # shellcheck disable=SC2046
    start_qemu $(CD_BOOT) $(SEED_CD) -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1,addr=0x10
    report_boot
    wait_for 'VMLET-BLOCK sr0 sr1'
    qmp '{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"hd1","file":{"driver":"file","filename":"'"$DIR/hot.qcow2"'"}}}' \
        '{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vdisk1","drive":"hd1","bus":"rp1"}}' >/dev/null
    wait_for 'VMLET-BLOCK-ADDED vda' 10
    wait_for 'VMLET-BLOCK sr0 sr1 vda' 10
    qmp '{"execute":"device_del","arguments":{"id":"vdisk1"}}' >/dev/null
    wait_for 'VMLET-BLOCK-REMOVED vda' 10
    qmp '{"execute":"quit"}' >/dev/null || true
    wait_qemu_exit 10
}

case_panic() {
    # pvpanic reports the panic to QEMU; -action panic=exit-failure turns it
    # into QEMU exiting with status 1 (QEMU >= 6.0).
    make_seed "$DIR" $'#cloud-config\n#vmlet: panic-after 2\n'
    # shellcheck disable=SC2046
    start_qemu $(CD_BOOT) $(SEED_CD) -device pvpanic -action panic=exit-failure
    report_boot
    wait_for 'VMLET-PANIC'
    local t0 rc=0
    t0=$(now_ms)
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        [ $(($(now_ms) - t0)) -lt 15000 ] || fail "QEMU did not exit after the guest panic"
        sleep 0.05
    done
    wait "$QEMU_PID" || rc=$?
    QEMU_PID=
    [ "$rc" = 1 ] || fail "QEMU exit status $rc after panic, expected 1 (pvpanic + panic=exit-failure)"
}

CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=("${ALL_CASES[@]}")
passed=0
for CASE in "${CASES[@]}"; do
    declare -F "case_$CASE" >/dev/null || { echo "unknown case '$CASE' (known: ${ALL_CASES[*]})" >&2; exit 2; }
    DIR=$WORK/$CASE
    mkdir -p "$DIR"
    LOG=$DIR/serial.log
    t=$(now_ms)
    "case_$CASE"
    stop_qemu
    echo "ok [$CASE] $(($(now_ms) - t)) ms"
    passed=$((passed + 1))
done
echo "$passed passed, 0 failed"
