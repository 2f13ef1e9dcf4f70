#include "render.h"

#include "slots.h"
#include "vmlet-error.h"

VmletInventory *vmlet_node_inventory(const VmletNode *node, GPtrArray *problems,
                                     GPtrArray *warnings)
{
  g_autoptr(GPtrArray) sink = g_ptr_array_new_with_free_func(g_free);
  if (!problems)
    problems = sink;
  VmletInventory *inv = vmlet_inventory_new();
  vmlet_inventory_load_dir(inv, node->profiles_dir, problems, warnings);
  static const char *const subdirs[] = {"classes.d", "disks.d", "images.d", "secrets.d",
                                        "attachments.d"};
  for (gsize i = 0; i < G_N_ELEMENTS(subdirs); i++) {
    g_autofree char *dir = g_build_filename(node->config_dir, subdirs[i], NULL);
    vmlet_inventory_load_dir(inv, dir, problems, warnings);
  }
  return inv;
}

VmPlan *vmlet_plan_document(const VmletNode *node, VmletInventory *inv, const char *source,
                            const char *data, gsize len, GPtrArray *warnings, GError **error)
{
  g_autoptr(GPtrArray) objs = vmlet_objects_parse(source, data, len, warnings, error);
  if (!objs)
    return NULL;
  VmSpec *vm = NULL;
  for (guint i = 0; i < objs->len; i++) {
    VmletObject *o = objs->pdata[i];
    if (o->kind != VMLET_KIND_VIRTUAL_MACHINE) {
      vmlet_inventory_add(inv, o);
      continue;
    }
    if (vm) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: expected one VirtualMachine, found several (\"%s\" and \"%s\")", source,
                  vm->meta.name, o->vm->meta.name);
      return NULL;
    }
    vm = o->vm;
  }
  if (!vm) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: expected a VirtualMachine, found none", source);
    return NULL;
  }
  g_autoptr(VmletDiag) d = vmlet_diag_new(source);
  g_autoptr(VmPlan) plan = vm_plan_build(vm, inv, node, d);
  if (warnings) {
    g_auto(GStrv) lines = vmlet_diag_warning_lines(d);
    for (guint i = 0; lines[i]; i++)
      g_ptr_array_add(warnings, g_strdup(lines[i]));
  }
  if (!vmlet_diag_check(d, error))
    return NULL;
  /* The VM's VirtualMachineBlockDeviceAttachments (the node's, and any in the document)
   * as a start brings them back: after the controllers, outside the boot order. */
  g_autoptr(GPtrArray) atts = vmlet_inventory_attachments(inv);
  g_autoptr(GHashTable) left_out = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                         (GDestroyNotify)vmbda_problem_free);
  vmlet_slots_place(plan, atts, inv, node, NULL, left_out);
  for (guint i = 0; warnings && i < atts->len; i++) {
    const VmletAttachment *att = atts->pdata[i];
    const VmbdaProblem *p = g_hash_table_lookup(left_out, att->meta.name);
    if (p && g_str_equal(att->meta.namespace, vm->meta.namespace) &&
        g_str_equal(att->vm_name, vm->meta.name))
      g_ptr_array_add(warnings,
                      g_strdup_printf("%s: VirtualMachineBlockDeviceAttachment \"%s\" left out: %s",
                                      source, att->meta.name, p->message));
  }
  return g_steal_pointer(&plan);
}
