/* One device's QMP operations (hotplug.c) and their results, and taking over a QEMU:
 * its devices and block nodes read and squared with the record before anything is sent. */
#include "attachctl-private.h"

#include <string.h>

#include "hotplug.h"
#include "qemu-access.h"
#include "qemu-devices.h"

/* ---- operations ---- */

Op *ctl_op_new(VmletAttachCtl *ctl, const char *name, HotEntry *e)
{
  Op *op = g_new0(Op, 1);
  op->ctl = g_object_ref(ctl);
  op->name = g_strdup(name);
  e->gen = ++ctl->next_gen;
  e->busy = TRUE;
  op->gen = e->gen;
  return op;
}

void ctl_op_free(Op *op)
{
  g_object_unref(op->ctl);
  g_free(op->name);
  g_free(op);
}

HotEntry *ctl_op_entry(Op *op, const GError *error)
{
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return NULL;
  HotEntry *e = g_hash_table_lookup(op->ctl->entries, op->name);
  if (!e || e->gen != op->gen)
    return NULL;
  e->busy = FALSE;
  return e;
}


static void on_attached(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = vmlet_hotplug_attach_finish(res, &error);
  HotEntry *e = ctl_op_entry(op, error);
  if (!e)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (ok) {
    e->state = HOT_ATTACHED;
    ctl_set_message(e, NULL);
    g_hash_table_remove(ctl->failures, op->name);
  } else {
    /* Rolled back by hotplug.c: nothing of it is left in QEMU. */
    g_hash_table_replace(ctl->failures, g_strdup(op->name),
                         vmbda_problem_new(VMBDA_REASON_HOTPLUG_FAILED,
                                           "QEMU refused the device (rolled back): %s",
                                           error->message));
    ctl_remove_entry(ctl, op->name);
  }
  ctl_reconcile(ctl);
  ctl_changed(ctl);
}

void ctl_start_attach(VmletAttachCtl *ctl, VmletAttachment *att, VmPlanDisk *disk)
{
  /* QEMU opens the file itself, as its own unprivileged user. */
  g_autoptr(GError) error = NULL;
  g_autofree char *what = g_strdup_printf("%s \"%s\"", vm_block_kind_name(disk->kind),
                                          disk->name);
  if (ctl->confine &&
      !vmlet_qemu_access_grant_file(disk->path, !disk->read_only, what, ctl->confine, &error)) {
    g_hash_table_replace(ctl->failures, g_strdup(att->meta.name),
                         vmbda_problem_new(VMBDA_REASON_HOTPLUG_FAILED, "%s", error->message));
    vm_plan_disk_free(disk);
    return;
  }
  HotEntry *e = ctl_add_entry(ctl, att, disk, HOT_ATTACHING);
  /* Not persisted: after a crash QEMU says whether it made it (on_probed). */
  vmlet_hotplug_attach_async(ctl->mon, e->disk, ctl->cancel, on_attached,
                             ctl_op_new(ctl, att->meta.name, e));
}

static gboolean on_detach_overdue(gpointer data)
{
  Op *op = data;
  HotEntry *e = g_hash_table_lookup(op->ctl->entries, op->name);
  if (e && e->gen == op->gen && e->state == HOT_DETACHING) {
    e->timer = 0;
    e->timed_out = TRUE;
    ctl_explain_detach(op->ctl, e);
    ctl_changed(op->ctl);
  }
  return G_SOURCE_REMOVE;
}

static void on_unplugged(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  gboolean gone = FALSE;
  gboolean ok = vmlet_hotplug_unplug_finish(res, &gone, &error);
  HotEntry *e = ctl_op_entry(op, error);
  if (!e || e->state != HOT_DETACHING)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (ok && gone) {
    ctl_start_release(ctl, op->name, e);
  } else if (!ok) {
    /* Retried by the recheck timer; the guest may still be handling an earlier request. */
    g_autofree char *m = g_strdup_printf("device_del failed, retrying: %s", error->message);
    ctl_set_message(e, m);
    e->retry = TRUE;
    ctl_reconcile(ctl);
    ctl_changed(ctl);
  } else {
    /* Accepted: now the guest must let go. Say so if it takes long; keep waiting. */
    g_clear_handle_id(&e->timer, g_source_remove);
    Op *wait = g_new0(Op, 1);
    wait->ctl = g_object_ref(ctl);
    wait->name = g_strdup(op->name);
    wait->gen = e->gen;
    e->timer = g_timeout_add_seconds_full(G_PRIORITY_DEFAULT, VMLET_DETACH_WAIT_S,
                                          on_detach_overdue, wait, (GDestroyNotify)ctl_op_free);
    ctl_explain_detach(ctl, e);
    ctl_changed(ctl);
  }
}

void ctl_start_detach(VmletAttachCtl *ctl, const char *name, HotEntry *e)
{
  g_clear_handle_id(&e->timer, g_source_remove);
  e->state = HOT_DETACHING;
  e->timed_out = FALSE;
  e->retry = FALSE;
  ctl_explain_detach(ctl, e);
  vmlet_hotplug_unplug_async(ctl->mon, e->disk->device_id, ctl->cancel, on_unplugged,
                             ctl_op_new(ctl, name, e));
}

static void on_released(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = vmlet_hotplug_release_finish(res, &error);
  HotEntry *e = ctl_op_entry(op, error);
  if (!e)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (!ok) {
    g_autofree char *m = g_strdup_printf("blockdev-del failed, retrying: %s", error->message);
    ctl_set_message(e, m);
    e->retry = TRUE;
    ctl_reconcile(ctl);
    ctl_changed(ctl);
    return;
  }
  ctl_remove_entry(ctl, op->name);
  ctl_reconcile(ctl);
  ctl_changed(ctl);
}

/* Only once the device is gone: blockdev-del of a node in use fails. */
void ctl_start_release(VmletAttachCtl *ctl, const char *name, HotEntry *e)
{
  g_clear_handle_id(&e->timer, g_source_remove);
  e->state = HOT_RELEASING;
  e->retry = FALSE;
  ctl_set_message(e, NULL);
  vmlet_hotplug_release_async(ctl->mon, e->disk, ctl->cancel, on_released,
                              ctl_op_new(ctl, name, e));
}

static void on_device_deleted(VmletMonitor *mon, const char *device, const char *path,
                              VmletAttachCtl *ctl)
{
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (device && g_hash_table_iter_next(&it, &k, &v)) {
    HotEntry *e = v;
    if (e->state == HOT_RELEASING || !g_str_equal(device, e->disk->device_id))
      continue;
    /* The guest let go (of a device we asked for, or one it ejected by itself). The
     * device_del reply may still be on its way: the event is what counts. */
    g_autofree char *name = g_strdup(k);
    ctl_start_release(ctl, name, e);
    ctl_changed(ctl);
    return;
  }
}

/* ---- taking over a QEMU ---- */

static void on_located(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  guint slot = 0;
  gboolean ok = vmlet_hotplug_locate_finish(res, &slot, &error);
  HotEntry *e = ctl_op_entry(op, error);
  if (!e)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (ok) {
    e->disk->slot = slot;
    if (e->disk->bus == VM_DISK_BUS_VIRTIO && slot < 64)
      ctl->ports |= G_GUINT64_CONSTANT(1) << slot;
    e->state = HOT_ATTACHED;
  } else {
    /* Plugged by us, but not where vmlet would put it: take it out again. */
    ctl_start_detach(ctl, op->name, e);
  }
  ctl_reconcile(ctl);
  ctl_changed(ctl);
}

static void on_probed(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletAttachCtl) ctl = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletHotplugProbe) probe = vmlet_hotplug_probe_finish(res, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !ctl->mon)
    return;
  if (!probe) {
    /* QEMU is going away, or answers in a way vmlet does not understand: act on nothing. */
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, ctl->entries);
    while (g_hash_table_iter_next(&it, NULL, &v))
      ctl_set_message(v, error->message);
    ctl_changed(ctl);
    return;
  }
  ctl->ports = probe->free_ports;
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    HotEntry *e = g_hash_table_lookup(ctl->entries, name);
    const VmPlanDisk *d = e->disk;
    g_autofree char *fmt = qdev_node_name(d, "fmt"), *file = qdev_node_name(d, "file");
    if (g_hash_table_contains(probe->devices, d->device_id)) {
      if (d->bus == VM_DISK_BUS_VIRTIO && d->slot < 64)
        ctl->ports |= G_GUINT64_CONSTANT(1) << d->slot;
      switch (e->state) {
      case HOT_ATTACHING:
      case HOT_ATTACHED:
        e->state = HOT_ATTACHED;
        break;
      case HOT_DETACHING:
      case HOT_RELEASING:
        /* Ask again: a device_del sent by the previous vmletd may be lost. */
        ctl_start_detach(ctl, name, e);
        break;
      }
    } else if (g_hash_table_contains(probe->nodes, fmt) ||
               g_hash_table_contains(probe->nodes, file)) {
      ctl_start_release(ctl, name, e); /* the device is gone, its nodes are not */
    } else {
      ctl_remove_entry(ctl, name);
    }
  }
  /* A device QEMU has for a wanted attachment that the record lacks (vmletd died between
   * device_add and saving the record): adopt it rather than plug it twice. Nodes of an
   * attachment without a device (died between blockdev-add and device_add): remove them
   * first, or blockdev-add would fail on the duplicate node names. */
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *att = ctl->desired->pdata[i];
    if (g_hash_table_contains(ctl->entries, att->meta.name))
      continue;
    VmletBlockObject *obj = vmlet_inventory_block(*ctl->inv, att->kind, att->meta.namespace,
                                                  att->block_name);
    if (!obj)
      continue;
    VmPlanDisk *disk = vm_plan_attachment_disk(ctl->node, obj, att->meta.name);
    g_autofree char *fmt = qdev_node_name(disk, "fmt"), *file = qdev_node_name(disk, "file");
    gboolean in_refs = FALSE;
    for (guint j = 0; ctl->spec && j < ctl->spec->block_devices->len; j++) {
      const VmBlockDeviceRef *ref = ctl->spec->block_devices->pdata[j];
      in_refs = in_refs || (ref->kind == att->kind && g_str_equal(ref->name, att->block_name));
    }
    if (!in_refs && g_hash_table_contains(probe->devices, disk->device_id)) {
      HotEntry *e = ctl_add_entry(ctl, att, disk, HOT_ATTACHING);
      vmlet_hotplug_locate_async(ctl->mon, e->disk, ctl->cancel, on_located,
                                 ctl_op_new(ctl, att->meta.name, e));
    } else if (!in_refs && (g_hash_table_contains(probe->nodes, fmt) ||
                            g_hash_table_contains(probe->nodes, file))) {
      HotEntry *e = ctl_add_entry(ctl, att, disk, HOT_RELEASING);
      e->cleanup = TRUE;
      ctl_start_release(ctl, att->meta.name, e);
    } else {
      vm_plan_disk_free(disk);
    }
  }
  ctl->probed = TRUE;
  ctl_reconcile(ctl);
  ctl_changed(ctl);
}

void vmlet_attach_ctl_activate(VmletAttachCtl *ctl, VmletMonitor *mon)
{
  if (ctl->mon == mon)
    return;
  if (ctl->mon) {
    g_cancellable_cancel(ctl->cancel);
    g_clear_object(&ctl->cancel);
    g_clear_signal_handler(&ctl->event_id, ctl->mon);
    g_clear_object(&ctl->mon);
  }
  ctl->mon = g_object_ref(mon);
  ctl->cancel = g_cancellable_new();
  ctl->probed = FALSE;
  ctl->event_id = g_signal_connect(mon, "device-deleted", G_CALLBACK(on_device_deleted), ctl);
  vmlet_hotplug_probe_async(mon, ctl->cancel, on_probed, g_object_ref(ctl));
}

void vmlet_attach_ctl_deactivate(VmletAttachCtl *ctl)
{
  if (ctl->cancel) {
    g_cancellable_cancel(ctl->cancel);
    g_clear_object(&ctl->cancel);
  }
  if (ctl->mon) {
    g_clear_signal_handler(&ctl->event_id, ctl->mon);
    g_clear_object(&ctl->mon);
  }
  ctl->probed = FALSE;
  ctl->ports = 0;
  g_clear_handle_id(&ctl->recheck, g_source_remove);
  if (g_hash_table_size(ctl->entries) == 0)
    return;
  /* Every device went with QEMU. Attachments whose object is gone are now gone too. */
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  for (GList *l = names; l; l = l->next)
    ctl_remove_entry(ctl, l->data);
  ctl_changed(ctl);
}

