/* Spec file -> QEMU argv, the way `vmlet render` and the daemon see a VM: with the node's
 * classes (qemu-profiles + classes.d) and its disk and image drop-ins. */
#pragma once

#include <glib.h>

#include "node.h"
#include "objects.h"
#include "plan.h"

/* Loads classes from node->profiles_dir and <config-dir>/classes.d, disks from
 * <config-dir>/disks.d, images from <config-dir>/images.d and Secrets from
 * <config-dir>/secrets.d. Broken drop-ins are reported
 * in problems (if not NULL) and skipped. */
VmletInventory *vmlet_node_inventory(const VmletNode *node, GPtrArray *problems,
                                     GPtrArray *warnings);

/* Parses the VM document in data (it may be a List that also carries the VM's disks and
 * images), resolves it against inv and node, and returns its plan. */
VmPlan *vmlet_plan_document(const VmletNode *node, VmletInventory *inv, const char *source,
                            const char *data, gsize len, GPtrArray *warnings, GError **error);
