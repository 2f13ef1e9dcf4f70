#include "monitor-private.h"

#include "jsonval.h"
#include "monitor-migrate.h"

static void empty(VmletMonitor *mon, const char *command, JsonObject *args,
                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  monitor_call(mon, vmlet_monitor_finish, command, args, &monitor_reply_empty, cancellable,
               callback, user_data);
}

void vmlet_monitor_add_tls_creds(VmletMonitor *mon, const char *id, const char *dir,
                                 gboolean server, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("qom-type", "tls-creds-x509");
  json_object_set_string_member(a, "id", id);
  json_object_set_string_member(a, "dir", dir);
  json_object_set_string_member(a, "endpoint", server ? "server" : "client");
  json_object_set_boolean_member(a, "verify-peer", TRUE);
  empty(mon, "object-add", a, cancellable, callback, user_data);
}

void vmlet_monitor_add_authz(VmletMonitor *mon, const char *id, const char *dn,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("qom-type", "authz-list");
  json_object_set_string_member(a, "id", id);
  json_object_set_string_member(a, "policy", "deny");
  JsonObject *rule = monitor_args1("match", dn);
  json_object_set_string_member(rule, "policy", "allow");
  json_object_set_string_member(rule, "format", "exact");
  JsonArray *rules = json_array_new();
  json_array_add_object_element(rules, rule);
  json_object_set_array_member(a, "rules", rules);
  empty(mon, "object-add", a, cancellable, callback, user_data);
}

void vmlet_monitor_object_del(VmletMonitor *mon, const char *id, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("id", id);
  empty(mon, "object-del", a, cancellable, callback, user_data);
}

void vmlet_monitor_migrate_set_capabilities(VmletMonitor *mon, const VmletMigrationCap *caps,
                                            guint n_caps, GCancellable *cancellable,
                                            GAsyncReadyCallback callback, gpointer user_data)
{
  JsonArray *list = json_array_new();
  for (guint i = 0; i < n_caps; i++) {
    JsonObject *c = monitor_args1("capability", caps[i].name);
    json_object_set_boolean_member(c, "state", caps[i].on);
    json_array_add_object_element(list, c);
  }
  g_autoptr(JsonObject) a = json_object_new();
  json_object_set_array_member(a, "capabilities", list);
  empty(mon, "migrate-set-capabilities", a, cancellable, callback, user_data);
}

static void set_int(JsonObject *a, const char *name, gint64 value)
{
  if (value >= 0)
    json_object_set_int_member(a, name, value);
}

static void set_str(JsonObject *a, const char *name, const char *value)
{
  if (value)
    json_object_set_string_member(a, name, value);
}

void vmlet_monitor_migrate_set_parameters(VmletMonitor *mon, const VmletMigrationParams *p,
                                          GCancellable *cancellable,
                                          GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) a = json_object_new();
  set_str(a, "tls-creds", p->tls_creds);
  set_str(a, "tls-hostname", p->tls_hostname);
  set_str(a, "tls-authz", p->tls_authz);
  set_int(a, "max-bandwidth", p->max_bandwidth);
  set_int(a, "downtime-limit", p->downtime_limit);
  set_int(a, "multifd-channels", p->multifd_channels);
  set_int(a, "cpu-throttle-initial", p->cpu_throttle_initial);
  set_int(a, "cpu-throttle-increment", p->cpu_throttle_increment);
  empty(mon, "migrate-set-parameters", a, cancellable, callback, user_data);
}

void vmlet_monitor_migrate(VmletMonitor *mon, const char *uri, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("uri", uri);
  empty(mon, "migrate", a, cancellable, callback, user_data);
}

void vmlet_monitor_migrate_incoming(VmletMonitor *mon, const char *uri,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("uri", uri);
  empty(mon, "migrate-incoming", a, cancellable, callback, user_data);
}

void vmlet_monitor_migrate_continue(VmletMonitor *mon, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("state", "pre-switchover");
  empty(mon, "migrate-continue", a, cancellable, callback, user_data);
}

void vmlet_monitor_migrate_cancel(VmletMonitor *mon, GCancellable *cancellable,
                                  GAsyncReadyCallback callback, gpointer user_data)
{
  empty(mon, "migrate_cancel", NULL, cancellable, callback, user_data);
}

/* ---- query-migrate ---- */

void vmlet_migration_info_clear(VmletMigrationInfo *info)
{
  g_clear_pointer(&info->error_desc, g_free);
}

void vmlet_monitor_query_migrate(VmletMonitor *mon, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  static const Reply r = {REPLY_OBJECT, NULL, NULL};
  monitor_call(mon, vmlet_monitor_query_migrate, "query-migrate", NULL, &r, cancellable,
               callback, user_data);
}

static guint64 uint_at(JsonObject *o, const char *member)
{
  gint64 v = jv_int_at(o, member, 0);
  return v > 0 ? (guint64)v : 0;
}

gboolean vmlet_monitor_query_migrate_finish(VmletMonitor *mon, GAsyncResult *result,
                                            VmletMigrationInfo *out, GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), FALSE);
  g_autoptr(JsonNode) n = g_task_propagate_pointer(G_TASK(result), error);
  if (!n)
    return FALSE;
  JsonObject *o = json_node_get_object(n);
  JsonObject *ram = jv_object_at(o, "ram");
  /* Before any migration QEMU answers {}: status "none". */
  const char *status = jv_string_at(o, "status");
  const char *error_desc = jv_string_at(o, "error-desc");
  JsonNode *mbps = ram ? json_object_get_member(ram, "mbps") : NULL;
  *out = (VmletMigrationInfo){
      .status = status ? monitor_migration_status(status) : VMLET_MIGRATION_NONE,
      .ram_transferred = uint_at(ram, "transferred"),
      .ram_remaining = uint_at(ram, "remaining"),
      .ram_total = uint_at(ram, "total"),
      .dirty_pages_rate = uint_at(ram, "dirty-pages-rate"),
      .dirty_sync_count = uint_at(ram, "dirty-sync-count"),
      .mbps = mbps && JSON_NODE_HOLDS_VALUE(mbps) &&
                      json_node_get_value_type(mbps) == G_TYPE_DOUBLE
                  ? json_node_get_double(mbps)
                  : 0,
      .total_time_ms = jv_int_at(o, "total-time", 0),
      .downtime_ms = jv_int_at(o, "downtime", 0),
      .expected_downtime_ms = jv_int_at(o, "expected-downtime", 0),
      .setup_time_ms = jv_int_at(o, "setup-time", 0),
      .cpu_throttle_percentage = jv_int_at(o, "cpu-throttle-percentage", 0),
      /* Bounded: QEMU's text goes into status and logs. */
      .error_desc = error_desc ? g_strndup(error_desc, 512) : NULL,
  };
  return TRUE;
}

/* ---- NBD and mirrors ---- */

void vmlet_monitor_nbd_server_start(VmletMonitor *mon, const char *host, guint port,
                                    const char *tls_creds, const char *tls_authz,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data)
{
  g_autofree char *p = g_strdup_printf("%u", port);
  /* nbd-server-start takes the legacy SocketAddress (QEMU 7.2): {type, data: {host, port}}. */
  JsonObject *inet = json_object_new();
  json_object_set_string_member(inet, "host", host);
  json_object_set_string_member(inet, "port", p);
  JsonObject *addr = monitor_args1("type", "inet");
  json_object_set_object_member(addr, "data", inet);
  g_autoptr(JsonObject) a = json_object_new();
  json_object_set_object_member(a, "addr", addr);
  set_str(a, "tls-creds", tls_creds);
  set_str(a, "tls-authz", tls_authz);
  empty(mon, "nbd-server-start", a, cancellable, callback, user_data);
}

void vmlet_monitor_nbd_server_stop(VmletMonitor *mon, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data)
{
  empty(mon, "nbd-server-stop", NULL, cancellable, callback, user_data);
}

void vmlet_monitor_block_export_add(VmletMonitor *mon, const char *id, const char *node,
                                    gboolean writable, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("type", "nbd");
  json_object_set_string_member(a, "id", id);
  json_object_set_string_member(a, "node-name", node);
  json_object_set_string_member(a, "name", node);
  json_object_set_boolean_member(a, "writable", writable);
  empty(mon, "block-export-add", a, cancellable, callback, user_data);
}

void vmlet_monitor_blockdev_mirror(VmletMonitor *mon, const char *job_id, const char *device,
                                   const char *target, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("job-id", job_id);
  json_object_set_string_member(a, "device", device);
  json_object_set_string_member(a, "target", target);
  json_object_set_string_member(a, "sync", "full");
  json_object_set_boolean_member(a, "auto-dismiss", FALSE);
  empty(mon, "blockdev-mirror", a, cancellable, callback, user_data);
}

void vmlet_monitor_block_job_cancel(VmletMonitor *mon, const char *job_id, gboolean force,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("device", job_id);
  json_object_set_boolean_member(a, "force", force);
  empty(mon, "block-job-cancel", a, cancellable, callback, user_data);
}

void vmlet_monitor_job_dismiss(VmletMonitor *mon, const char *job_id,
                               GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data)
{
  g_autoptr(JsonObject) a = monitor_args1("id", job_id);
  empty(mon, "job-dismiss", a, cancellable, callback, user_data);
}

void vmlet_block_job_free(VmletBlockJob *job)
{
  if (!job)
    return;
  g_free(job->id);
  g_free(job->status);
  g_free(job);
}

void vmlet_monitor_query_block_jobs(VmletMonitor *mon, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data)
{
  static const Reply r = {REPLY_ARRAY, NULL, NULL};
  monitor_call(mon, vmlet_monitor_query_block_jobs, "query-block-jobs", NULL, &r, cancellable,
               callback, user_data);
}

GPtrArray *vmlet_monitor_query_block_jobs_finish(VmletMonitor *mon, GAsyncResult *result,
                                                 GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), NULL);
  g_autoptr(JsonNode) n = g_task_propagate_pointer(G_TASK(result), error);
  if (!n)
    return NULL;
  JsonArray *arr = json_node_get_array(n);
  GPtrArray *jobs = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_block_job_free);
  for (guint i = 0; i < json_array_get_length(arr); i++) {
    JsonNode *e = json_array_get_element(arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    const char *id = jv_string_at(o, "device");
    if (!id)
      continue;
    VmletBlockJob *job = g_new0(VmletBlockJob, 1);
    job->id = g_strndup(id, 128);
    job->status = g_strndup(jv_string_at(o, "status") ? jv_string_at(o, "status") : "", 32);
    job->offset = uint_at(o, "offset");
    job->len = uint_at(o, "len");
    job->ready = jv_bool_at(o, "ready", FALSE);
    g_ptr_array_add(jobs, job);
  }
  return jobs;
}

void vmlet_monitor_yank(VmletMonitor *mon, const char *node, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data)
{
  JsonObject *instance = monitor_args1("type", node ? "block-node" : "migration");
  if (node)
    json_object_set_string_member(instance, "node-name", node);
  JsonArray *instances = json_array_new();
  json_array_add_object_element(instances, instance);
  g_autoptr(JsonObject) a = json_object_new();
  json_object_set_array_member(a, "instances", instances);
  empty(mon, "yank", a, cancellable, callback, user_data);
}
