#include "mig-error.h"

G_DEFINE_QUARK(vmlet-mig-error-quark, vmlet_mig_error)

static const struct {
  const char *reason;
  guint status;
} table[] = {
    [VMLET_MIG_ERROR_UNSCHEDULABLE] = {"TargetUnschedulable", 409},
    [VMLET_MIG_ERROR_DISK] = {"TargetDiskError", 409},
    [VMLET_MIG_ERROR_BUSY] = {"OtherMigrationInProgress", 409},
    [VMLET_MIG_ERROR_ABORTED] = {"Aborted", 409},
    [VMLET_MIG_ERROR_NOT_FOUND] = {"NotFound", 404},
    [VMLET_MIG_ERROR_FORBIDDEN] = {"Forbidden", 403},
    [VMLET_MIG_ERROR_INVALID] = {"Invalid", 422},
};

const char *vmlet_mig_error_reason(VmletMigError code)
{
  return table[code].reason;
}

guint vmlet_mig_error_status(VmletMigError code)
{
  return table[code].status;
}
