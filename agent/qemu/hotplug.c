#include "hotplug.h"

#include <string.h>

#include "qemu-devices.h"
#include "slots.h"
#include "vmlet-error.h"

#define device_not_found vmlet_monitor_error_is_device_not_found
#define node_not_found vmlet_monitor_error_is_node_not_found

/* ---- attach ---- */

enum { STEP_STORAGE, STEP_FORMAT, STEP_DEVICE, N_STEPS };

typedef struct {
  VmletMonitor *mon;
  char *file_node, *fmt_node;
  gboolean ok[N_STEPS];
  guint replies;
  GError *error;   /* the first failure */
  guint undo_left; /* rollback commands still unanswered */
} AttachData;

static void attach_data_free(gpointer p)
{
  AttachData *a = p;
  g_object_unref(a->mon);
  g_free(a->file_node);
  g_free(a->fmt_node);
  g_clear_error(&a->error);
  g_free(a);
}

typedef struct {
  GTask *task;
  guint step;
} StepData;

static void on_undone(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  AttachData *a = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  if (!vmlet_monitor_finish(VMLET_MONITOR(src), res, &error) && !node_not_found(error))
    g_prefix_error(&a->error, "(rolling back also failed: %s) ", error->message);
  if (--a->undo_left == 0)
    g_task_return_error(task, g_steal_pointer(&a->error));
}

static void undo(GTask *task, const char *node)
{
  AttachData *a = g_task_get_task_data(task);
  a->undo_left++;
  vmlet_monitor_blockdev_del(a->mon, node, g_task_get_cancellable(task), on_undone,
                             g_object_ref(task));
}

static void on_attach_step(GObject *src, GAsyncResult *res, gpointer user_data)
{
  StepData *sd = user_data;
  g_autoptr(GTask) task = sd->task;
  guint step = sd->step;
  g_free(sd);
  AttachData *a = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  a->ok[step] = vmlet_monitor_finish(VMLET_MONITOR(src), res, &error);
  if (!a->ok[step] && !a->error)
    a->error = g_steal_pointer(&error);
  if (++a->replies < N_STEPS)
    return;
  if (a->ok[STEP_STORAGE] && a->ok[STEP_FORMAT] && a->ok[STEP_DEVICE]) {
    g_task_return_boolean(task, TRUE);
    return;
  }
  /* device_add is last: when anything failed, no device exists, only nodes. Delete them
   * in reverse order (the format node holds the storage node). */
  if (a->ok[STEP_FORMAT])
    undo(task, a->fmt_node);
  if (a->ok[STEP_STORAGE])
    undo(task, a->file_node);
  if (a->undo_left == 0)
    g_task_return_error(task, g_steal_pointer(&a->error));
}

static void send_step(GTask *task, guint step, JsonObject *props)
{
  AttachData *a = g_task_get_task_data(task);
  StepData *sd = g_new0(StepData, 1);
  sd->task = g_object_ref(task);
  sd->step = step;
  GCancellable *c = g_task_get_cancellable(task);
  if (step == STEP_DEVICE)
    vmlet_monitor_device_add(a->mon, props, c, on_attach_step, sd);
  else
    vmlet_monitor_blockdev_add(a->mon, props, c, on_attach_step, sd);
}

void vmlet_hotplug_attach_async(VmletMonitor *mon, const VmPlanDisk *disk,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_attach_async);
  AttachData *a = g_new0(AttachData, 1);
  a->mon = g_object_ref(mon);
  a->file_node = qdev_node_name(disk, "file");
  a->fmt_node = qdev_node_name(disk, "fmt");
  g_task_set_task_data(task, a, attach_data_free);
  g_autofree char *bus = vm_plan_disk_bus(disk);
  /* The same builders as -blockdev / -device at boot: a hot-plugged disk is exactly the
   * disk a restart creates. */
  g_autoptr(JsonObject) storage = qdev_blockdev_storage(disk);
  g_autoptr(JsonObject) format = qdev_blockdev_format(disk);
  g_autoptr(JsonObject) device = qdev_disk_device(disk, bus);
  send_step(task, STEP_STORAGE, storage);
  send_step(task, STEP_FORMAT, format);
  send_step(task, STEP_DEVICE, device);
}

gboolean vmlet_hotplug_attach_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

/* ---- detach ---- */

static void on_unplugged(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  gboolean *gone = g_task_get_task_data(task);
  if (vmlet_monitor_finish(VMLET_MONITOR(src), res, &error)) {
    g_task_return_boolean(task, TRUE);
  } else if (device_not_found(error)) {
    *gone = TRUE;
    g_task_return_boolean(task, TRUE);
  } else {
    g_task_return_error(task, g_steal_pointer(&error));
  }
}

void vmlet_hotplug_unplug_async(VmletMonitor *mon, const char *device_id,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_unplug_async);
  g_task_set_task_data(task, g_new0(gboolean, 1), g_free);
  vmlet_monitor_device_del(mon, device_id, cancellable, on_unplugged, g_object_ref(task));
}

gboolean vmlet_hotplug_unplug_finish(GAsyncResult *result, gboolean *gone, GError **error)
{
  GTask *task = G_TASK(result);
  gboolean ok = g_task_propagate_boolean(task, error);
  if (ok && gone)
    *gone = *(gboolean *)g_task_get_task_data(task);
  return ok;
}

typedef struct {
  guint left;
  GError *error;
} ReleaseData;

static void release_data_free(gpointer p)
{
  ReleaseData *r = p;
  g_clear_error(&r->error);
  g_free(r);
}

static void on_released(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  ReleaseData *r = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  if (!vmlet_monitor_finish(VMLET_MONITOR(src), res, &error) && !node_not_found(error) &&
      !r->error)
    r->error = g_steal_pointer(&error);
  if (--r->left > 0)
    return;
  if (r->error)
    g_task_return_error(task, g_steal_pointer(&r->error));
  else
    g_task_return_boolean(task, TRUE);
}

void vmlet_hotplug_release_async(VmletMonitor *mon, const VmPlanDisk *disk,
                                 GCancellable *cancellable, GAsyncReadyCallback callback,
                                 gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_release_async);
  ReleaseData *r = g_new0(ReleaseData, 1);
  r->left = 2;
  g_task_set_task_data(task, r, release_data_free);
  /* Format node first: it holds the storage node. */
  const char *suffixes[] = {"fmt", "file"};
  for (guint i = 0; i < G_N_ELEMENTS(suffixes); i++) {
    g_autofree char *node = qdev_node_name(disk, suffixes[i]);
    vmlet_monitor_blockdev_del(mon, node, cancellable, on_released, g_object_ref(task));
  }
}

gboolean vmlet_hotplug_release_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

/* ---- probe ---- */

void vmlet_hotplug_probe_free(VmletHotplugProbe *p)
{
  if (!p)
    return;
  g_clear_pointer(&p->devices, g_hash_table_unref);
  g_clear_pointer(&p->nodes, g_hash_table_unref);
  g_free(p);
}

typedef struct {
  VmletMonitor *mon;
  VmletHotplugProbe *probe;
  GHashTable *parents; /* qdev id -> parent_bus */
  guint left;          /* replies still to come */
  GError *error;
} ProbeData;

static void probe_data_free(gpointer p)
{
  ProbeData *d = p;
  g_object_unref(d->mon);
  vmlet_hotplug_probe_free(d->probe);
  g_hash_table_unref(d->parents);
  g_clear_error(&d->error);
  g_free(d);
}

static void probe_done(GTask *task)
{
  ProbeData *d = g_task_get_task_data(task);
  if (--d->left > 0)
    return;
  if (d->error) {
    g_task_return_error(task, g_steal_pointer(&d->error));
    return;
  }
  d->probe->free_ports = vmlet_slots_free_ports(d->probe->devices, d->parents);
  g_task_return_pointer(task, g_steal_pointer(&d->probe),
                        (GDestroyNotify)vmlet_hotplug_probe_free);
}

typedef struct {
  GTask *task;
  char *id;
} ParentStep;

static void on_parent(GObject *src, GAsyncResult *res, gpointer user_data)
{
  ParentStep *ps = user_data;
  g_autoptr(GTask) task = ps->task;
  g_autofree char *id = ps->id;
  g_free(ps);
  ProbeData *d = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  char *bus = vmlet_monitor_qom_get_string_finish(VMLET_MONITOR(src), res, &error);
  if (bus)
    g_hash_table_replace(d->parents, g_steal_pointer(&id), bus);
  else if (!d->error && !device_not_found(error))
    d->error = g_steal_pointer(&error);
  probe_done(task);
}

static void on_devices(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  ProbeData *d = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  GHashTable *devices = vmlet_monitor_qom_list_finish(VMLET_MONITOR(src), res, &error);
  if (devices) {
    g_hash_table_unref(d->probe->devices);
    d->probe->devices = devices;
  } else if (!d->error) {
    d->error = g_steal_pointer(&error);
  }
  /* Where each device sits (query-pci cannot tell before the firmware numbers the buses):
   * one qom-get parent_bus per device, sent back to back. */
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, d->probe->devices);
  while (!d->error && g_hash_table_iter_next(&it, &k, &v)) {
    if (!g_str_has_prefix(v, "child<") || g_str_equal(v, "child<pcie-root-port>"))
      continue;
    ParentStep *ps = g_new0(ParentStep, 1);
    ps->task = g_object_ref(task);
    ps->id = g_strdup(k);
    g_autofree char *path = g_strdup_printf("/machine/peripheral/%s", (const char *)k);
    d->left++;
    vmlet_monitor_qom_get(d->mon, path, "parent_bus", g_task_get_cancellable(task), on_parent,
                          ps);
  }
  probe_done(task);
}

static void on_nodes(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  ProbeData *d = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  GHashTable *nodes = vmlet_monitor_query_block_nodes_finish(VMLET_MONITOR(src), res, &error);
  if (nodes) {
    g_hash_table_unref(d->probe->nodes);
    d->probe->nodes = nodes;
  } else if (!d->error) {
    d->error = g_steal_pointer(&error);
  }
  probe_done(task);
}

static GHashTable *string_table(void)
{
  return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
}

void vmlet_hotplug_probe_async(VmletMonitor *mon, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_probe_async);
  ProbeData *d = g_new0(ProbeData, 1);
  d->mon = g_object_ref(mon);
  d->probe = g_new0(VmletHotplugProbe, 1);
  d->probe->devices = string_table();
  d->probe->nodes = string_table();
  d->parents = string_table();
  d->left = 2;
  g_task_set_task_data(task, d, probe_data_free);
  vmlet_monitor_qom_list(mon, "/machine/peripheral", cancellable, on_devices,
                         g_object_ref(task));
  vmlet_monitor_query_block_nodes(mon, cancellable, on_nodes, g_object_ref(task));
}

VmletHotplugProbe *vmlet_hotplug_probe_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer(G_TASK(result), error);
}

/* ---- locate ---- */

static void on_located(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  gboolean scsi = GPOINTER_TO_INT(g_task_get_task_data(task));
  VmletMonitor *mon = VMLET_MONITOR(src);
  g_autoptr(GError) error = NULL;
  gint64 slot = -1;
  gboolean ok;
  if (scsi) {
    ok = vmlet_monitor_qom_get_int_finish(mon, res, &slot, &error);
  } else {
    g_autofree char *bus = vmlet_monitor_qom_get_string_finish(mon, res, &error);
    ok = bus != NULL;
    slot = bus ? vmlet_slots_port_of_bus(bus) : -1;
  }
  if (!ok) {
    g_task_return_error(task, g_steal_pointer(&error));
    return;
  }
  if (slot < 0 || slot >= 64) {
    g_task_return_new_error(task, VMLET_ERROR, VMLET_ERROR_INVALID,
                            "qom-get: the device's %s is not one vmlet uses",
                            scsi ? "scsi-id" : "parent_bus");
    return;
  }
  g_task_return_int(task, slot);
}

void vmlet_hotplug_locate_async(VmletMonitor *mon, const VmPlanDisk *disk,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_locate_async);
  gboolean scsi = disk->bus == VM_DISK_BUS_SCSI;
  g_task_set_task_data(task, GINT_TO_POINTER(scsi), NULL);
  g_autofree char *path = g_strdup_printf("/machine/peripheral/%s", disk->device_id);
  vmlet_monitor_qom_get(mon, path, scsi ? "scsi-id" : "parent_bus", cancellable, on_located,
                        g_object_ref(task));
}

gboolean vmlet_hotplug_locate_finish(GAsyncResult *result, guint *slot, GError **error)
{
  gssize n = g_task_propagate_int(G_TASK(result), error);
  if (n < 0)
    return FALSE;
  *slot = (guint)n;
  return TRUE;
}
