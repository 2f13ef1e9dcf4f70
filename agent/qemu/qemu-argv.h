/* The QEMU command line for a VM plan: a pure function, golden-tested. */
#pragma once

#include <glib.h>

#include "plan.h"

/* The sandbox QEMU applies to itself on top of vmlet's own confinement. spawn=deny means the
 * agent must never use anything that makes QEMU fork (e.g. `migrate exec:`). */
#define VMLET_QEMU_SANDBOX "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

/* argv[0] is the QEMU binary. NULL-terminated; free with g_strfreev. */
GStrv vm_qemu_argv(const VmPlan *plan);
