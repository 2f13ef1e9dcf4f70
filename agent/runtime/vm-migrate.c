#include "vm-migrate.h"

#include "mig-error.h"
#include "vm-migrate-in.h"
#include "vm-migrate-out.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "meta.h"
#include "vmlet-error.h"

/* The first bytes of an image hold its header (qcow2: format, size, tables' places; an
 * ISO's volume descriptor, with its volume id and creation time, at 32 KiB), which a
 * running guest's writes leave alone: the two ends compare them to tell a read-only image
 * from a different one at the same path (a written disk is told by its marker). 64 KiB:
 * an ISO's first 32 KiB are usually all zeros. */
#define FINGERPRINT_BYTES (64 * 1024)

void vm_migration_state_clear(VmMigrationState *st)
{
  g_clear_pointer(&st->source, g_free);
  g_clear_pointer(&st->target, g_free);
  g_clear_pointer(&st->result, g_free);
  g_clear_pointer(&st->reason, g_free);
  st->start_us = st->end_us = 0;
}

static JsonObject *node_ref(const char *node)
{
  JsonObject *o = json_object_new();
  if (node)
    json_object_set_string_member(o, "node", node);
  return o;
}

JsonNode *vm_migration_state_json(const VmMigrationState *st)
{
  if (!st->start_us)
    return NULL;
  JsonObject *o = json_object_new();
  g_autofree char *start = vmlet_timestamp(st->start_us);
  json_object_set_string_member(o, "startTimestamp", start);
  if (st->end_us) {
    g_autofree char *end = vmlet_timestamp(st->end_us);
    json_object_set_string_member(o, "endTimestamp", end);
  }
  json_object_set_object_member(o, "source", node_ref(st->source));
  json_object_set_object_member(o, "target", node_ref(st->target));
  if (st->result)
    json_object_set_string_member(o, "result", st->result);
  if (st->reason)
    json_object_set_string_member(o, "reason", st->reason);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

/* ---- disks ---- */

void vm_mig_disk_free(gpointer p)
{
  VmMigDisk *d = p;
  g_free(d->name);
  g_free(d->path);
  g_free(d->fingerprint);
  g_free(d);
}

static guint64 be64(const guint8 *p)
{
  guint64 v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

gboolean vm_mig_disk_probe(const char *path, VmletImageFormat format, guint64 *size,
                           char **fingerprint, GError **error)
{
  vmlet_autofd fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    g_set_error(error, VMLET_ERROR, errno == ENOENT ? VMLET_ERROR_NOT_FOUND : VMLET_ERROR_IO,
                "%s: %s", path, g_strerror(errno));
    return FALSE;
  }
  if (!S_ISREG(st.st_mode)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: not a regular file (block devices migrate only as shared storage)", path);
    return FALSE;
  }
  g_autofree guint8 *head = g_malloc0(FINGERPRINT_BYTES);
  gssize n = pread(fd, head, FINGERPRINT_BYTES, 0);
  if (n < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", path, g_strerror(errno));
    return FALSE;
  }
  *size = (guint64)st.st_size;
  if (format == VMLET_FORMAT_QCOW2) {
    /* QcowHeader: magic "QFI\xfb", version, backing file offset and size, cluster bits,
     * then the virtual size at byte 24, big-endian. */
    if (n < 32 || memcmp(head, "QFI\xfb", 4) != 0) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: not a qcow2 image", path);
      return FALSE;
    }
    *size = be64(head + 24);
  }
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  g_checksum_update(sum, (const guchar *)size, sizeof(*size));
  g_checksum_update(sum, head, n);
  *fingerprint = g_strdup(g_checksum_get_string(sum));
  return TRUE;
}

static VmMigDisk *disk_of(const VmPlanDisk *p, GError **error)
{
  VmMigDisk *d = g_new0(VmMigDisk, 1);
  d->kind = p->kind;
  d->name = g_strdup(p->name);
  d->path = g_strdup(p->path);
  d->format = p->format;
  d->read_only = p->read_only;
  d->plan = (VmPlanDisk *)p;
  if (p->host_device)
    return d; /* a block device: shared storage by definition here */
  if (!vm_mig_disk_probe(p->path, p->format, &d->virtual_size, &d->fingerprint, error)) {
    vm_mig_disk_free(d);
    return NULL;
  }
  return d;
}

GPtrArray *vm_mig_disks_of(const VmPlan *plan, GError **error)
{
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(vm_mig_disk_free);
  const GPtrArray *lists[] = {plan->disks, plan->hotplugged};
  for (gsize l = 0; l < G_N_ELEMENTS(lists); l++)
    for (guint i = 0; lists[l] && i < lists[l]->len; i++) {
      const VmPlanDisk *p = lists[l]->pdata[i];
      if (!p->is_ref && !p->attachment)
        continue; /* the provisioning CD travels as bytes */
      VmMigDisk *d = disk_of(p, error);
      if (!d)
        return NULL;
      g_ptr_array_add(out, d);
    }
  return g_steal_pointer(&out);
}

/* ---- shared storage, told apart from a copy ---- */

char *vm_mig_tls_for_qemu(VmletVm *vm, const char *id, gboolean server, GError **error)
{
  VmletConfine *c = vm_confinement(vm, error);
  if (!c)
    return NULL;
  /* Not in the VM's runtime directory: that one is QEMU's own (vmlet_qemu_access_own_dir),
   * and vmletd must not chown or write where QEMU can plant a symlink. */
  g_autofree char *top = g_build_filename(vm->env->node->run_dir, "migration-tls", NULL);
  if (mkdir(top, 0711) < 0 && errno != EEXIST) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", top, g_strerror(errno));
    return NULL;
  }
  char *dir = g_build_filename(top, id, NULL);
  gid_t gid = vmlet_confine_changes_user(c) ? vmlet_confine_gid(c) : getgid();
  if (!vmlet_tls_install_for_qemu(vmlet_migrations_tls(vm->env->migrations), dir, server, gid,
                                  error)) {
    g_free(dir);
    return NULL;
  }
  return dir;
}

char *vm_mig_marker_path(const char *disk_path, const char *id)
{
  g_autofree char *dir = g_path_get_dirname(disk_path);
  g_autofree char *name = g_strdup_printf(".vmlet-shared-%s", id);
  return g_build_filename(dir, name, NULL);
}

gboolean vm_mig_marker_matches(const char *disk_path, const char *id, const char *token)
{
  g_autofree char *path = vm_mig_marker_path(disk_path, id);
  g_autofree char *data = NULL;
  gsize len = 0;
  /* A token is 32 hex digits: anything longer is not one. */
  if (!token || !vmlet_read_file_bounded(path, 64, &data, &len, NULL))
    return FALSE;
  return len == strlen(token) && memcmp(data, token, len) == 0;
}

/* ---- can it go? ---- */

char *vm_migratable(VmletVm *vm)
{
  if (!vm->env->migrations)
    return g_strdup("migration is not enabled on this node ([migration] in vmlet.conf)");
  if (vm->phase == VM_PHASE_MIGRATING)
    return g_strdup("the VM is migrating");
  if (vm->phase != VM_PHASE_RUNNING)
    return g_strdup_printf("the VM is %s", vm_phase_name(vm->phase));
  if (vm->rec->hotplugged)
    return g_strdup("the VM has hot-plugged devices: detach them first (vmlet does not migrate "
                    "them yet)");
  if (vm->job.kind != VM_JOB_NONE)
    return g_strdup_printf("the VM is busy (%s)", vm_job_kind_name(vm->job.kind));
  if (!vm->spec || !vm->plan)
    return g_strdup("the VM has no usable spec");
  for (guint i = 0; i < vm->plan->disks->len; i++) {
    const VmPlanDisk *d = vm->plan->disks->pdata[i];
    if (d->host_device && !d->read_only)
      return g_strdup_printf("%s \"%s\" is a block device: only shared storage migrates it",
                             vm_block_kind_name(d->kind), d->name);
  }
  g_autoptr(GPtrArray) peers = vmlet_migrations_peers(vm->env->migrations);
  if (peers->len == 0)
    return g_strdup("no migration peers are configured (<config-dir>/peers.d)");
  return NULL;
}

/* ---- status.migrationState ---- */

void mig_state_begin(VmletVm *vm, const char *source, const char *target)
{
  if (!vm->mig_state)
    vm->mig_state = g_new0(VmMigrationState, 1);
  vm_migration_state_clear(vm->mig_state);
  vm->mig_state->start_us = g_get_real_time();
  vm->mig_state->source = g_strdup(source);
  vm->mig_state->target = g_strdup(target);
}

void mig_state_target(VmletVm *vm, const char *target)
{
  if (vm->mig_state)
    vm_set_str(&vm->mig_state->target, target);
}

void mig_state_end(VmletVm *vm, const char *result, const char *reason)
{
  if (!vm->mig_state)
    return;
  vm->mig_state->end_us = g_get_real_time();
  vm_set_str(&vm->mig_state->result, result);
  vm_set_str(&vm->mig_state->reason, reason);
}

void vm_migration_free(VmletVm *vm)
{
  if (vm->mig_state) {
    vm_migration_state_clear(vm->mig_state);
    g_clear_pointer(&vm->mig_state, g_free);
  }
}

/* ---- what the manager asks on behalf of the peer API ---- */

void vmlet_vm_migrate_in(VmletVm *vm, VmSpec *spec, JsonObject *request, const char *peer,
                         const char *peer_dn, GTask *task)
{
  /* The job first: nothing may start this VM as an ordinary one meanwhile. */
  vm_set_job(vm, VM_JOB_MIGRATE_IN, VM_STOP_USER, FALSE);
  vmlet_vm_set_spec(vm, spec, NULL, NULL);
  mig_in_prepare(vm, request, peer, peer_dn, task);
}

const char *vmlet_vm_migration_peer(VmletVm *vm)
{
  if (vm->mig_in)
    return vm->mig_in->source;
  if (vm->mig_out && vm->mig_out->peer)
    return vm->mig_out->peer->name;
  return NULL;
}

JsonNode *vmlet_vm_migration_describe(VmletVm *vm)
{
  return vm->mig_in ? vm_migrate_in_describe(vm) : vm_migrate_out_describe(vm);
}

void vmlet_vm_migration_commit(VmletVm *vm, guint64 generation, GTask *task)
{
  if (!vm->mig_in) {
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID,
                            "this node is the migration's source");
    return;
  }
  mig_in_commit(vm->mig_in, generation, task);
}

gboolean vmlet_vm_migration_abort(VmletVm *vm, const char *why, GError **error)
{
  if (vm->mig_in && vm->mig_in->committed) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_BUSY,
                "the migration is committed: the VM runs on this node");
    return FALSE;
  }
  if (vm->mig_in)
    mig_in_abort(vm->mig_in, why);
  else
    vm_migrate_out_cancel(vm, why);
  return TRUE;
}

gboolean vmlet_vm_is_migrating_in(VmletVm *vm)
{
  return vm->mig_in != NULL;
}

void vm_migrate_in_free(VmletVm *vm)
{
  g_clear_pointer(&vm->mig_in, mig_in_free);
}
