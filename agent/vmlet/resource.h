/* The kinds the CLI reaches through vmletd's API, and the words kubectl accepts for each
 * (get vmop, delete virtualmachineoperation, ...): one table, read by get, delete, create
 * and apply. */
#pragma once

#include <glib.h>

#define VMLET_API_GROUP_SUFFIX ".virtualization.deckhouse.io"

typedef enum {
  VMLET_RES_VM,
  VMLET_RES_VMBDA,
  VMLET_RES_VMOP,
} VmletResId;

typedef struct {
  VmletResId id;
  const char *kind;               /* "VirtualMachineOperation" */
  const char *plural;             /* "virtualmachineoperations": the API's path */
  const char *singular;           /* "virtualmachineoperation": kubectl's messages */
  const char *const *short_names; /* the CRD's shortNames: "vmop", "vmops" */
} VmletResource;

/* A resource by any of kubectl's words for it: a short name, the singular, the plural,
 * each also with VMLET_API_GROUP_SUFFIX; NULL when none. */
const VmletResource *vmlet_resource_lookup(const char *word);
/* A resource by its kind ("VirtualMachine"); NULL when the API does not serve the kind. */
const VmletResource *vmlet_resource_of_kind(const char *kind);
