#include "hotplug.h"

#include <string.h>

#include "qemu-devices.h"
#include "slots.h"
#include "vmlet-error.h"

/* A QEMU reply lists at most this many devices or nodes; a VM has tens. */
#define PROBE_MAX_ENTRIES 4096

/* QEMU's messages for "already gone", as QMP reports them (class and desc, QEMU 7.2). */
static gboolean device_not_found(const GError *error)
{
  return g_error_matches(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_COMMAND) &&
         strstr(error->message, ": DeviceNotFound: ");
}

static gboolean node_not_found(const GError *error)
{
  return g_error_matches(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_COMMAND) &&
         strstr(error->message, "Failed to find node with node-name=");
}

/* ---- attach ---- */

enum { STEP_STORAGE, STEP_FORMAT, STEP_DEVICE, N_STEPS };

typedef struct {
  VmletQmp *qmp;
  char *file_node, *fmt_node;
  gboolean ok[N_STEPS];
  guint replies;
  GError *error;   /* the first failure */
  guint undo_left; /* rollback commands still unanswered */
} AttachData;

static void attach_data_free(gpointer p)
{
  AttachData *a = p;
  g_object_unref(a->qmp);
  g_free(a->file_node);
  g_free(a->fmt_node);
  g_clear_error(&a->error);
  g_free(a);
}

typedef struct {
  GTask *task;
  guint step;
} StepData;

static JsonObject *node_arg(const char *node)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "node-name", node);
  return o;
}

static void on_undone(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  AttachData *a = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (!ret && !node_not_found(error))
    g_prefix_error(&a->error, "(rolling back also failed: %s) ", error->message);
  if (--a->undo_left == 0)
    g_task_return_error(task, g_steal_pointer(&a->error));
}

static void undo(GTask *task, const char *node)
{
  AttachData *a = g_task_get_task_data(task);
  g_autoptr(JsonObject) args = node_arg(node);
  a->undo_left++;
  vmlet_qmp_execute_async(a->qmp, "blockdev-del", args, g_task_get_cancellable(task),
                          on_undone, g_object_ref(task));
}

static void on_attach_step(GObject *src, GAsyncResult *res, gpointer user_data)
{
  StepData *sd = user_data;
  g_autoptr(GTask) task = sd->task;
  guint step = sd->step;
  g_free(sd);
  AttachData *a = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  a->ok[step] = ret != NULL;
  if (!ret && !a->error)
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

static void send_step(GTask *task, guint step, const char *command, JsonObject *args)
{
  AttachData *a = g_task_get_task_data(task);
  StepData *sd = g_new0(StepData, 1);
  sd->task = g_object_ref(task);
  sd->step = step;
  vmlet_qmp_execute_async(a->qmp, command, args, g_task_get_cancellable(task), on_attach_step,
                          sd);
}

void vmlet_hotplug_attach_async(VmletQmp *qmp, const VmPlanDisk *disk,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_attach_async);
  AttachData *a = g_new0(AttachData, 1);
  a->qmp = g_object_ref(qmp);
  a->file_node = qdev_node_name(disk, "file");
  a->fmt_node = qdev_node_name(disk, "fmt");
  g_task_set_task_data(task, a, attach_data_free);
  g_autofree char *bus = vm_plan_hotplug_bus(disk);
  /* The same builders as -blockdev / -device at boot: a hot-plugged disk is exactly the
   * disk a restart creates. */
  g_autoptr(JsonObject) storage = qdev_blockdev_storage(disk);
  g_autoptr(JsonObject) format = qdev_blockdev_format(disk);
  g_autoptr(JsonObject) device = qdev_disk_device(disk, bus);
  send_step(task, STEP_STORAGE, "blockdev-add", storage);
  send_step(task, STEP_FORMAT, "blockdev-add", format);
  send_step(task, STEP_DEVICE, "device_add", device);
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
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  gboolean *gone = g_task_get_task_data(task);
  if (ret) {
    g_task_return_boolean(task, TRUE);
  } else if (device_not_found(error)) {
    *gone = TRUE;
    g_task_return_boolean(task, TRUE);
  } else {
    g_task_return_error(task, g_steal_pointer(&error));
  }
}

void vmlet_hotplug_unplug_async(VmletQmp *qmp, const char *device_id,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_unplug_async);
  g_task_set_task_data(task, g_new0(gboolean, 1), g_free);
  g_autoptr(JsonObject) args = json_object_new();
  json_object_set_string_member(args, "id", device_id);
  vmlet_qmp_execute_async(qmp, "device_del", args, cancellable, on_unplugged,
                          g_object_ref(task));
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
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (!ret && !node_not_found(error) && !r->error)
    r->error = g_steal_pointer(&error);
  if (--r->left > 0)
    return;
  if (r->error)
    g_task_return_error(task, g_steal_pointer(&r->error));
  else
    g_task_return_boolean(task, TRUE);
}

void vmlet_hotplug_release_async(VmletQmp *qmp, const VmPlanDisk *disk,
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
    g_autoptr(JsonObject) args = node_arg(node);
    vmlet_qmp_execute_async(qmp, "blockdev-del", args, cancellable, on_released,
                            g_object_ref(task));
  }
}

gboolean vmlet_hotplug_release_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

gboolean vmlet_hotplug_is_deleted(const char *event, JsonObject *data, const char *device_id)
{
  if (!g_str_equal(event, "DEVICE_DELETED") || !data)
    return FALSE;
  JsonNode *n = json_object_get_member(data, "device");
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING &&
         g_str_equal(json_node_get_string(n), device_id);
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
  VmletQmp *qmp;
  VmletHotplugProbe *probe;
  GHashTable *parents; /* qdev id -> parent_bus */
  guint left;          /* replies still to come */
  GError *error;
} ProbeData;

static void probe_data_free(gpointer p)
{
  ProbeData *d = p;
  g_object_unref(d->qmp);
  vmlet_hotplug_probe_free(d->probe);
  g_hash_table_unref(d->parents);
  g_clear_error(&d->error);
  g_free(d);
}

static const char *string_member(JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member(o, name);
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
             ? json_node_get_string(n)
             : NULL;
}

/* [{name, type}] of qom-list, or [{node-name, ...}] of query-named-block-nodes, into a
 * table of key -> value ("" for nodes). QEMU's reply is checked, not trusted. */
static gboolean read_list(JsonNode *ret, const char *what, const char *key, const char *value,
                          GHashTable *into, GError **error)
{
  JsonArray *arr = JSON_NODE_HOLDS_ARRAY(ret) ? json_node_get_array(ret) : NULL;
  if (!arr || json_array_get_length(arr) > PROBE_MAX_ENTRIES) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: expected a list of at most %d entries", what, PROBE_MAX_ENTRIES);
    return FALSE;
  }
  for (guint i = 0; i < json_array_get_length(arr); i++) {
    JsonNode *n = json_array_get_element(arr, i);
    if (!JSON_NODE_HOLDS_OBJECT(n))
      continue;
    JsonObject *o = json_node_get_object(n);
    const char *k = string_member(o, key);
    const char *v = value ? string_member(o, value) : "";
    if (k && v)
      g_hash_table_replace(into, g_strdup(k), g_strdup(v));
  }
  return TRUE;
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
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (ret && JSON_NODE_HOLDS_VALUE(ret) && json_node_get_value_type(ret) == G_TYPE_STRING)
    g_hash_table_replace(d->parents, g_steal_pointer(&id), g_strdup(json_node_get_string(ret)));
  else if (!ret && !d->error && !device_not_found(error))
    d->error = g_steal_pointer(&error);
  probe_done(task);
}

static void on_devices(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  ProbeData *d = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (ret)
    read_list(ret, "qom-list /machine/peripheral", "name", "type", d->probe->devices, &error);
  if (error && !d->error)
    d->error = g_steal_pointer(&error);
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
    g_autoptr(JsonObject) args = json_object_new();
    g_autofree char *path = g_strdup_printf("/machine/peripheral/%s", (const char *)k);
    json_object_set_string_member(args, "path", path);
    json_object_set_string_member(args, "property", "parent_bus");
    d->left++;
    vmlet_qmp_execute_async(d->qmp, "qom-get", args, g_task_get_cancellable(task), on_parent,
                            ps);
  }
  probe_done(task);
}

static void on_nodes(GObject *src, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  ProbeData *d = g_task_get_task_data(task);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (ret)
    read_list(ret, "query-named-block-nodes", "node-name", NULL, d->probe->nodes, &error);
  if (error && !d->error)
    d->error = g_steal_pointer(&error);
  probe_done(task);
}

void vmlet_hotplug_probe_async(VmletQmp *qmp, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_probe_async);
  ProbeData *d = g_new0(ProbeData, 1);
  d->qmp = g_object_ref(qmp);
  d->probe = g_new0(VmletHotplugProbe, 1);
  d->probe->devices = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  d->probe->nodes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  d->parents = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  d->left = 2;
  g_task_set_task_data(task, d, probe_data_free);
  g_autoptr(JsonObject) list = json_object_new();
  json_object_set_string_member(list, "path", "/machine/peripheral");
  vmlet_qmp_execute_async(qmp, "qom-list", list, cancellable, on_devices, g_object_ref(task));
  g_autoptr(JsonObject) flat = json_object_new();
  json_object_set_boolean_member(flat, "flat", TRUE);
  vmlet_qmp_execute_async(qmp, "query-named-block-nodes", flat, cancellable, on_nodes,
                          g_object_ref(task));
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
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (!ret) {
    g_task_return_error(task, g_steal_pointer(&error));
    return;
  }
  gint64 slot = -1;
  if (JSON_NODE_HOLDS_VALUE(ret)) {
    if (scsi && json_node_get_value_type(ret) == G_TYPE_INT64)
      slot = json_node_get_int(ret);
    else if (!scsi && json_node_get_value_type(ret) == G_TYPE_STRING)
      slot = vmlet_slots_port_of_bus(json_node_get_string(ret));
  }
  if (slot < 0 || slot >= 64) {
    g_task_return_new_error(task, VMLET_ERROR, VMLET_ERROR_INVALID,
                            "qom-get: the device's %s is not one vmlet uses",
                            scsi ? "scsi-id" : "parent_bus");
    return;
  }
  g_task_return_int(task, slot);
}

void vmlet_hotplug_locate_async(VmletQmp *qmp, const VmPlanDisk *disk,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_hotplug_locate_async);
  gboolean scsi = disk->bus == VM_DISK_BUS_SCSI;
  g_task_set_task_data(task, GINT_TO_POINTER(scsi), NULL);
  g_autoptr(JsonObject) args = json_object_new();
  g_autofree char *path = g_strdup_printf("/machine/peripheral/%s", disk->device_id);
  json_object_set_string_member(args, "path", path);
  json_object_set_string_member(args, "property", scsi ? "scsi-id" : "parent_bus");
  vmlet_qmp_execute_async(qmp, "qom-get", args, cancellable, on_located, g_object_ref(task));
}

gboolean vmlet_hotplug_locate_finish(GAsyncResult *result, guint *slot, GError **error)
{
  gssize n = g_task_propagate_int(G_TASK(result), error);
  if (n < 0)
    return FALSE;
  *slot = (guint)n;
  return TRUE;
}
