#include "resource.h"

#include <string.h>

static const char *const vm_short[] = {"vm", "vms", NULL};
static const char *const vmbda_short[] = {"vmbda", "vmbdas", NULL};
static const char *const vmop_short[] = {"vmop", "vmops", NULL};

/* The CRDs' spec.names (deckhouse/virtualization, crds/virtualmachine*.yaml). */
static const VmletResource resources[] = {
    {VMLET_RES_VM, "VirtualMachine", "virtualmachines", "virtualmachine", vm_short},
    {VMLET_RES_VMBDA, "VirtualMachineBlockDeviceAttachment",
     "virtualmachineblockdeviceattachments", "virtualmachineblockdeviceattachment", vmbda_short},
    {VMLET_RES_VMOP, "VirtualMachineOperation", "virtualmachineoperations",
     "virtualmachineoperation", vmop_short},
};

static gboolean names(const VmletResource *r, const char *word)
{
  return g_str_equal(word, r->plural) || g_str_equal(word, r->singular) ||
         g_strv_contains(r->short_names, word);
}

const VmletResource *vmlet_resource_lookup(const char *word)
{
  /* kubectl also takes the group-qualified forms: virtualmachines.virtualization.deckhouse.io */
  g_autofree char *bare = g_str_has_suffix(word, VMLET_API_GROUP_SUFFIX)
                              ? g_strndup(word, strlen(word) - strlen(VMLET_API_GROUP_SUFFIX))
                              : g_strdup(word);
  for (gsize i = 0; i < G_N_ELEMENTS(resources); i++)
    if (names(&resources[i], bare))
      return &resources[i];
  return NULL;
}

const VmletResource *vmlet_resource_of_kind(const char *kind)
{
  for (gsize i = 0; kind && i < G_N_ELEMENTS(resources); i++)
    if (g_str_equal(kind, resources[i].kind))
      return &resources[i];
  return NULL;
}
