#include "monitor-private.h"

#include <string.h>

#include "jsonval.h"

struct _VmletMonitor {
  GObject parent;
  VmletQmp *qmp;
  gulong event_id, closed_id;
};

enum {
  SIGNAL_SHUTDOWN,
  SIGNAL_STOP,
  SIGNAL_RESUME,
  SIGNAL_DEVICE_DELETED,
  SIGNAL_MIGRATION,
  SIGNAL_BLOCK_JOB_READY,
  SIGNAL_JOB_STATUS,
  SIGNAL_CLOSED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletMonitor, vmlet_monitor, G_TYPE_OBJECT)

static const char *const run_state_names[] = {
    [VMLET_RUN_STATE_OTHER] = "other",
    [VMLET_RUN_STATE_PRELAUNCH] = "prelaunch",
    [VMLET_RUN_STATE_RUNNING] = "running",
    [VMLET_RUN_STATE_PAUSED] = "paused",
    [VMLET_RUN_STATE_SHUTDOWN] = "shutdown",
    [VMLET_RUN_STATE_INMIGRATE] = "inmigrate",
    [VMLET_RUN_STATE_POSTMIGRATE] = "postmigrate",
    [VMLET_RUN_STATE_FINISH_MIGRATE] = "finish-migrate",
};

static const char *const migration_names[] = {
    [VMLET_MIGRATION_NONE] = "none",
    [VMLET_MIGRATION_SETUP] = "setup",
    [VMLET_MIGRATION_ACTIVE] = "active",
    [VMLET_MIGRATION_PRE_SWITCHOVER] = "pre-switchover",
    [VMLET_MIGRATION_DEVICE] = "device",
    [VMLET_MIGRATION_COMPLETED] = "completed",
    [VMLET_MIGRATION_FAILED] = "failed",
    [VMLET_MIGRATION_CANCELLING] = "cancelling",
    [VMLET_MIGRATION_CANCELLED] = "cancelled",
    [VMLET_MIGRATION_OTHER] = "other",
};

const char *vmlet_run_state_name(VmletRunState state)
{
  return run_state_names[state];
}

const char *vmlet_migration_status_name(VmletMigrationStatus status)
{
  return migration_names[status];
}

guint monitor_lookup(const char *const *names, guint n, const char *name, guint fallback)
{
  for (guint i = 0; name && i < n; i++)
    if (names[i] && g_str_equal(names[i], name))
      return i;
  return fallback;
}

/* ---- events: a table from QEMU's name to a typed signal ---- */

static void emit_shutdown(VmletMonitor *mon, JsonObject *data)
{
  const char *reason = jv_string_at(data, "reason");
  g_signal_emit(mon, signals[SIGNAL_SHUTDOWN], 0, jv_bool_at(data, "guest", FALSE),
                reason ? reason : "");
}

static void emit_stop(VmletMonitor *mon, JsonObject *data)
{
  g_signal_emit(mon, signals[SIGNAL_STOP], 0);
}

static void emit_resume(VmletMonitor *mon, JsonObject *data)
{
  g_signal_emit(mon, signals[SIGNAL_RESUME], 0);
}

static void emit_device_deleted(VmletMonitor *mon, JsonObject *data)
{
  const char *path = jv_string_at(data, "path");
  g_signal_emit(mon, signals[SIGNAL_DEVICE_DELETED], 0, jv_string_at(data, "device"),
                path ? path : "");
}

VmletMigrationStatus monitor_migration_status(const char *name)
{
  return monitor_lookup(migration_names, G_N_ELEMENTS(migration_names), name,
                        VMLET_MIGRATION_OTHER);
}

static void emit_migration(VmletMonitor *mon, JsonObject *data)
{
  g_signal_emit(mon, signals[SIGNAL_MIGRATION], 0,
                (gint)monitor_migration_status(jv_string_at(data, "status")));
}

static void emit_block_job_ready(VmletMonitor *mon, JsonObject *data)
{
  const char *device = jv_string_at(data, "device");
  if (device)
    g_signal_emit(mon, signals[SIGNAL_BLOCK_JOB_READY], 0, device);
}

static void emit_job_status(VmletMonitor *mon, JsonObject *data)
{
  const char *id = jv_string_at(data, "id"), *status = jv_string_at(data, "status");
  if (id && status)
    g_signal_emit(mon, signals[SIGNAL_JOB_STATUS], 0, id, status);
}

static const struct {
  const char *name;
  void (*emit)(VmletMonitor *mon, JsonObject *data);
} events[] = {
    {"SHUTDOWN", emit_shutdown},
    {"STOP", emit_stop},
    {"RESUME", emit_resume},
    {"DEVICE_DELETED", emit_device_deleted},
    {"MIGRATION", emit_migration},
    {"BLOCK_JOB_READY", emit_block_job_ready},
    {"JOB_STATUS_CHANGE", emit_job_status},
};

static void on_event(VmletQmp *qmp, const char *name, JsonObject *data, gint64 ts,
                     VmletMonitor *mon)
{
  for (gsize i = 0; i < G_N_ELEMENTS(events); i++)
    if (g_str_equal(events[i].name, name)) {
      events[i].emit(mon, data);
      return;
    }
}

static void on_closed(VmletQmp *qmp, const GError *error, VmletMonitor *mon)
{
  g_signal_emit(mon, signals[SIGNAL_CLOSED], 0, error);
}

/* ---- the object ---- */

static void vmlet_monitor_dispose(GObject *obj)
{
  VmletMonitor *mon = VMLET_MONITOR(obj);
  if (mon->qmp) {
    g_clear_signal_handler(&mon->event_id, mon->qmp);
    g_clear_signal_handler(&mon->closed_id, mon->qmp);
    vmlet_qmp_close(mon->qmp);
    g_clear_object(&mon->qmp);
  }
  G_OBJECT_CLASS(vmlet_monitor_parent_class)->dispose(obj);
}

static void vmlet_monitor_class_init(VmletMonitorClass *klass)
{
  G_OBJECT_CLASS(klass)->dispose = vmlet_monitor_dispose;
  GType t = VMLET_TYPE_MONITOR;
  signals[SIGNAL_SHUTDOWN] = g_signal_new("shutdown", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                          G_TYPE_NONE, 2, G_TYPE_BOOLEAN, G_TYPE_STRING);
  signals[SIGNAL_STOP] = g_signal_new("stop", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                      G_TYPE_NONE, 0);
  signals[SIGNAL_RESUME] = g_signal_new("resume", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                        G_TYPE_NONE, 0);
  signals[SIGNAL_DEVICE_DELETED] =
      g_signal_new("device-deleted", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 2,
                   G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_MIGRATION] = g_signal_new("migration", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                           NULL, G_TYPE_NONE, 1, G_TYPE_INT);
  signals[SIGNAL_BLOCK_JOB_READY] =
      g_signal_new("block-job-ready", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                   1, G_TYPE_STRING);
  signals[SIGNAL_JOB_STATUS] = g_signal_new("job-status", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                            NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_CLOSED] = g_signal_new("closed", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                        G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void vmlet_monitor_init(VmletMonitor *mon)
{
}

VmletMonitor *vmlet_monitor_new(VmletQmp *qmp)
{
  VmletMonitor *mon = g_object_new(VMLET_TYPE_MONITOR, NULL);
  mon->qmp = g_object_ref(qmp);
  mon->event_id = g_signal_connect(qmp, "event", G_CALLBACK(on_event), mon);
  mon->closed_id = g_signal_connect(qmp, "closed", G_CALLBACK(on_closed), mon);
  return mon;
}

static void on_connected(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(GTask) task = data;
  GError *error = NULL;
  g_autoptr(VmletQmp) qmp = vmlet_qmp_connect_finish(res, &error);
  if (!qmp)
    g_task_return_error(task, error);
  else
    g_task_return_pointer(task, vmlet_monitor_new(qmp), g_object_unref);
}

void vmlet_monitor_connect_async(const char *socket_path, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_monitor_connect_async);
  vmlet_qmp_connect_async(socket_path, cancellable, on_connected, task);
}

VmletMonitor *vmlet_monitor_connect_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer(G_TASK(result), error);
}

gboolean vmlet_monitor_is_closed(VmletMonitor *mon)
{
  return vmlet_qmp_is_closed(mon->qmp);
}

void vmlet_monitor_close(VmletMonitor *mon)
{
  vmlet_qmp_close(mon->qmp);
}

const char *vmlet_monitor_get_version(VmletMonitor *mon)
{
  return vmlet_qmp_get_version(mon->qmp);
}

/* ---- commands ---- */

const Reply monitor_reply_empty = {REPLY_EMPTY, NULL, NULL};

static void return_table(GTask *task, JsonNode *ret, const Reply *r, const char *command)
{
  JsonArray *arr = JSON_NODE_HOLDS_ARRAY(ret) ? json_node_get_array(ret) : NULL;
  if (!arr || json_array_get_length(arr) > VMLET_MONITOR_MAX_ENTRIES) {
    g_task_return_new_error(task, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                            "%s: expected a list of at most %d entries", command,
                            VMLET_MONITOR_MAX_ENTRIES);
    return;
  }
  GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  for (guint i = 0; i < json_array_get_length(arr); i++) {
    JsonNode *n = json_array_get_element(arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
    const char *k = jv_string_at(o, r->key);
    const char *v = r->value ? jv_string_at(o, r->value) : "";
    if (k && v)
      g_hash_table_replace(t, g_strdup(k), g_strdup(v));
  }
  g_task_return_pointer(task, t, (GDestroyNotify)g_hash_table_unref);
}

static void return_reply(GTask *task, JsonNode *ret, const Reply *r, const char *command)
{
  switch (r->kind) {
  case REPLY_EMPTY:
    g_task_return_boolean(task, TRUE);
    return;
  case REPLY_STATUS: {
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;
    const char *status = jv_string_at(o, "status");
    if (!status) {
      g_task_return_new_error(task, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                              "%s: reply without a status", command);
      return;
    }
    VmletRunStatus *st = g_new0(VmletRunStatus, 1);
    st->state = monitor_lookup(run_state_names, G_N_ELEMENTS(run_state_names), status,
                       VMLET_RUN_STATE_OTHER);
    st->running = jv_bool_at(o, "running", FALSE);
    g_task_return_pointer(task, st, g_free);
    return;
  }
  case REPLY_NAMED:
    return_table(task, ret, r, command);
    return;
  case REPLY_VALUE:
    if (!JSON_NODE_HOLDS_VALUE(ret)) {
      g_task_return_new_error(task, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                              "%s: expected a value", command);
      return;
    }
    g_task_return_pointer(task, json_node_copy(ret), (GDestroyNotify)json_node_unref);
    return;
  case REPLY_ARRAY:
    if (!JSON_NODE_HOLDS_ARRAY(ret) ||
        json_array_get_length(json_node_get_array(ret)) > VMLET_MONITOR_MAX_ENTRIES) {
      g_task_return_new_error(task, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                              "%s: expected a list of at most %d entries", command,
                              VMLET_MONITOR_MAX_ENTRIES);
      return;
    }
    g_task_return_pointer(task, json_node_copy(ret), (GDestroyNotify)json_node_unref);
    return;
  case REPLY_OBJECT:
    if (!JSON_NODE_HOLDS_OBJECT(ret)) {
      g_task_return_new_error(task, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                              "%s: expected an object", command);
      return;
    }
    g_task_return_pointer(task, json_node_copy(ret), (GDestroyNotify)json_node_unref);
    return;
  }
}

typedef struct {
  GTask *task;
  const Reply *reply;
  const char *command; /* static */
} Call;

static void on_reply(GObject *src, GAsyncResult *res, gpointer data)
{
  Call *c = data;
  g_autoptr(GTask) task = c->task;
  const Reply *r = c->reply;
  const char *command = c->command;
  g_free(c);
  GError *error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (!ret)
    g_task_return_error(task, error);
  else
    return_reply(task, ret, r, command);
}

void monitor_call(VmletMonitor *mon, gpointer tag, const char *command, JsonObject *args,
                  const Reply *reply, GCancellable *cancellable, GAsyncReadyCallback callback,
                  gpointer user_data)
{
  Call *c = g_new0(Call, 1);
  c->task = g_task_new(mon, cancellable, callback, user_data);
  g_task_set_source_tag(c->task, tag);
  c->reply = reply;
  c->command = command;
  vmlet_qmp_execute_async(mon->qmp, command, args, cancellable, on_reply, c);
}

JsonObject *monitor_args1(const char *key, const char *value)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, key, value);
  return o;
}

void vmlet_monitor_cont(VmletMonitor *mon, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data)
{
  monitor_call(mon, vmlet_monitor_finish, "cont", NULL, &monitor_reply_empty, cancellable, callback, user_data);
}

void vmlet_monitor_stop(VmletMonitor *mon, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data)
{
  monitor_call(mon, vmlet_monitor_finish, "stop", NULL, &monitor_reply_empty, cancellable, callback, user_data);
}

void vmlet_monitor_system_powerdown(VmletMonitor *mon, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data)
{
  monitor_call(mon, vmlet_monitor_finish, "system_powerdown", NULL, &monitor_reply_empty, cancellable, callback,
       user_data);
}

void vmlet_monitor_quit(VmletMonitor *mon, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data)
{
  monitor_call(mon, vmlet_monitor_finish, "quit", NULL, &monitor_reply_empty, cancellable, callback, user_data);
}

void vmlet_monitor_blockdev_add(VmletMonitor *mon, JsonObject *props, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data)
{
  monitor_call(mon, vmlet_monitor_finish, "blockdev-add", props, &monitor_reply_empty, cancellable, callback,
       user_data);
}

void vmlet_monitor_blockdev_del(VmletMonitor *mon, const char *node_name,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_autoptr(JsonObject) args = monitor_args1("node-name", node_name);
  monitor_call(mon, vmlet_monitor_finish, "blockdev-del", args, &monitor_reply_empty, cancellable, callback,
       user_data);
}

void vmlet_monitor_device_add(VmletMonitor *mon, JsonObject *props, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data)
{
  monitor_call(mon, vmlet_monitor_finish, "device_add", props, &monitor_reply_empty, cancellable, callback,
       user_data);
}

void vmlet_monitor_device_del(VmletMonitor *mon, const char *id, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) args = monitor_args1("id", id);
  monitor_call(mon, vmlet_monitor_finish, "device_del", args, &monitor_reply_empty, cancellable, callback,
       user_data);
}

gboolean vmlet_monitor_finish(VmletMonitor *mon, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), FALSE);
  return g_task_propagate_boolean(G_TASK(result), error);
}

gboolean vmlet_monitor_error_is_device_not_found(const GError *error)
{
  return g_error_matches(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_COMMAND) &&
         strstr(error->message, ": DeviceNotFound: ");
}

gboolean vmlet_monitor_error_is_node_not_found(const GError *error)
{
  return g_error_matches(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_COMMAND) &&
         strstr(error->message, "Failed to find node with node-name=");
}
