#include "daemon.h"

#include <stdio.h>
#include <syslog.h>

#include <signal.h>

#include <glib-unix.h>

#include "api.h"
#include "jsonval.h"
#include "log.h"
#include "manager.h"
#include "notify.h"
#include "peer-server.h"

static gboolean on_quit_signal(gpointer data)
{
  g_main_loop_quit(data);
  return G_SOURCE_CONTINUE;
}

typedef struct {
  VmletManager *mgr;
  GHashTable *last_phase; /* "ns.name" -> phase name last logged */
  GHashTable *last_att;   /* "ns/name" -> attachment phase and message last logged */
  guint status_idle;      /* a STATUS= update is due once the loop is idle */
} DaemonState;

static void report_status(DaemonState *st)
{
  g_autofree char *summary = vmlet_manager_summary(st->mgr);
  g_autoptr(GError) error = NULL;
  if (!vmlet_notify_status(&error, "%s", summary))
    vmlet_log(LOG_WARNING, NULL, "sd_notify: %s", error->message);
}

static gboolean on_status_idle(gpointer data)
{
  DaemonState *st = data;
  st->status_idle = 0;
  report_status(st);
  return G_SOURCE_REMOVE;
}

/* The counts cost a pass over every VM; a reload changes every VM's phase at once (1000
 * drop-ins: a million steps per reload), so one STATUS= line per burst is sent. */
static void report_status_soon(DaemonState *st)
{
  if (!st->status_idle)
    st->status_idle = g_idle_add(on_status_idle, st);
}

static void on_vm_changed(VmletManager *mgr, VmletVm *vm, gpointer data)
{
  DaemonState *st = data;
  g_autofree char *key =
      g_strdup_printf("%s.%s", vmlet_vm_get_namespace(vm), vmlet_vm_get_name(vm));
  const char *phase = vm_phase_name(vmlet_vm_get_phase(vm));
  /* "changed" also fires for operations and conditions; log phase changes only. */
  if (g_strcmp0(g_hash_table_lookup(st->last_phase, key), phase) == 0)
    return;
  vmlet_log(LOG_INFO, key, "phase %s", phase);
  g_hash_table_replace(st->last_phase, g_steal_pointer(&key), g_strdup(phase));
  report_status_soon(st);
}

static void on_vm_removed(VmletManager *mgr, const char *ns, const char *name, gpointer data)
{
  DaemonState *st = data;
  g_autofree char *key = g_strdup_printf("%s.%s", ns, name);
  vmlet_log(LOG_INFO, key, "removed");
  g_hash_table_remove(st->last_phase, key);
  report_status_soon(st);
}

static void on_vm_note(VmletManager *mgr, VmletVm *vm, gint priority, const char *text,
                       gpointer data)
{
  g_autofree char *key = g_strdup_printf("%s.%s", vmlet_vm_get_namespace(vm),
                                         vmlet_vm_get_name(vm));
  vmlet_log(priority, key, "%s", text);
}

/* The cordon or the drain changed: the STATUS= line says "draining: 2 of 5 VMs left". */
static void on_node_changed(VmletManager *mgr, gpointer data)
{
  report_status_soon(data);
}

static void on_node_note(VmletManager *mgr, gint priority, const char *text, gpointer data)
{
  vmlet_log(priority, NULL, "%s", text);
}

/* Attachments' phase changes, with why, once each (their JSON changes more often). */
static void on_attachment_changed(VmletManager *mgr, JsonNode *att, gpointer data)
{
  DaemonState *st = data;
  JsonObject *o = json_node_get_object(att);
  g_autofree char *key = g_strdup_printf("%s/%s", jv_string_path(o, "metadata.namespace"),
                                         jv_string_path(o, "metadata.name"));
  const char *phase = jv_string_path(o, "status.phase");
  const char *message = NULL;
  JsonObject *status = json_object_get_object_member(o, "status");
  JsonArray *conds = json_object_get_array_member(status, "conditions");
  for (guint i = 0; conds && i < json_array_get_length(conds); i++) {
    JsonObject *c = json_array_get_object_element(conds, i);
    if (g_strcmp0(jv_string_at(c, "type"), "Attached") == 0)
      message = jv_string_at(c, "message");
  }
  g_autofree char *line = g_strdup_printf("attachment %s: phase %s%s%s", key, phase,
                                          message ? ": " : "", message ? message : "");
  if (g_strcmp0(g_hash_table_lookup(st->last_att, key), line) == 0)
    return;
  vmlet_log(LOG_INFO, NULL, "%s", line);
  g_hash_table_replace(st->last_att, g_steal_pointer(&key), g_steal_pointer(&line));
}

static void on_attachment_removed(VmletManager *mgr, const char *ns, const char *name,
                                  gpointer data)
{
  DaemonState *st = data;
  g_autofree char *key = g_strdup_printf("%s/%s", ns, name);
  vmlet_log(LOG_INFO, NULL, "attachment %s: removed", key);
  g_hash_table_remove(st->last_att, key);
}

int vmlet_daemon_run(VmletNode *node, const VmletDaemonOptions *opts)
{
  g_autofree char *socket_path = opts->socket_path
                                     ? g_strdup(opts->socket_path)
                                     : g_build_filename(node->run_dir, "vmletd.sock", NULL);
  g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
  g_autoptr(VmletManager) mgr = vmlet_manager_new(node);
  g_autoptr(GHashTable) last_phase =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GHashTable) last_att =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  DaemonState st = {.mgr = mgr, .last_phase = last_phase, .last_att = last_att};
  g_signal_connect(mgr, "vm-changed", G_CALLBACK(on_vm_changed), &st);
  g_signal_connect(mgr, "vm-removed", G_CALLBACK(on_vm_removed), &st);
  g_signal_connect(mgr, "vm-note", G_CALLBACK(on_vm_note), &st);
  g_signal_connect(mgr, "node-changed", G_CALLBACK(on_node_changed), &st);
  g_signal_connect(mgr, "node-note", G_CALLBACK(on_node_note), &st);
  g_signal_connect(mgr, "attachment-changed", G_CALLBACK(on_attachment_changed), &st);
  g_signal_connect(mgr, "attachment-removed", G_CALLBACK(on_attachment_removed), &st);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletApi) api = vmlet_api_new(mgr, socket_path, opts->api_group, &error);
  if (!api) {
    vmlet_log(LOG_ERR, NULL, "%s", error->message);
    return 1;
  }
  /* The peer API before the journals are read: a restarted node's recovery asks its peers,
   * and they ask it back. Migration off (or unusable) leaves the node running its VMs. */
  g_autoptr(VmletPeerServer) peers = vmlet_peer_server_new(mgr, &error);
  if (error) {
    vmlet_log(LOG_ERR, NULL, "migration is not enabled: %s", error->message);
    g_clear_error(&error);
  } else if (peers) {
    const VmletNode *n = vmlet_manager_get_node(mgr);
    vmlet_log(LOG_INFO, NULL, "peer API on [%s]:%u", n->migration.listen_address,
              n->migration.port);
  }
  gint64 load_start_us = g_get_monotonic_time();
  vmlet_manager_start(mgr);
  /* Adopting records, reading every drop-in and the first reconcile: what a node with many
   * VMs waits for at boot (tests/bench measures it from outside as well). */
  double load_ms = (double)(g_get_monotonic_time() - load_start_us) / 1000.0;
  GPtrArray *problems = vmlet_manager_problems(mgr);
  for (guint i = 0; i < problems->len; i++)
    vmlet_log(LOG_WARNING, NULL, "%s", (const char *)problems->pdata[i]);
  guint sigterm = g_unix_signal_add(SIGTERM, on_quit_signal, loop);
  guint sigint = g_unix_signal_add(SIGINT, on_quit_signal, loop);
  guint watchdog = vmlet_watchdog_start();
  g_autofree char *summary = vmlet_manager_summary(mgr);
  vmlet_log(LOG_INFO, NULL, "ready on %s (%s; loaded and reconciled in %.1f ms)", socket_path,
            summary, load_ms);
  if (!vmlet_notify_ready(&error)) {
    vmlet_log(LOG_WARNING, NULL, "sd_notify: %s", error->message);
    g_clear_error(&error);
  }
  g_clear_handle_id(&st.status_idle, g_source_remove); /* the line below says it all */
  report_status(&st);
  g_main_loop_run(loop);
  vmlet_notify_stopping(NULL);
  if (watchdog)
    g_source_remove(watchdog);
  g_source_remove(sigterm);
  g_source_remove(sigint);
  g_clear_handle_id(&st.status_idle, g_source_remove);
  g_signal_handlers_disconnect_by_data(mgr, &st);
  vmlet_log(LOG_INFO, NULL, "stopping; running VMs keep running");
  /* libsoup lets go of its clients' connections from the main loop: give it the turns. */
  g_clear_pointer(&api, vmlet_api_free);
  g_clear_pointer(&peers, vmlet_peer_server_free);
  while (g_main_context_iteration(NULL, FALSE))
    ;
  return 0;
}
