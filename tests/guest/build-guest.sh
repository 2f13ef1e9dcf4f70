#!/bin/bash
# Build (or reuse) the vmlet test guest: a Debian kernel, a busybox initramfs
# and a hybrid ISO that SeaBIOS boots as a CD-ROM or as a disk.
#
# Usage: tests/guest/build-guest.sh [OUTDIR]
#   OUTDIR defaults to ${VMLET_GUEST_DIR:-/var/cache/vmlet/test-guest}.
#   Progress goes to stderr; the only stdout line is OUTDIR.
# Outputs: OUTDIR/{vmlinuz,initrd.gz,guest.iso,build-info} and OUTDIR/.stamp.
# Environment:
#   VMLET_DEB_CACHE  where the kernel .deb is kept (/var/cache/vmlet/debs)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUTDIR=$(realpath -m "${1:-${VMLET_GUEST_DIR:-/var/cache/vmlet/test-guest}}")
DEB_CACHE=${VMLET_DEB_CACHE:-/var/cache/vmlet/debs}
STAMP=$OUTDIR/.stamp
# Every module the guest may need. Deps are added from modules.dep; names
# that are built in or missing from this kernel are skipped.
WANT_MODULES=(
    virtio_pci_legacy_dev virtio_pci_modern_dev virtio_ring virtio virtio_pci
    virtio_blk virtio_scsi virtio_console
    scsi_common scsi_mod sd_mod sr_mod cdrom isofs
    libata libahci ahci
    button evdev              # ACPI power button -> /dev/input/eventN
    pvpanic_mmio pvpanic_pci  # lets QEMU see a guest panic (GUEST_PANICKED)
)
BUILD_DEPS=(busybox-static xorriso isolinux syslinux-common cpio kmod gzip xz-utils qemu-utils)

log() { echo "build-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cache key

# apt-cache takes ~0.8 s here (no pkgcache.bin), too slow for the cached
# path. So the resolved kernel package is remembered together with a
# fingerprint of apt's package lists and only looked up again when the lists
# change (apt-get update).
lists_fingerprint() {
    { stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null || true; } | sha256sum | cut -d' ' -f1
}

resolve_kernel() {
    local dep
    dep=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: *\(linux-image-[^ ]*\)$/\1/p' | head -n1) || true
    if [ -z "$dep" ]; then
        log "apt lists have no linux-image-amd64; running apt-get update"
        apt-get update -qq >&2
        dep=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: *\(linux-image-[^ ]*\)$/\1/p' | head -n1)
    fi
    [ -n "$dep" ] || die "cannot resolve linux-image-amd64"
    KPKG=$dep
    KVER=$(apt-cache show --no-all-versions "$KPKG" | sed -n 's/^Version: //p' | head -n1)
    [ -n "$KVER" ] || die "no version for $KPKG"
}

cache_key() {
    {
        sha256sum "$HERE/build-guest.sh" "$HERE/init" "$HERE/isolinux.cfg" | cut -d' ' -f1
        echo "$KPKG $KVER"
    } | sha256sum | cut -d' ' -f1
}

stamp_get() { sed -n "s/^$1=//p" "$STAMP" 2>/dev/null; }

cache_valid() {
    [ -f "$STAMP" ] && [ -s "$OUTDIR/guest.iso" ] && [ -s "$OUTDIR/vmlinuz" ] &&
        [ -s "$OUTDIR/initrd.gz" ] && [ "$(stamp_get key)" = "$KEY" ]
}

LISTS_FP=$(lists_fingerprint)
KPKG='' KVER=''
if [ -f "$STAMP" ] && [ "$(stamp_get lists)" = "$LISTS_FP" ]; then
    KPKG=$(stamp_get kpkg)
    KVER=$(stamp_get kver)
fi
if [ -z "$KPKG" ] || [ -z "$KVER" ]; then resolve_kernel; fi
KEY=$(cache_key)
if cache_valid; then
    echo "$OUTDIR"
    exit 0
fi

# ---------------------------------------------------------------- build

mkdir -p "$(dirname "$OUTDIR")"
# Two test runs may build at once; the second waits and then reuses.
exec 9>"$OUTDIR.lock"
flock 9
if cache_valid; then
    echo "$OUTDIR"
    exit 0
fi
# Refuse to replace a directory we did not make (e.g. a mistyped OUTDIR=/tmp).
if [ -e "$OUTDIR" ] && [ ! -f "$STAMP" ] && [ -n "$(ls -A "$OUTDIR")" ]; then
    die "$OUTDIR exists, is not empty and holds no .stamp; not replacing it"
fi
# Left-overs of builds that were killed.
rm -rf "$OUTDIR".tmp.* "$OUTDIR".old.*

START_US=${EPOCHREALTIME/./}

ensure_packages() {
    local p missing=()
    for p in "$@"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2
}
ensure_packages "${BUILD_DEPS[@]}"
# Lists may have changed through apt-get update above.
if [ "$(lists_fingerprint)" != "$LISTS_FP" ]; then
    LISTS_FP=$(lists_fingerprint)
    resolve_kernel
    KEY=$(cache_key)
fi

BUILD=$(mktemp -d "$OUTDIR.tmp.XXXXXX")
SCRATCH=$(mktemp -d /tmp/vmlet-guest-build.XXXXXX)
# apt-get download drops privileges to _apt when it can write here.
chmod 755 "$SCRATCH"
trap 'rm -rf "$BUILD" "$SCRATCH"' EXIT
# Plain bash skips the EXIT trap when killed; the scratch tree is ~400 MB.
trap 'exit 130' INT TERM HUP

# The kernel: fetch the .deb and unpack it, never install it (installing
# runs update-initramfs twice and takes minutes).
mkdir -p "$DEB_CACHE"
DEB=$DEB_CACHE/${KPKG}_${KVER//:/%3a}_amd64.deb
if [ ! -s "$DEB" ]; then
    log "downloading $KPKG $KVER"
    # apt-get download writes to the current directory.
    (cd "$SCRATCH" && apt-get download -q "$KPKG=$KVER" >&2)
    # Keep only the current kernel: each .deb is ~70 MB.
    rm -f "$DEB_CACHE/${KPKG%%-[0-9]*}"-*.deb
    mv "$SCRATCH"/*.deb "$DEB"
fi
log "unpacking $(basename "$DEB")"
dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$SCRATCH" --wildcards './boot/*' './lib/modules/*'
KREL=$(basename "$(ls -d "$SCRATCH"/lib/modules/*)")
cp "$SCRATCH/boot/vmlinuz-$KREL" "$BUILD/vmlinuz"
# The package ships no modules.dep (depmod runs at install time).
depmod -b "$SCRATCH" "$KREL"
MODDIR=$SCRATCH/lib/modules/$KREL

# ---------------------------------------------------------------- modules

declare -A MODPATH=() MODDEPS=() SEEN=()
# Parameter expansion, not basename: modules.dep has ~4000 lines.
while IFS=: read -r path deps; do
    name=${path##*/}
    name=${name%%.ko*}
    name=${name//-/_}
    MODPATH[$name]=$path
    MODDEPS[$name]=$deps
done <"$MODDIR/modules.dep"
BUILTIN=" $(sed 's#.*/##; s#\.ko$##; s#-#_#g' "$MODDIR/modules.builtin" | tr '\n' ' ') "

ORDER=()
# Depth-first so every module comes after all of its dependencies.
add_module() {
    local m=${1//-/_} d dn
    [ -n "${SEEN[$m]:-}" ] && return 0
    SEEN[$m]=1
    if [ -z "${MODPATH[$m]:-}" ]; then
        case "$BUILTIN" in
        *" $m "*) log "module $m is built in" ;;
        *) log "warning: module $m not in this kernel, skipped" ;;
        esac
        return 0
    fi
    for d in ${MODDEPS[$m]}; do
        dn=${d##*/}
        add_module "${dn%%.ko*}"
    done
    ORDER+=("$m")
}
for m in "${WANT_MODULES[@]}"; do add_module "$m"; done

# ---------------------------------------------------------------- initramfs

ROOT=$SCRATCH/initramfs
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt,etc,lib/modules}
cp /bin/busybox "$ROOT/bin/busybox"
# `busybox --list-full` names busybox itself; linking that would replace the
# binary with a self-loop and the kernel fails to run /init with -40 (ELOOP).
busybox --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done
install -m 0755 "$HERE/init" "$ROOT/init"
# The kernel opens /dev/console for /init before /init can mount devtmpfs.
mknod -m 600 "$ROOT/dev/console" c 5 1
for m in "${ORDER[@]}"; do
    src=$MODDIR/${MODPATH[$m]}
    # insmod in busybox does not decompress; store plain .ko files.
    case "$src" in
    *.ko) cp "$src" "$ROOT/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$src" >"$ROOT/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$ROOT/lib/modules/$m.ko" ;;
    *.ko.zst) ensure_packages zstd && zstd -qdc "$src" >"$ROOT/lib/modules/$m.ko" ;;
    *) die "unknown module format: $src" ;;
    esac
    echo "$m" >>"$ROOT/lib/modules/load-order"
done
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --quiet) | gzip -9 >"$BUILD/initrd.gz"

# ---------------------------------------------------------------- ISO

ISO=$SCRATCH/iso
mkdir -p "$ISO/isolinux"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$ISO/isolinux/"
cp "$HERE/isolinux.cfg" "$ISO/isolinux/isolinux.cfg"
cp "$BUILD/vmlinuz" "$BUILD/initrd.gz" "$ISO/"
# El Torito for CD boot; the isohybrid MBR lets the same image boot as a disk.
if ! xorriso -as mkisofs -o "$BUILD/guest.iso" -V VMLET_GUEST -J -r \
    -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
    -c isolinux/boot.cat -b isolinux/isolinux.bin \
    -no-emul-boot -boot-load-size 4 -boot-info-table \
    "$ISO" >"$SCRATCH/xorriso.log" 2>&1; then
    cat "$SCRATCH/xorriso.log" >&2
    die "xorriso failed"
fi

{
    echo "kernel_package=$KPKG $KVER"
    echo "kernel_release=$KREL"
    echo "modules=${ORDER[*]}"
    echo "busybox=$(dpkg-query -W -f='${Version}' busybox-static)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$BUILD/build-info"
printf 'key=%s\nkpkg=%s\nkver=%s\nlists=%s\n' "$KEY" "$KPKG" "$KVER" "$LISTS_FP" >"$BUILD/.stamp"
chmod 755 "$BUILD"

# Swap the finished tree in: the stamp only ever sits next to complete
# outputs. Directories cannot be renamed over non-empty ones, so move the
# old tree aside first; a crash between the two renames leaves no OUTDIR
# (rebuilt next time), never a half-written one.
if [ -e "$OUTDIR" ]; then
    OLD=$(mktemp -u "$OUTDIR.old.XXXXXX")
    mv -T "$OUTDIR" "$OLD"
    mv -T "$BUILD" "$OUTDIR"
    rm -rf "$OLD"
else
    mv -T "$BUILD" "$OUTDIR"
fi
ELAPSED_MS=$(((${EPOCHREALTIME/./} - START_US) / 1000))
log "built in $((ELAPSED_MS / 1000)).$(printf %03d $((ELAPSED_MS % 1000))) s: $(du -h "$OUTDIR/guest.iso" | cut -f1) ISO, modules: ${ORDER[*]}"
echo "$OUTDIR"
