/* The source's first steps: choose a target, prepare it, set QEMU up, mirror local disks. */
#include "vm-migrate-out.h"

#include <string.h>

#include <glib/gstdio.h>

#include "confine.h"
#include "fileio.h"
#include "jsonval.h"
#include "qemu-access.h"
#include "qemu-mig.h"
#include "vmlet-error.h"

#define ASK_TIMEOUT_S 5
#define PREPARE_TIMEOUT_S 60

/* ---- choose ---- */

static char *peer_refused(VmMigOut *m, const VmletPeer *peer)
{
  g_autoptr(GHashTable) labels = vmlet_peer_placement_labels(peer);
  GHashTableIter it;
  gpointer k, v;
  if (m->selector) {
    g_hash_table_iter_init(&it, m->selector);
    while (g_hash_table_iter_next(&it, &k, &v))
      if (g_strcmp0(g_hash_table_lookup(labels, k), v) != 0)
        return g_strdup_printf("does not match migrate.nodeSelector %s=%s", (char *)k,
                               (char *)v);
  }
  char *why = NULL;
  if (!vm_spec_matches_node(m->vm->spec, labels, &why))
    return why;
  return NULL;
}

typedef struct {
  VmMigOut *m;
  GPtrArray *candidates; /* VmletPeer * */
  guint next;
  GString *refusals;
} Choice;

static void choice_free(Choice *c)
{
  g_ptr_array_unref(c->candidates);
  g_string_free(c->refusals, TRUE);
  g_free(c);
}

static void ask_next(Choice *c);

static void refuse(Choice *c, const VmletPeer *peer, const char *why)
{
  g_string_append_printf(c->refusals, "%s%s: %s", c->refusals->len ? "; " : "", peer->name,
                         why);
}

static void on_node(GObject *src, GAsyncResult *res, gpointer data)
{
  Choice *c = data;
  VmMigOut *m = c->m;
  VmletPeer *peer = c->candidates->pdata[c->next - 1];
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) n = vmlet_peer_client_request_finish(res, &status, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
    choice_free(c);
    return;
  }
  JsonObject *o = n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
  JsonObject *in = jv_object_at(o, "inbound");
  if (!n)
    refuse(c, peer, error->message);
  else if (status != 200)
    refuse(c, peer, jv_string_at(o, "message") ? jv_string_at(o, "message") : "refused");
  else if (jv_bool_at(o, "cordoned", FALSE))
    refuse(c, peer, "cordoned (maintenance)");
  else if (jv_int_at(in, "inUse", 0) >= jv_int_at(in, "limit", 1))
    refuse(c, peer, "at its inbound migration limit");
  else {
    m->peer = vmlet_peer_ref(peer);
    g_free(m->journal->peer);
    m->journal->peer = g_strdup(peer->name);
    mig_state_target(m->vm, peer->name);
    choice_free(c);
    mig_out_next(m);
    return;
  }
  ask_next(c);
}

static void ask_next(Choice *c)
{
  VmMigOut *m = c->m;
  if (c->next >= c->candidates->len) {
    g_autofree char *why = g_strdup_printf("no peer can take the VM: %s",
                                           c->refusals->len ? c->refusals->str : "no peers");
    choice_free(c);
    mig_out_fail(m, "TargetUnschedulable", why);
    return;
  }
  VmletPeer *peer = c->candidates->pdata[c->next++];
  VmletMigrations *ms = m->vm->env->migrations;
  vmlet_peer_client_request_async(vmlet_migrations_client(ms), peer,
                                  vmlet_migrations_node(ms)->migration.port, "GET",
                                  "/peer/v1/node", NULL, ASK_TIMEOUT_S, m->cancel, on_node, c);
}

void mig_out_choose(VmMigOut *m)
{
  Choice *c = g_new0(Choice, 1);
  c->m = m;
  c->candidates = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_peer_unref);
  c->refusals = g_string_new(NULL);
  g_autoptr(GPtrArray) peers = vmlet_migrations_peers(m->vm->env->migrations);
  for (guint i = 0; i < peers->len; i++) {
    VmletPeer *peer = peers->pdata[i];
    g_autofree char *why = peer_refused(m, peer);
    if (why)
      refuse(c, peer, why);
    else
      g_ptr_array_add(c->candidates, vmlet_peer_ref(peer));
  }
  ask_next(c);
}

/* ---- prepare ---- */

static void on_prepared(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) n = vmlet_peer_client_request_finish(res, &status, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  /* The destination has looked: the markers have served. */
  mig_out_remove_markers(m);
  JsonObject *o = n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
  if (!n || status != 201) {
    const char *reason = jv_string_at(o, "reason");
    g_autofree char *msg = n ? g_strdup_printf("%s refused: %s", m->peer->name,
                                               jv_string_at(o, "message") ? jv_string_at(o, "message") : "no reason")
                             : g_strdup(error->message);
    mig_out_fail(m, reason ? reason : "TargetUnschedulable", msg);
    return;
  }
  m->stream_port = (guint)jv_int_at(o, "streamPort", 0);
  m->nbd_port = (guint)jv_int_at(o, "nbdPort", 0);
  JsonArray *shared = jv_array_at(o, "sharedDisks");
  m->mirror = g_ptr_array_new();
  for (guint i = 0; i < m->disks->len; i++) {
    VmMigDisk *d = m->disks->pdata[i];
    for (guint j = 0; shared && j < json_array_get_length(shared); j++) {
      JsonNode *e = json_array_get_element(shared, j);
      if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING &&
          g_str_equal(json_node_get_string(e), d->plan->device_id))
        d->shared = TRUE;
    }
    if (!d->shared && !d->read_only) {
      g_ptr_array_add(m->mirror, d->plan);
      /* Copied: once the destination owns the VM, this file is a stale copy (set aside). */
      g_ptr_array_add(m->journal->created, g_strdup(d->path));
    }
  }
  if (!m->stream_port || (m->mirror->len && !m->nbd_port)) {
    mig_out_fail(m, "TargetUnschedulable", "the destination's answer names no ports");
    return;
  }
  mig_out_next(m);
}

/* One marker per directory of a writable disk file (block devices are shared by
 * definition, read-only images may be copies). */
static gboolean write_markers(VmMigOut *m, GError **error)
{
  m->marker_token = g_uuid_string_random();
  m->markers = g_ptr_array_new_with_free_func(g_free);
  for (guint i = 0; i < m->disks->len; i++) {
    const VmMigDisk *d = m->disks->pdata[i];
    if (d->read_only || d->plan->host_device)
      continue;
    g_autofree char *path = vm_mig_marker_path(d->path, m->journal->id);
    if (g_ptr_array_find_with_equal_func(m->markers, path, g_str_equal, NULL))
      continue;
    if (!vmlet_write_file_atomic(path, m->marker_token, strlen(m->marker_token), 0600,
                                 error))
      return FALSE;
    g_ptr_array_add(m->markers, g_steal_pointer(&path));
  }
  return TRUE;
}

void mig_out_remove_markers(VmMigOut *m)
{
  for (guint i = 0; m->markers && i < m->markers->len; i++)
    g_unlink(m->markers->pdata[i]);
  g_clear_pointer(&m->markers, g_ptr_array_unref);
}

void mig_out_prepare(VmMigOut *m)
{
  g_autoptr(GError) error = NULL;
  m->disks = vm_mig_disks_of(m->vm->plan, &error);
  g_autoptr(JsonNode) req = m->disks && write_markers(m, &error)
                                ? mig_out_prepare_request(m, &error)
                                : NULL;
  if (!req) {
    mig_out_fail(m, "TargetDiskError", error->message);
    return;
  }
  VmletMigrations *ms = m->vm->env->migrations;
  vmlet_peer_client_request_async(vmlet_migrations_client(ms), m->peer,
                                  vmlet_migrations_node(ms)->migration.port, "POST",
                                  "/peer/v1/migrations", req, PREPARE_TIMEOUT_S, m->cancel,
                                  on_prepared, m);
}

/* ---- QEMU ---- */

static void on_set_up(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  if (!vmlet_mig_setup_finish(res, &error)) {
    if (!mig_out_gone(error) && !m->ended)
      mig_out_fail(m, "Aborted", error->message);
    return;
  }
  mig_out_next(m);
}

void mig_out_setup(VmMigOut *m)
{
  VmletVm *vm = m->vm;
  VmletMonitor *mon = mig_out_monitor(m);
  g_autoptr(GError) error = NULL;
  if (mon)
    m->tls_dir = vm_mig_tls_for_qemu(vm, m->journal->id, FALSE, &error);
  if (!mon || !m->tls_dir) {
    mig_out_fail(m, "Aborted", mon ? error->message : "QEMU's monitor is not connected");
    return;
  }
  const VmletMigrationSettings *cfg = &vm->env->node->migration;
  VmletMigSetup s = {
      .tls_dir = m->tls_dir,
      .peer_name = m->peer->name,
      .auto_converge = m->auto_converge,
      .multifd_channels = cfg->multifd_channels,
      .bandwidth = cfg->bandwidth,
      .downtime_ms = m->downtime_ms,
  };
  vmlet_mig_setup_async(mon, FALSE, &s, m->cancel, on_set_up, m);
}

static void on_mirrored(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  if (!vmlet_mig_mirror_finish(res, &error)) {
    if (!mig_out_gone(error) && !m->ended)
      mig_out_fail(m, "TargetDiskError", error->message);
    return;
  }
  mig_out_next(m);
}

void mig_out_mirror(VmMigOut *m)
{
  mig_out_watch(m);
  if (!m->mirror->len) {
    mig_out_next(m);
    return;
  }
  vmlet_mig_mirror_async(mig_out_monitor(m), m->peer->address, m->nbd_port, m->peer->name,
                         m->mirror, m->cancel, on_mirrored, m);
}
