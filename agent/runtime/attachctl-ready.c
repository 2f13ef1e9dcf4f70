/* Whether an attachment can be plugged now, and what a start brings back in its argv. */
#include "attachctl-private.h"

#include <string.h>

#include "slots.h"

/* ---- readiness ---- */

static gboolean file_exists(const VmPlanDisk *disk)
{
  return g_file_test(disk->path, G_FILE_TEST_EXISTS);
}

/* The attachments already holding a device of this VM, in the order they got it. */
GPtrArray *ctl_holders(VmletAttachCtl *ctl)
{
  GPtrArray *out = g_ptr_array_new();
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_ptr_array_add(out, ((HotEntry *)v)->att);
  return out;
}

/* The disk att would plug now, or NULL with why not (in ctl->waiting). */
VmPlanDisk *ctl_ready_disk(VmletAttachCtl *ctl, VmletAttachment *att, GPtrArray *others)
{
  const char *name = att->meta.name;
  VmbdaProblem *p = g_hash_table_lookup(ctl->conflicts, name);
  if (!p)
    p = g_hash_table_lookup(ctl->failures, name);
  if (p) {
    ctl_set_waiting(ctl, name, vmbda_problem_new(p->reason, "%s", p->message));
    return NULL;
  }
  VmletBlockObject *obj = vmlet_inventory_block(*ctl->inv, att->kind, att->meta.namespace,
                                                att->block_name);
  if (!obj) {
    ctl_set_waiting(ctl, name,
                att->kind == VM_BLOCK_CLUSTER_VIRTUAL_IMAGE
                    ? vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY,
                                        "ClusterVirtualImage \"%s\" not found", att->block_name)
                    : vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY,
                                        "%s \"%s\" not found in namespace \"%s\"",
                                        vm_block_kind_name(att->kind), att->block_name,
                                        att->meta.namespace));
    return NULL;
  }
  VmbdaProblem *check = vmlet_slots_check(ctl->spec, others, att);
  if (check) {
    ctl_set_waiting(ctl, name, check);
    return NULL;
  }
  g_autoptr(VmPlanDisk) disk = vm_plan_attachment_disk(ctl->node, obj, name);
  if (!file_exists(disk)) {
    ctl_set_waiting(ctl, name,
                vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY, "%s \"%s\": %s does not exist",
                                  vm_block_kind_name(att->kind), att->block_name, disk->path));
    return NULL;
  }
  ctl_clear_waiting(ctl, name);
  return g_steal_pointer(&disk);
}

/* ---- start ---- */

void vmlet_attach_ctl_plan(VmletAttachCtl *ctl, VmPlan *plan)
{
  /* A start is a fresh chance for what QEMU refused before. */
  g_hash_table_remove_all(ctl->failures);
  g_autoptr(GPtrArray) ready = g_ptr_array_new();
  g_autoptr(GPtrArray) empty = g_ptr_array_new();
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *att = ctl->desired->pdata[i];
    /* Limits and duplicates are checked by the placement, among the ready ones. */
    g_autoptr(VmPlanDisk) disk = ctl_ready_disk(ctl, att, empty);
    if (disk)
      g_ptr_array_add(ready, att);
  }
  g_autoptr(GHashTable) left_out = ctl_problem_table();
  vmlet_slots_place(plan, ready, *ctl->inv, ctl->node, ctl->last_slots, left_out);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, left_out);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    const VmbdaProblem *p = v;
    ctl_set_waiting(ctl, k, vmbda_problem_new(p->reason, "%s", p->message));
  }
}

HotEntry *ctl_add_entry(VmletAttachCtl *ctl, VmletAttachment *att, VmPlanDisk *disk,
                           HotState state)
{
  HotEntry *e = g_new0(HotEntry, 1);
  e->att = vmlet_attachment_ref(att);
  e->disk = disk;
  e->state = state;
  gint64 *seen = g_hash_table_lookup(ctl->first_seen, att->meta.name);
  e->created_us = seen ? *seen : g_get_real_time();
  g_hash_table_replace(ctl->entries, g_strdup(att->meta.name), e);
  g_hash_table_remove(ctl->waiting, att->meta.name);
  g_hash_table_replace(ctl->last_slots, g_strdup(att->meta.name),
                       GUINT_TO_POINTER(disk->slot + 1));
  return e;
}

void vmlet_attach_ctl_started(VmletAttachCtl *ctl, const VmPlan *plan)
{
  for (guint i = 0; i < plan->hotplugged->len; i++) {
    const VmPlanDisk *d = plan->hotplugged->pdata[i];
    VmletAttachment *att = ctl_find_desired(ctl, d->attachment);
    if (!att)
      continue;
    VmPlanDisk *copy = g_new0(VmPlanDisk, 1);
    *copy = *d;
    copy->device_id = g_strdup(d->device_id);
    copy->node_prefix = g_strdup(d->node_prefix);
    copy->name = g_strdup(d->name);
    copy->path = g_strdup(d->path);
    copy->attachment = g_strdup(d->attachment);
    /* In QEMU's argv, confirmed by the probe once QMP is up. */
    ctl_add_entry(ctl, att, copy, HOT_ATTACHING);
  }
  ctl_changed(ctl);
}


void ctl_remove_entry(VmletAttachCtl *ctl, const char *key)
{
  /* key may be the table's own key, freed by the removal. */
  g_autofree char *name = g_strdup(key);
  g_hash_table_remove(ctl->entries, name);
  if (!ctl_find_desired(ctl, name))
    g_hash_table_remove(ctl->first_seen, name);
}

