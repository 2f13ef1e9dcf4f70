/* One VM's VirtualMachineBlockDeviceAttachments against QEMU's devices (attachctl.h);
 * attachctl-private.h lists the files. */
#include "attachctl-private.h"

#include <string.h>

#include "slots.h"

const char *const hot_state_names[HOT_N_STATES] = {"Attaching", "Attached", "Detaching",
                                                   "Releasing"};

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletAttachCtl, vmlet_attach_ctl, G_TYPE_OBJECT)


static void entry_free(gpointer p)
{
  HotEntry *e = p;
  g_clear_handle_id(&e->timer, g_source_remove);
  vmlet_attachment_unref(e->att);
  vm_plan_disk_free(e->disk);
  g_free(e->message);
  g_free(e);
}

void ctl_set_message(HotEntry *e, const char *message)
{
  char *copy = g_strdup(message);
  g_free(e->message);
  e->message = copy;
}

static void vmlet_attach_ctl_finalize(GObject *obj)
{
  VmletAttachCtl *ctl = VMLET_ATTACH_CTL(obj);
  vmlet_attach_ctl_deactivate(ctl);
  g_clear_handle_id(&ctl->recheck, g_source_remove);
  g_free(ctl->namespace);
  g_free(ctl->vm_name);
  g_clear_pointer(&ctl->spec, vm_spec_unref);
  g_free(ctl->not_running);
  g_ptr_array_unref(ctl->desired);
  g_hash_table_unref(ctl->conflicts);
  g_hash_table_unref(ctl->failures);
  g_hash_table_unref(ctl->waiting);
  g_hash_table_unref(ctl->entries);
  g_hash_table_unref(ctl->first_seen);
  g_hash_table_unref(ctl->last_slots);
  G_OBJECT_CLASS(vmlet_attach_ctl_parent_class)->finalize(obj);
}

static void vmlet_attach_ctl_class_init(VmletAttachCtlClass *klass)
{
  G_OBJECT_CLASS(klass)->finalize = vmlet_attach_ctl_finalize;
  signals[SIGNAL_CHANGED] = g_signal_new("changed", VMLET_TYPE_ATTACH_CTL, G_SIGNAL_RUN_LAST, 0,
                                         NULL, NULL, NULL, G_TYPE_NONE, 0);
}

GHashTable *ctl_problem_table(void)
{
  return g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                               (GDestroyNotify)vmbda_problem_free);
}

static void vmlet_attach_ctl_init(VmletAttachCtl *ctl)
{
  ctl->desired = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_attachment_unref);
  ctl->conflicts = ctl_problem_table();
  ctl->failures = ctl_problem_table();
  ctl->waiting = ctl_problem_table();
  ctl->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
  ctl->first_seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  ctl->last_slots = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

VmletAttachCtl *vmlet_attach_ctl_new(const char *namespace, const char *vm_name,
                                     const VmletNode *node, VmletInventory **inv)
{
  VmletAttachCtl *ctl = g_object_new(VMLET_TYPE_ATTACH_CTL, NULL);
  ctl->namespace = g_strdup(namespace);
  ctl->vm_name = g_strdup(vm_name);
  ctl->node = node;
  ctl->inv = inv;
  return ctl;
}

void ctl_changed(VmletAttachCtl *ctl)
{
  ctl->dirty = FALSE;
  g_signal_emit(ctl, signals[SIGNAL_CHANGED], 0);
}

/* Why name is not plugged yet (takes p); marks a change only when the why changed, so a
 * periodic recheck that finds the same reason reports nothing. */
void ctl_set_waiting(VmletAttachCtl *ctl, const char *name, VmbdaProblem *p)
{
  const VmbdaProblem *old = g_hash_table_lookup(ctl->waiting, name);
  if (!old || old->reason != p->reason || g_strcmp0(old->message, p->message) != 0)
    ctl->dirty = TRUE;
  g_hash_table_replace(ctl->waiting, g_strdup(name), p);
}

void ctl_clear_waiting(VmletAttachCtl *ctl, const char *name)
{
  if (g_hash_table_remove(ctl->waiting, name))
    ctl->dirty = TRUE;
}

VmletAttachment *ctl_find_desired(VmletAttachCtl *ctl, const char *name)
{
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *a = ctl->desired->pdata[i];
    if (g_str_equal(a->meta.name, name))
      return a;
  }
  return NULL;
}

gboolean ctl_active(VmletAttachCtl *ctl)
{
  return ctl->mon && ctl->probed && !ctl->not_running && !vmlet_monitor_is_closed(ctl->mon);
}

/* ---- context ---- */

void vmlet_attach_ctl_set_vm(VmletAttachCtl *ctl, VmSpec *spec, const char *not_running)
{
  if (spec != ctl->spec) {
    g_clear_pointer(&ctl->spec, vm_spec_unref);
    ctl->spec = spec ? vm_spec_ref(spec) : NULL;
  }
  if (g_strcmp0(not_running, ctl->not_running) != 0) {
    g_free(ctl->not_running);
    ctl->not_running = g_strdup(not_running);
  }
  ctl_reconcile(ctl);
}

void ctl_explain_detach(VmletAttachCtl *ctl, HotEntry *e)
{
  if (e->state != HOT_DETACHING)
    return;
  if (ctl->paused)
    ctl_set_message(e, "the VM is paused: the guest releases the device only when it runs again "
                   "(vmlet unpause); waiting for QEMU's DEVICE_DELETED");
  else if (e->timed_out)
    ctl_set_message(e, "the guest has not released the device within "
                   G_STRINGIFY(VMLET_DETACH_WAIT_S) " s of device_del; waiting for QEMU's "
                   "DEVICE_DELETED");
  else
    ctl_set_message(e, NULL);
}

void vmlet_attach_ctl_set_confine(VmletAttachCtl *ctl, const VmletConfine *confine)
{
  ctl->confine = confine;
}

void vmlet_attach_ctl_set_paused(VmletAttachCtl *ctl, gboolean paused)
{
  if (ctl->paused == paused)
    return;
  ctl->paused = paused;
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (g_hash_table_iter_next(&it, NULL, &v))
    ctl_explain_detach(ctl, v);
  ctl_changed(ctl);
}

void vmlet_attach_ctl_set_desired(VmletAttachCtl *ctl, GPtrArray *attachments,
                                  GHashTable *conflicts, gboolean retry)
{
  g_ptr_array_set_size(ctl->desired, 0);
  gint64 now = g_get_real_time();
  for (guint i = 0; i < attachments->len; i++) {
    VmletAttachment *a = attachments->pdata[i];
    g_ptr_array_add(ctl->desired, vmlet_attachment_ref(a));
    if (!g_hash_table_contains(ctl->first_seen, a->meta.name))
      g_hash_table_insert(ctl->first_seen, g_strdup(a->meta.name), g_memdup2(&now, sizeof(now)));
  }
  g_hash_table_remove_all(ctl->conflicts);
  if (conflicts) {
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, conflicts);
    while (g_hash_table_iter_next(&it, &k, &v)) {
      const VmbdaProblem *p = v;
      g_hash_table_insert(ctl->conflicts, g_strdup(k),
                          vmbda_problem_new(p->reason, "%s", p->message));
    }
  }
  /* Forget what is no longer asked for; keep a refusal only until the inputs change. */
  GHashTableIter it;
  gpointer k;
  g_hash_table_iter_init(&it, ctl->failures);
  while (g_hash_table_iter_next(&it, &k, NULL))
    if (retry || !ctl_find_desired(ctl, k))
      g_hash_table_iter_remove(&it);
  g_hash_table_iter_init(&it, ctl->first_seen);
  while (g_hash_table_iter_next(&it, &k, NULL))
    if (!ctl_find_desired(ctl, k) && !g_hash_table_contains(ctl->entries, k))
      g_hash_table_iter_remove(&it);
  ctl_reconcile(ctl);
  ctl_changed(ctl);
}

/* ---- reconcile ---- */

static gboolean on_recheck(gpointer data)
{
  VmletAttachCtl *ctl = data;
  ctl->recheck = 0;
  ctl->recheck_due = TRUE;
  ctl_reconcile(ctl);
  ctl->recheck_due = FALSE;
  if (ctl->dirty)
    ctl_changed(ctl);
  return G_SOURCE_REMOVE;
}

void ctl_reconcile(VmletAttachCtl *ctl)
{
  if (!ctl_active(ctl))
    return;
  gboolean retry_later = FALSE;
  /* Detach what is no longer wanted (or wanted with another disk: detach, then attach). */
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    HotEntry *e = g_hash_table_lookup(ctl->entries, name);
    if (e->busy)
      continue;
    VmletAttachment *want = ctl_find_desired(ctl, name);
    gboolean wanted = want && vmlet_attachment_same_spec(want, e->att);
    if (e->state == HOT_ATTACHED && !wanted) {
      ctl_start_detach(ctl, name, e);
      ctl->dirty = TRUE;
    } else if (e->retry && e->state == HOT_DETACHING) {
      if (ctl->recheck_due)
        ctl_start_detach(ctl, name, e);
      retry_later = TRUE;
    } else if (e->retry && e->state == HOT_RELEASING) {
      if (ctl->recheck_due)
        ctl_start_release(ctl, name, e);
      retry_later = TRUE;
    }
  }
  /* Attach what is wanted and not plugged, in name order. */
  g_autoptr(GPtrArray) others = ctl_holders(ctl);
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *att = ctl->desired->pdata[i];
    if (g_hash_table_contains(ctl->entries, att->meta.name))
      continue;
    g_autoptr(VmPlanDisk) disk = ctl_ready_disk(ctl, att, others);
    if (!disk) {
      VmbdaProblem *p = g_hash_table_lookup(ctl->waiting, att->meta.name);
      retry_later = retry_later || (p && p->reason == VMBDA_REASON_BLOCK_NOT_READY);
      continue;
    }
    guint64 taken = 0;
    gboolean scsi = disk->bus == VM_DISK_BUS_SCSI;
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, ctl->entries);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
      const VmPlanDisk *d = ((HotEntry *)v)->disk;
      if ((d->bus == VM_DISK_BUS_SCSI) == scsi && d->slot < 64)
        taken |= G_GUINT64_CONSTANT(1) << d->slot;
    }
    gpointer kept = g_hash_table_lookup(ctl->last_slots, att->meta.name);
    guint64 candidates = scsi ? VMLET_SCSI_IDS : ctl->ports;
    gint slot = -1;
    if (kept && GPOINTER_TO_UINT(kept) - 1 < 64 &&
        (candidates & ~taken & (G_GUINT64_CONSTANT(1) << (GPOINTER_TO_UINT(kept) - 1))))
      slot = (gint)GPOINTER_TO_UINT(kept) - 1;
    if (slot < 0)
      slot = vmlet_slot_lowest(candidates, taken);
    if (slot < 0) {
      ctl_set_waiting(ctl, att->meta.name,
                  vmbda_problem_new(VMBDA_REASON_CAPACITY_REACHED,
                                    "no free %s in VirtualMachine \"%s\"",
                                    scsi ? "SCSI id on scsi0" : "hotplug port", ctl->vm_name));
      continue;
    }
    disk->slot = (guint)slot;
    ctl_start_attach(ctl, att, g_steal_pointer(&disk));
    g_ptr_array_add(others, att);
    ctl->dirty = TRUE;
  }
  if (retry_later && !ctl->recheck)
    ctl->recheck = g_timeout_add(VMLET_ATTACH_RECHECK_MS, on_recheck, ctl);
}

