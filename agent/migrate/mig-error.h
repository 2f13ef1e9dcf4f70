/* Why a migration step was refused, as DVP names it (the reason of the Evict or Migrate
 * operation and of the peer API's answer). */
#pragma once

#include <glib.h>

#define VMLET_MIG_ERROR (vmlet_mig_error_quark())
GQuark vmlet_mig_error_quark(void);

typedef enum {
  VMLET_MIG_ERROR_UNSCHEDULABLE, /* TargetUnschedulable: the node cannot take the VM */
  VMLET_MIG_ERROR_DISK,          /* TargetDiskError: a disk cannot be placed or copied */
  VMLET_MIG_ERROR_BUSY,          /* OtherMigrationInProgress */
  VMLET_MIG_ERROR_ABORTED,       /* Aborted: given up, or unknown to this node */
  VMLET_MIG_ERROR_NOT_FOUND,     /* no such migration */
  VMLET_MIG_ERROR_FORBIDDEN,     /* the caller is not this migration's peer */
  VMLET_MIG_ERROR_INVALID,       /* the request does not parse */
} VmletMigError;

const char *vmlet_mig_error_reason(VmletMigError code);
/* The HTTP status the peer API answers it with. */
guint vmlet_mig_error_status(VmletMigError code);
