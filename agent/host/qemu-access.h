/* What QEMU's unprivileged user may open: exactly the files of its own VM.
 *
 * Disks QEMU writes become owned by that user, mode 0600; images it only reads are given
 * to its group, mode 0640; the VM's run directory (QEMU creates its sockets there), seed
 * ISO and NVRAM belong to it. Nothing is left readable by others. Every directory on the
 * way must let the user through; when one does not, the error says which and why, instead
 * of QEMU's bare "Permission denied" in its log. */
#pragma once

#include <glib.h>

#include "confine.h"

/* One file (a hot-plugged disk or image): what, e.g. "VirtualDisk \"blank\"", names it in
 * errors. */
gboolean vmlet_qemu_access_grant_file(const char *path, gboolean writable, const char *what,
                                      const VmletConfine *c, GError **error);

/* A directory QEMU's user must only pass through (e.g. <run-dir>/vms): group-owned by
 * its group, mode 0710. */
gboolean vmlet_qemu_access_traverse_dir(const char *dir, const VmletConfine *c, GError **error);

/* A directory of the VM's own (its run directory): owned by QEMU's user, mode 0700. */
gboolean vmlet_qemu_access_own_dir(const char *dir, const VmletConfine *c, GError **error);
