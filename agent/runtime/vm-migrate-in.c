/* The destination of a live migration, first half: the prepare request checked (the VM
 * validated as a drop-in would be, its class and placement against this node), each disk
 * placed (the same file on both nodes is shared storage; else a new image of the same
 * virtual size, never an existing file overwritten), the incoming QEMU started confined in
 * its cgroup with the source's machine type and device layout. vm-migrate-in-end.c goes on
 * once QEMU's monitor is up. */
#include "vm-migrate-in.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "jsonval.h"
#include "mig-error.h"
#include "objects.h"
#include "qemu-access.h"
#include "vmlet-error.h"

void mig_in_free(VmMigIn *m)
{
  if (!m)
    return;
  g_clear_handle_id(&m->watchdog, g_source_remove);
  g_clear_handle_id(&m->finish_retry, g_source_remove);
  /* Its answer may come after the migration ended here (the source came back and
   * committed meanwhile): it must not find m. */
  if (m->ask_cancel)
    g_cancellable_cancel(m->ask_cancel);
  g_clear_object(&m->ask_cancel);
  vmlet_mig_journal_free(m->journal);
  g_free(m->source);
  g_free(m->source_dn);
  g_clear_pointer(&m->disks, g_ptr_array_unref);
  g_clear_pointer(&m->exports, g_ptr_array_unref);
  g_free(m->tls_dir);
  g_free(m->marker_token);
  g_clear_object(&m->prepare);
  g_clear_object(&m->commit);
  g_free(m);
}

static gboolean fail(GError **error, VmletMigError code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean fail(GError **error, VmletMigError code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error_literal(error, VMLET_MIG_ERROR, code, msg);
  return FALSE;
}

/* ---- disks ---- */

/* Where a disk lives on this node: this node's own object for it, else the object the
 * source sent, at this node's default location. */
static char *place(VmMigIn *m, JsonObject *d, VmBlockKind kind, const char *name,
                   GError **error)
{
  VmletVm *vm = m->vm;
  VmletBlockObject *own = vmlet_inventory_block(vm->env->inv, kind, vm->namespace, name);
  if (!own) {
    JsonObject *manifest = jv_object_at(d, "manifest");
    g_autofree char *text = manifest ? json_to_string(json_object_get_member(d, "manifest"),
                                                      FALSE)
                                     : NULL;
    g_autoptr(GPtrArray) objs = text ? vmlet_objects_parse("the source's disk", text,
                                                           strlen(text), NULL, error)
                                     : NULL;
    VmletObject *o = objs && objs->len == 1 ? objs->pdata[0] : NULL;
    if (!o || (o->kind != VMLET_KIND_VIRTUAL_DISK && o->kind != VMLET_KIND_VIRTUAL_IMAGE &&
               o->kind != VMLET_KIND_CLUSTER_VIRTUAL_IMAGE)) {
      if (error && !*error)
        fail(error, VMLET_MIG_ERROR_INVALID, "disk %s: no usable manifest", name);
      return NULL;
    }
    vmlet_inventory_add(vm->env->inv, o);
    json_array_add_element(json_node_get_array(m->journal->manifests),
                           json_node_copy(json_object_get_member(d, "manifest")));
    own = o->block;
  }
  g_autoptr(VmPlanDisk) pd = vm_plan_attachment_disk(vm->env->node, own, NULL);
  return g_strdup(pd->path);
}

/* The directories from the node's disk directory (from its state directory when the disks
 * live there, as by default) down to dir, made (0750) and let through for QEMU's group
 * (0710: x, no listing): a disk the node never had may be the first in its namespace, and
 * vmletd made its state directory 0700 for its records. */
static gboolean disk_dirs(VmletVm *vm, const char *dir, GError **error)
{
  if (g_mkdir_with_parents(dir, 0750) < 0)
    return fail(error, VMLET_MIG_ERROR_DISK, "%s: %s", dir, g_strerror(errno));
  VmletConfine *c = vm_confinement(vm, error);
  if (!c)
    return FALSE;
  const VmletNode *node = vm->env->node;
  const char *top = g_str_has_prefix(node->disk_dir, node->state_dir) ? node->state_dir
                                                                      : node->disk_dir;
  g_autoptr(GPtrArray) levels = g_ptr_array_new_with_free_func(g_free);
  for (char *d = g_strdup(dir); d; ) {
    if (!g_str_has_prefix(d, top) || strlen(d) < strlen(top)) {
      g_free(d);
      break;
    }
    g_ptr_array_add(levels, d);
    d = strlen(d) > strlen(top) ? g_path_get_dirname(d) : NULL;
  }
  /* Top down: each level's check walks the ones above it. */
  for (guint i = levels->len; i-- > 0;)
    if (!vmlet_qemu_access_traverse_dir(levels->pdata[i], c, error))
      return FALSE;
  return TRUE;
}

static gboolean create_image(VmletVm *vm, const char *path, VmletImageFormat format,
                             guint64 size, GError **error)
{
  g_autofree char *dir = g_path_get_dirname(path);
  if (!disk_dirs(vm, dir, error))
    return FALSE;
  g_autofree char *bytes = g_strdup_printf("%" G_GUINT64_FORMAT, size);
  const char *argv[] = {"qemu-img", "create", "-q", "-f", vmlet_image_format_name(format),
                        path, bytes, NULL};
  g_autofree char *err = NULL;
  int status = 0;
  /* qemu-img creates an empty image in a few ms; the copy comes over NBD. */
  if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                    NULL, NULL, NULL, &err, &status, NULL) ||
      !g_spawn_check_wait_status(status, NULL))
    return fail(error, VMLET_MIG_ERROR_DISK, "creating %s: %s", path,
                err && *err ? g_strstrip(err) : "qemu-img failed");
  return TRUE;
}

static gboolean take_disk(VmMigIn *m, JsonObject *d, GError **error)
{
  static const char *const kinds[] = {"VirtualDisk", "VirtualImage", "ClusterVirtualImage",
                                      NULL};
  static const char *const formats[] = {"qcow2", "raw", "iso", NULL};
  g_autoptr(VmletDiag) diag = vmlet_diag_new("disk");
  guint kind = 0, format = 0;
  const char *name = NULL, *fingerprint = NULL;
  gint64 size = 0;
  gboolean ro = FALSE;
  jv_get_enum(diag, d, "disks[]", "kind", JV_REQUIRED, kinds, &kind);
  vmlet_get_name(diag, d, "disks[]", "name", JV_REQUIRED, &name);
  jv_get_enum(diag, d, "disks[]", "format", JV_REQUIRED, formats, &format);
  jv_get_bool(diag, d, "disks[]", "readOnly", JV_REQUIRED, &ro);
  jv_get_int(diag, d, "disks[]", "virtualSize", JV_REQUIRED, 0, G_MAXINT64, &size);
  jv_get_string(diag, d, "disks[]", "fingerprint", JV_OPTIONAL, 64, &fingerprint);
  if (!vmlet_diag_check(diag, error)) {
    (*error)->domain = VMLET_MIG_ERROR;
    (*error)->code = VMLET_MIG_ERROR_INVALID;
    return FALSE;
  }
  g_autofree char *path = place(m, d, (VmBlockKind)kind, name, error);
  if (!path)
    return FALSE;
  VmMigDisk *md = g_new0(VmMigDisk, 1);
  md->kind = (VmBlockKind)kind;
  md->name = g_strdup(name);
  md->path = g_strdup(path);
  md->format = (VmletImageFormat)format;
  md->read_only = ro;
  md->virtual_size = (guint64)size;
  g_ptr_array_add(m->disks, md);
  guint64 here_size = 0;
  g_autofree char *here = NULL;
  g_autoptr(GError) probe = NULL;
  if (vm_mig_disk_probe(path, md->format, &here_size, &here, &probe)) {
    gboolean same = fingerprint && g_str_equal(here, fingerprint);
    /* Written disks: only the very file (the source's marker beside it) will do, whatever
     * the guest wrote meanwhile. Read-only images: a copy with the same size and head is
     * the same image. */
    if (ro ? same : vm_mig_marker_matches(path, m->journal->id, m->marker_token)) {
      md->shared = TRUE;
      return TRUE;
    }
    if (same)
      return fail(error, VMLET_MIG_ERROR_DISK,
                  "%s \"%s\": %s exists on this node but is a copy, not on storage the "
                  "source shares (no marker of the source beside it; a disk left by an "
                  "earlier migration?): refusing to overwrite it - move it away to let the "
                  "migration copy the disk", kinds[kind], name, path);
    return fail(error, VMLET_MIG_ERROR_DISK,
                "%s \"%s\": %s exists on this node with other content (not the source's "
                "file): refusing to overwrite it", kinds[kind], name, path);
  }
  if (!g_error_matches(probe, VMLET_ERROR, VMLET_ERROR_NOT_FOUND))
    return fail(error, VMLET_MIG_ERROR_DISK, "%s", probe->message);
  if (ro)
    return fail(error, VMLET_MIG_ERROR_DISK,
                "%s \"%s\": not on this node at %s (images are not copied: put the same file "
                "there, or on storage both nodes share)", kinds[kind], name, path);
  if (!create_image(m->vm, path, md->format, md->virtual_size, error))
    return FALSE;
  md->created = TRUE;
  g_ptr_array_add(m->journal->created, g_strdup(path));
  return TRUE;
}

/* ---- the request ---- */

static gboolean carried(JsonObject *files, const char *key, GBytes **out, GError **error)
{
  const char *b64 = jv_string_at(files, key);
  if (!b64)
    return TRUE;
  gsize len = 0;
  guchar *data = g_base64_decode(b64, &len);
  if (!data || !len) {
    g_free(data);
    return fail(error, VMLET_MIG_ERROR_INVALID, "files.%s: not base64", key);
  }
  *out = g_bytes_new_take(data, len);
  return TRUE;
}

/* The record of a VM that keeps its history: restarts, the spec its QEMU started from (so
 * restartAwaitingChanges stays what it was), the machine type it runs. */
static void take_record(VmletVm *vm, JsonObject *r)
{
  JsonNode *started = r ? json_object_get_member(r, "startedSpec") : NULL;
  if (started && JSON_NODE_HOLDS_OBJECT(started)) {
    g_clear_pointer(&vm->rec->started_spec, json_node_unref);
    vm->rec->started_spec = json_node_copy(started);
  }
  const char *digest = jv_string_at(r, "provisioningDigest");
  if (digest && strlen(digest) <= 64)
    vm_set_str(&vm->rec->provisioning_digest, digest);
  JsonObject *machine = jv_object_at(r, "machine");
  const char *alias = jv_string_at(machine, "alias"), *resolved = jv_string_at(machine, "resolved");
  if (alias && resolved && strlen(alias) <= 64 && strlen(resolved) <= 64) {
    vm_set_str(&vm->rec->machine_alias, alias);
    vm_set_str(&vm->rec->machine, resolved);
  }
  vm->rec->restarts = (guint)CLAMP(jv_int_at(r, "restarts", 0), 0, G_MAXINT32);
  vm->rec->stopped_manually = jv_bool_at(r, "stoppedManually", FALSE);
  gint64 created = jv_int_at(r, "createdUs", 0);
  if (created > 0)
    vm->rec->created_us = created;
}

static gboolean check_request(VmMigIn *m, JsonObject *req, GError **error)
{
  VmletVm *vm = m->vm;
  JsonObject *r = jv_object_at(req, "record");
  JsonArray *hot = jv_array_at(r, "hotplugged");
  if (hot && json_array_get_length(hot))
    return fail(error, VMLET_MIG_ERROR_UNSCHEDULABLE,
                "the VM has hot-plugged devices; vmlet does not migrate them yet (detach "
                "them first)");
  g_autofree char *mismatch = NULL;
  if (!vm_spec_matches_node(vm->spec, vm->env->node->labels, &mismatch))
    return fail(error, VMLET_MIG_ERROR_UNSCHEDULABLE, "node %s does not match: %s",
                vm->env->node->name, mismatch);
  if (!vmlet_inventory_class(vm->env->inv, vm->spec->class_name))
    return fail(error, VMLET_MIG_ERROR_UNSCHEDULABLE,
                "VirtualMachineClass \"%s\" is not defined on node %s", vm->spec->class_name,
                vm->env->node->name);
  JsonObject *files = jv_object_at(req, "files");
  if (!carried(files, "provisioning", &vm->carried_seed, error) ||
      !carried(files, "nvram", &vm->carried_nvram, error))
    return FALSE;
  m->marker_token = g_strdup(jv_string_at(req, "sharedMarker"));
  JsonObject *caps = jv_object_at(req, "capabilities");
  m->auto_converge = jv_bool_at(caps, "autoConverge", FALSE);
  m->multifd_channels = (guint)CLAMP(jv_int_at(caps, "multifdChannels", 0), 0, 16);
  JsonArray *disks = jv_array_at(req, "disks");
  if (!disks || json_array_get_length(disks) > VM_MAX_BLOCK_DEVICES)
    return fail(error, VMLET_MIG_ERROR_INVALID, "disks: expected a list of at most %d",
                VM_MAX_BLOCK_DEVICES);
  /* Journaled before any image is made, so a restart knows what to remove. */
  for (guint i = 0; i < json_array_get_length(disks); i++) {
    JsonObject *d = json_array_get_object_element(disks, i);
    if (!d)
      return fail(error, VMLET_MIG_ERROR_INVALID, "disks[%u]: expected an object", i);
    if (!vmlet_mig_journal_save(m->journal, vm->env->node->state_dir, error) ||
        !take_disk(m, d, error))
      return FALSE;
  }
  take_record(vm, r);
  return vmlet_mig_journal_save(m->journal, vm->env->node->state_dir, error);
}

void mig_in_prepare(VmletVm *vm, JsonObject *req, const char *source, const char *source_dn,
                    GTask *task)
{
  VmMigIn *m = g_new0(VmMigIn, 1);
  m->vm = vm;
  m->source = g_strdup(source);
  m->source_dn = g_strdup(source_dn);
  m->disks = g_ptr_array_new_with_free_func(vm_mig_disk_free);
  m->journal = vmlet_mig_journal_new(jv_string_at(req, "id"), VMLET_MIG_DESTINATION,
                                     vm->namespace, vm->name, source,
                                     (guint64)jv_int_at(req, "generation", 0));
  /* What the drop-ins get once the VM is owned: the VM first, then the disks this node
   * had no object for (place()). Journaled, so a restarted vmletd can finish a commit. */
  JsonArray *manifests = json_array_new();
  json_array_add_element(manifests, json_node_copy(json_object_get_member(req, "vm")));
  m->journal->manifests = json_node_init_array(json_node_alloc(), manifests);
  json_array_unref(manifests);
  m->prepare = g_object_ref(task);
  m->last_contact_us = g_get_monotonic_time();
  vm->mig_in = m;
  vm_set_job(vm, VM_JOB_MIGRATE_IN, VM_STOP_USER, FALSE);
  mig_state_begin(vm, source, vm->env->node->name);
  vmlet_migrations_register(vm->env->migrations, m->journal->id, G_OBJECT(vm));
  g_autoptr(GError) error = NULL;
  if (!check_request(m, req, &error)) {
    mig_in_abort(m, error->message);
    g_task_return_error(task, g_steal_pointer(&error));
    g_clear_object(&m->prepare);
    return;
  }
  vm_start(vm, VM_START_INCOMING);
  if (!vm->qemu) {
    g_autofree char *why = g_strdup(vm->problem ? vm->problem : "QEMU did not start");
    mig_in_abort(m, why);
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_UNSCHEDULABLE,
                            "starting the incoming QEMU: %s", why);
    g_clear_object(&m->prepare);
    return;
  }
  vm_set_phase(vm, VM_PHASE_MIGRATING);
}

VmMigIn *mig_in_rebuild(VmletVm *vm, VmletMigJournal *j)
{
  VmMigIn *m = g_new0(VmMigIn, 1);
  m->vm = vm;
  m->journal = j;
  m->recovered = TRUE;
  m->source = g_strdup(j->peer);
  m->disks = g_ptr_array_new_with_free_func(vm_mig_disk_free);
  m->committed = j->step == VMLET_MIG_COMMITTED;
  m->last_contact_us = g_get_monotonic_time();
  vm->mig_in = m;
  vm_set_job(vm, VM_JOB_MIGRATE_IN, VM_STOP_USER, FALSE);
  mig_state_begin(vm, j->peer, vm->env->node->name);
  vmlet_migrations_register(vm->env->migrations, j->id, G_OBJECT(vm));
  return m;
}

/* ---- undo ---- */

static void remove_created(VmMigIn *m)
{
  /* Only what this migration made, by the journal's list: never a file that was there. */
  for (guint i = 0; i < m->journal->created->len; i++)
    g_unlink(m->journal->created->pdata[i]);
}

void mig_in_abort(VmMigIn *m, const char *why)
{
  VmletVm *vm = m->vm;
  if (m->ended)
    return;
  if (m->committed)
    return; /* the VM runs here: nothing to abort */
  vm_set_str(&m->journal->reason, why);
  if (vm->qemu) {
    /* The rest when QEMU has gone (vm_migrate_in_exited). */
    vmlet_mig_journal_step(m->journal, vm->env->node->state_dir, VMLET_MIG_ABORTING, NULL);
    vmlet_instance_quit(vm->qemu);
    return;
  }
  m->ended = TRUE;
  remove_created(m);
  /* The outcome stays to answer the source: it resumes only on a definite "Aborted". */
  vmlet_mig_journal_step(m->journal, vm->env->node->state_dir, VMLET_MIG_ABORTED, NULL);
  mig_in_release(m);
  /* The VM was never this node's: forgotten, as if it never came. */
  vm_set_phase(vm, VM_PHASE_TERMINATING);
  vm_forget(vm);
}

void mig_in_release(VmMigIn *m)
{
  VmletVm *vm = m->vm;
  m->ended = TRUE;
  if (m->commit) {
    /* A commit under way when QEMU died: the VM is this node's all the same. */
    g_task_return_pointer(m->commit, mig_in_describe(m), (GDestroyNotify)json_node_unref);
    g_clear_object(&m->commit);
  }
  vmlet_migrations_unregister(vm->env->migrations, m->journal->id);
  vmlet_migrations_give_ports(vm->env->migrations, m->ports, m->n_ports);
  if (!m->recovered)
    vmlet_migrations_give_slot(vm->env->migrations, FALSE);
  if (m->tls_dir)
    vm_host_remove_dir(m->tls_dir);
  vm->mig_in = NULL;
  vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
  mig_in_free(m);
}

void vm_migrate_in_cancel(VmletVm *vm, const char *reason)
{
  if (vm->mig_in)
    mig_in_abort(vm->mig_in, reason);
}

gboolean vm_migrate_in_exited(VmletVm *vm)
{
  VmMigIn *m = vm->mig_in;
  if (!m)
    return FALSE;
  /* Held to the end: an abort forgets the VM, dropping the manager's reference. */
  g_autoptr(VmletVm) keep G_GNUC_UNUSED = g_object_ref(vm);
  vm->rec->proc.pid = 0;
  if (m->committed) {
    /* Committed, and QEMU died before it resumed: the VM is this node's all the same (the
     * source never resumes now); it is a crashed VM here, its run policy decides. */
    mig_in_finish(m, NULL);
    return FALSE;
  }
  if (m->prepare) {
    g_task_return_new_error(m->prepare, VMLET_MIG_ERROR, VMLET_MIG_ERROR_UNSCHEDULABLE,
                            "the incoming QEMU exited; see %s/qemu.log on %s",
                            vm->rec->runtime_dir, vm->env->node->name);
    g_clear_object(&m->prepare);
  }
  mig_in_abort(m, m->journal->reason ? m->journal->reason : "the incoming QEMU exited");
  return TRUE;
}
