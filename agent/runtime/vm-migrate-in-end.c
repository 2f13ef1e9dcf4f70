/* The destination of a live migration, second half: the incoming QEMU set up (TLS with the
 * source's DN as the only one allowed, the source's capabilities, NBD exports of the local
 * copies, migrate-incoming), the prepare answered with the ports; then the commit (resume,
 * own the VM: drop-ins and record written) or, without news of the source, a question to
 * it and an abort when it has given the migration up. */
#include "vm-migrate-in.h"

#include <string.h>
#include <unistd.h>

#include "confine.h"
#include "fileio.h"
#include "jsonval.h"
#include "mig-error.h"
#include "qemu-mig.h"
#include "vmlet-error.h"

/* Without a call from the source this long, the destination asks it how things stand. */
#define SOURCE_SILENCE_S 15
#define WATCHDOG_S 5
#define ASK_TIMEOUT_S 5

static VmletMonitor *monitor_of(VmMigIn *m)
{
  return m->vm->qemu ? vmlet_instance_get_monitor(m->vm->qemu) : NULL;
}

static void answer_prepare_error(VmMigIn *m, VmletMigError code, const char *why)
{
  if (m->prepare) {
    g_task_return_new_error(m->prepare, VMLET_MIG_ERROR, code, "%s", why);
    g_clear_object(&m->prepare);
  }
  mig_in_abort(m, why);
}

/* ---- the source's silence ---- */

/* What the source says of the migration: committed (from Committing on it never resumes,
 * so this node may commit by itself), given up (Aborted, or no such migration), or still
 * under way. */
static void on_source_answer(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigIn *m = data;
  guint status = 0;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) n = vmlet_peer_client_request_finish(res, &status, &error);
  if (mig_in_gone(error))
    return;
  m->asking = FALSE;
  if (m->ended || m->committed)
    return;
  const char *step = n && status == 200 ? jv_string_at(json_node_get_object(n), "step") : NULL;
  if ((n && status == 404) || g_strcmp0(step, "Aborted") == 0 ||
      g_strcmp0(step, "Aborting") == 0) {
    mig_in_abort(m, "the source has given the migration up");
    return;
  }
  if (g_strcmp0(step, "Committing") == 0 || g_strcmp0(step, "Committed") == 0 ||
      g_strcmp0(step, "Finished") == 0) {
    mig_in_commit(m, m->journal->generation, NULL);
    return;
  }
  /* Answered, or unreachable: either way this node waits; it never resumes unasked. */
  if (n)
    m->last_contact_us = g_get_monotonic_time();
}

static gboolean on_watchdog(gpointer data)
{
  VmMigIn *m = data;
  VmletMigrations *ms = m->vm->env->migrations;
  VmletPeer *peer = vmlet_migrations_peer(ms, m->source);
  gint64 silent = g_get_monotonic_time() - m->last_contact_us;
  if (m->asking || !peer || silent < (gint64)SOURCE_SILENCE_S * G_USEC_PER_SEC)
    return G_SOURCE_CONTINUE;
  m->asking = TRUE;
  g_autofree char *path = g_strdup_printf("/peer/v1/migrations/%s", m->journal->id);
  vmlet_peer_client_request_async(vmlet_migrations_client(ms), peer,
                                  vmlet_migrations_node(ms)->migration.port, "GET", path, NULL,
                                  ASK_TIMEOUT_S, m->cancel, on_source_answer, m);
  return G_SOURCE_CONTINUE;
}

/* ---- QEMU set up, then listening ---- */

static JsonNode *prepared_answer(VmMigIn *m)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", m->journal->id);
  json_object_set_int_member(o, "streamPort", m->ports[0]);
  json_object_set_int_member(o, "nbdPort", m->n_ports > 1 ? m->ports[1] : 0);
  JsonArray *shared = json_array_new();
  for (guint i = 0; i < m->disks->len; i++) {
    const VmMigDisk *d = m->disks->pdata[i];
    g_autofree char *id = vm_plan_device_id(d->kind, d->name);
    if (d->shared || d->read_only)
      json_array_add_string_element(shared, id);
  }
  json_object_set_array_member(o, "sharedDisks", shared);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

static void on_listening(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigIn *m = data;
  g_autoptr(GError) error = NULL;
  gboolean listening = vmlet_mig_listen_finish(res, &error);
  /* Committed meanwhile (by a source that did not wait for the answer): the journal is
   * past Prepared, and must not go back to it. */
  if (mig_in_gone(error) || m->ended || m->committed)
    return;
  if (!listening ||
      !vmlet_mig_journal_step(m->journal, m->vm->env->node->state_dir, VMLET_MIG_PREPARED,
                              &error)) {
    answer_prepare_error(m, VMLET_MIG_ERROR_UNSCHEDULABLE, error->message);
    return;
  }
  m->last_contact_us = g_get_monotonic_time();
  m->watchdog = g_timeout_add_seconds(WATCHDOG_S, on_watchdog, m);
  if (m->prepare) {
    g_task_return_pointer(m->prepare, prepared_answer(m), (GDestroyNotify)json_node_unref);
    g_clear_object(&m->prepare);
  }
}

static void on_set_up(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigIn *m = data;
  g_autoptr(GError) error = NULL;
  gboolean set_up = vmlet_mig_setup_finish(res, &error);
  if (mig_in_gone(error) || m->ended)
    return;
  if (!set_up) {
    answer_prepare_error(m, VMLET_MIG_ERROR_UNSCHEDULABLE, error->message);
    return;
  }
  VmletMigrations *ms = m->vm->env->migrations;
  m->exports = g_ptr_array_new();
  for (guint i = 0; i < m->disks->len; i++) {
    const VmMigDisk *d = m->disks->pdata[i];
    if (d->shared || d->read_only)
      continue;
    /* The plan's entry names the nodes QEMU has for this disk. */
    for (guint j = 0; j < m->vm->plan->disks->len; j++) {
      VmPlanDisk *p = m->vm->plan->disks->pdata[j];
      if (p->is_ref && p->kind == d->kind && g_str_equal(p->name, d->name))
        g_ptr_array_add(m->exports, p);
    }
  }
  m->n_ports = m->exports->len ? 2 : 1;
  if (!vmlet_migrations_take_ports(ms, m->n_ports, m->ports, &error)) {
    m->n_ports = 0;
    answer_prepare_error(m, VMLET_MIG_ERROR_UNSCHEDULABLE, error->message);
    return;
  }
  vmlet_mig_listen_async(monitor_of(m), vmlet_migrations_node(ms)->migration.listen_address,
                         m->ports[0], m->n_ports > 1 ? m->ports[1] : 0, m->exports, m->cancel,
                         on_listening, m);
}

void vm_migrate_in_ready(VmletVm *vm)
{
  VmMigIn *m = vm->mig_in;
  if (!m)
    return;
  g_autoptr(GError) error = NULL;
  m->tls_dir = vm_mig_tls_for_qemu(vm, m->journal->id, TRUE, &error);
  if (!m->tls_dir) {
    answer_prepare_error(m, VMLET_MIG_ERROR_UNSCHEDULABLE, error->message);
    return;
  }
  VmletMigSetup s = {
      .tls_dir = m->tls_dir,
      .peer_name = m->source,
      .peer_dn = m->source_dn,
      .auto_converge = m->auto_converge,
      .multifd_channels = m->multifd_channels,
  };
  vmlet_mig_setup_async(vmlet_instance_get_monitor(vm->qemu), TRUE, &s, m->cancel, on_set_up, m);
}

/* ---- the commit ---- */

static gboolean write_manifest(const VmletNode *node, const char *dir, JsonNode *manifest,
                               char **path_out, GError **error)
{
  JsonObject *md = jv_object_at(json_node_get_object(manifest), "metadata");
  const char *ns = jv_string_at(md, "namespace"), *name = jv_string_at(md, "name");
  g_autofree char *path = vmlet_node_dropin_path(node, dir, ns ? ns : VMLET_DEFAULT_NAMESPACE,
                                                 name);
  g_autofree char *parent = g_path_get_dirname(path);
  g_autofree char *text = json_to_string(manifest, TRUE);
  g_mkdir_with_parents(parent, 0750);
  if (!vmlet_write_file_atomic(path, text, strlen(text), 0640, error))
    return FALSE;
  if (path_out)
    *path_out = g_steal_pointer(&path);
  return TRUE;
}

/* The VM is this node's now: its drop-in (and those of disks this node had no object
 * for) are written as the API writes them; a later edit is the operator's. */
gboolean mig_in_own(const VmletNode *node, const VmletMigJournal *j, char **vm_path,
                    GError **error)
{
  JsonArray *all = j->manifests ? json_node_get_array(j->manifests) : NULL;
  guint n = all ? json_array_get_length(all) : 0;
  if (!n) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "migration %s: the journal holds no VirtualMachine", j->id);
    return FALSE;
  }
  for (guint i = 1; i < n; i++) {
    JsonNode *d = json_array_get_element(all, i);
    const char *kind = jv_string_at(json_node_get_object(d), "kind");
    if (!write_manifest(node, g_strcmp0(kind, "VirtualDisk") == 0 ? "disks.d" : "images.d", d,
                        NULL, error))
      return FALSE;
  }
  if (!write_manifest(node, "vms.d", json_array_get_element(all, 0), vm_path, error))
    return FALSE;
  vmlet_vm_tombstone_remove(node->state_dir, j->namespace, j->name);
  return TRUE;
}

gboolean mig_in_finish(VmMigIn *m, GError **error)
{
  VmletVm *vm = m->vm;
  g_autofree char *source = NULL;
  if (!mig_in_own(vm->env->node, m->journal, &source, error))
    return FALSE;
  vm_set_str(&vm->source, source);
  vm->rec->generation = m->journal->generation;
  /* Kept as the answer for a source that missed the commit's reply. */
  vmlet_mig_journal_step(m->journal, vm->env->node->state_dir, VMLET_MIG_FINISHED, NULL);
  mig_state_end(vm, "Succeeded", NULL);
  vm_note(vm, LOG_INFO, "migration %s from %s: committed, the VM is this node's",
          m->journal->id, m->source);
  mig_in_release(m);
  vm_save(vm);
  vm_changed(vm);
  return TRUE;
}

static void answer(GTask *task, JsonNode *node, GError *error)
{
  if (!task) {
    if (node)
      json_node_unref(node);
    g_clear_error(&error);
    return;
  }
  if (error)
    g_task_return_error(task, error);
  else
    g_task_return_pointer(task, node, (GDestroyNotify)json_node_unref);
  g_object_unref(task);
}

static JsonNode *finished_reply(VmMigIn *m)
{
  JsonNode *reply = mig_in_describe(m);
  json_object_set_string_member(json_node_get_object(reply), "step",
                                vmlet_mig_step_name(VMLET_MIG_FINISHED));
  return reply;
}

static void own(VmMigIn *m);

static gboolean on_finish_retry(gpointer data)
{
  VmMigIn *m = data;
  m->finish_retry = 0;
  own(m);
  return G_SOURCE_REMOVE;
}

/* The VM runs here, the source knows: its drop-ins and the outcome written. Until they
 * are, the journal says Committed and the job holds the VM (no reload takes it away); a
 * restart finishes it the same way. */
static void own(VmMigIn *m)
{
  g_autoptr(GError) error = NULL;
  VmletVm *vm = m->vm;
  g_autofree char *id = g_strdup(m->journal->id);
  if (mig_in_finish(m, &error))
    return;
  vm_note(vm, LOG_WARNING, "migration %s: the VM runs here, but %s; trying again in 2 s", id,
          error->message);
  m->finish_retry = g_timeout_add_seconds(2, on_finish_retry, m);
}

static void on_resumed(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigIn *m = data;
  GError *error = NULL;
  gboolean resumed = vmlet_mig_resume_finish(res, &error);
  if (mig_in_gone(error)) {
    g_error_free(error);
    return;
  }
  VmletVm *vm = m->vm;
  GTask *task = g_steal_pointer(&m->commit);
  m->commit_busy = FALSE;
  /* A QEMU that will not resume is a crash after the commit: its exit finishes the job. */
  if (!resumed) {
    answer(task, NULL, error);
    return;
  }
  m->resumed = TRUE;
  /* Answered first: the guest runs, and each fsync of the drop-ins and of the outcome
   * (two per file, 1-20 ms each on these disks) would otherwise keep the source's copy
   * paused and the operation waiting. */
  answer(task, finished_reply(m), NULL);
  vm->running_since_mono_us = g_get_monotonic_time();
  vm_set_phase(vm, VM_PHASE_RUNNING);
  vmlet_attach_ctl_activate(vm->hot, vmlet_instance_get_monitor(vm->qemu));
  own(m);
}

void mig_in_commit(VmMigIn *m, guint64 generation, GTask *task)
{
  g_autoptr(GError) error = NULL;
  m->last_contact_us = g_get_monotonic_time();
  if (generation != m->journal->generation) {
    answer(task ? g_object_ref(task) : NULL, NULL,
           g_error_new(VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID,
                       "generation %" G_GUINT64_FORMAT " is not this migration's (%"
                       G_GUINT64_FORMAT ")", generation, m->journal->generation));
    return;
  }
  if (m->resumed) {
    answer(task ? g_object_ref(task) : NULL, finished_reply(m), NULL);
    return;
  }
  if (m->commit_busy) {
    /* Not "Aborted": the source must not take a commit under way for a refusal. */
    answer(task ? g_object_ref(task) : NULL, NULL,
           g_error_new(VMLET_MIG_ERROR, VMLET_MIG_ERROR_BUSY,
                       "the commit is being carried out: ask again"));
    return;
  }
  if (!m->committed && (m->journal->step == VMLET_MIG_ABORTING || !monitor_of(m))) {
    answer(task ? g_object_ref(task) : NULL, NULL,
           g_error_new(VMLET_MIG_ERROR, VMLET_MIG_ERROR_ABORTED,
                       "the migration is being given up here"));
    return;
  }
  /* Journaled first: from here on this node resumes, whatever happens to the source. */
  if (!m->committed &&
      !vmlet_mig_journal_step(m->journal, m->vm->env->node->state_dir, VMLET_MIG_COMMITTED,
                              &error)) {
    answer(task ? g_object_ref(task) : NULL, NULL, g_steal_pointer(&error));
    return;
  }
  m->committed = TRUE;
  m->commit_busy = TRUE;
  g_clear_object(&m->commit);
  m->commit = task ? g_object_ref(task) : NULL;
  g_clear_handle_id(&m->watchdog, g_source_remove);
  /* NBD served the local disks' copies: those made here (what a rebuilt job knows). */
  gboolean nbd = m->exports ? m->exports->len > 0 : m->journal->created->len > 0;
  vmlet_mig_resume_async(monitor_of(m), nbd, m->cancel, on_resumed, m);
}

JsonNode *mig_in_describe(VmMigIn *m)
{
  m->last_contact_us = g_get_monotonic_time();
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", m->journal->id);
  json_object_set_string_member(o, "role", "Destination");
  json_object_set_string_member(o, "step", vmlet_mig_step_name(m->journal->step));
  json_object_set_int_member(o, "generation", (gint64)m->journal->generation);
  if (m->journal->reason)
    json_object_set_string_member(o, "reason", m->journal->reason);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

JsonNode *vm_migrate_in_describe(VmletVm *vm)
{
  return mig_in_describe(vm->mig_in);
}
