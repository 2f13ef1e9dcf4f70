/* A start's "prepare host" step (vm-start.c): the VM's run directory, its provisioning
 * CD-ROM built in process from the spec or its Secret, the NVRAM copy of an EFI VM, QEMU's
 * log, and every file QEMU will open handed to QEMU's unprivileged user. */
#include "vm-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "fileio.h"
#include "nocloud.h"
#include "qemu-access.h"
#include "strutil.h"
#include "vmlet-error.h"

char *vm_secret_digest(VmletVm *vm)
{
  const VmSpec *spec = vm->spec;
  if (!spec || (spec->provisioning != VM_PROVISIONING_USER_DATA_REF &&
                spec->provisioning != VM_PROVISIONING_SYSPREP_REF))
    return NULL;
  VmletSecret *secret = vmlet_inventory_secret(vm->env->inv, spec->meta.namespace,
                                               spec->provisioning_secret, NULL);
  if (!secret)
    return NULL;
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  g_checksum_update(sum, (const guchar *)secret->type, -1);
  guint n = 0;
  g_autofree const char **keys = (const char **)g_hash_table_get_keys_as_array(secret->data, &n);
  qsort(keys, n, sizeof(char *), vmlet_compare_str_ptrs);
  for (guint i = 0; i < n; i++) {
    gsize len = 0;
    const guchar *data = g_bytes_get_data(g_hash_table_lookup(secret->data, keys[i]), &len);
    g_checksum_update(sum, (const guchar *)keys[i], (gssize)strlen(keys[i]) + 1);
    g_checksum_update(sum, data, (gssize)len);
  }
  return g_strdup(g_checksum_get_string(sum));
}

/* UserDataRef / SysprepRef: the Secret's type and keys are checked here, at start, so a
 * Secret that appears or is fixed later lets the Pending VM start. Errors name the Secret
 * and the key, never a value. */
static gboolean build_from_secret(VmletVm *vm, const VmPlanDisk *disk, GError **error)
{
  g_free(vm->rec->provisioning_digest);
  vm->rec->provisioning_digest = vm_secret_digest(vm);
  const VmSpec *spec = vm->spec;
  gboolean sysprep = spec->provisioning == VM_PROVISIONING_SYSPREP_REF;
  const char *field = sysprep ? "spec.provisioning.sysprepRef" : "spec.provisioning.userDataRef";
  g_autofree char *why = NULL;
  VmletSecret *secret = vmlet_inventory_secret(vm->env->inv, spec->meta.namespace,
                                               spec->provisioning_secret, &why);
  if (!secret) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "%s: %s", field, why);
    return FALSE;
  }
  const char *want = sysprep ? VMLET_SECRET_TYPE_SYSPREP : VMLET_SECRET_TYPE_CLOUD_INIT;
  if (g_strcmp0(secret->type, want) != 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: Secret \"%s\" has type \"%s\", expected \"%s\"", field,
                spec->provisioning_secret, secret->type, want);
    return FALSE;
  }
  if (!sysprep) {
    GBytes *ud = g_hash_table_lookup(secret->data, "userData");
    if (!ud) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: Secret \"%s\" has no key \"userData\"", field,
                  spec->provisioning_secret);
      return FALSE;
    }
    gsize len = 0;
    const char *data = g_bytes_get_data(ud, &len);
    return vmlet_nocloud_write(disk->path, spec->meta.namespace, spec->meta.name, data, len,
                               NULL, error);
  }
  g_autoptr(GPtrArray) names = g_ptr_array_new();
  g_autoptr(GPtrArray) blobs = g_ptr_array_new();
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, secret->data);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    g_ptr_array_add(names, k);
    g_ptr_array_add(blobs, v);
  }
  if (!vmlet_sysprep_write(disk->path, names, blobs, error)) {
    g_prefix_error(error, "%s: Secret \"%s\": ", field, spec->provisioning_secret);
    return FALSE;
  }
  return TRUE;
}

/* The provisioning CD-ROM, built in process for every start (so a changed userData is
 * what the guest sees after a restart), mode 0600 in the VM's run dir. */
static gboolean build_provisioning(VmletVm *vm, const VmPlanDisk *disk, GError **error)
{
  const VmSpec *spec = vm->spec;
  switch (spec->provisioning) {
  case VM_PROVISIONING_USER_DATA:
    return vmlet_nocloud_write(disk->path, spec->meta.namespace, spec->meta.name,
                               spec->user_data, strlen(spec->user_data), NULL, error);
  case VM_PROVISIONING_USER_DATA_REF:
  case VM_PROVISIONING_SYSPREP_REF:
    return build_from_secret(vm, disk, error);
  case VM_PROVISIONING_NONE:
    break;
  }
  return TRUE;
}

static gboolean prepare_files(VmletVm *vm, const VmPlan *plan, int *log_fd, GError **error)
{
  if (g_mkdir_with_parents(plan->runtime_dir, 0700) < 0 || chmod(plan->runtime_dir, 0700) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", plan->runtime_dir,
                g_strerror(errno));
    return FALSE;
  }
  for (guint i = 0; i < plan->disks->len; i++) {
    const VmPlanDisk *d = plan->disks->pdata[i];
    if (!d->is_ref) {
      /* A migrated VM's seed is carried, not rebuilt: its guest saw that one. */
      gsize len = 0;
      const char *bytes = vm->carried_seed ? g_bytes_get_data(vm->carried_seed, &len) : NULL;
      if (bytes ? !vmlet_write_file_atomic(d->path, bytes, len, 0600, error)
                : !build_provisioning(vm, d, error))
        return FALSE;
      continue;
    }
    if (!g_file_test(d->path, G_FILE_TEST_EXISTS)) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
                  "%s \"%s\": %s does not exist", vm_block_kind_name(d->kind), d->name, d->path);
      return FALSE;
    }
  }
  if (plan->ovmf_vars && vm->carried_nvram) {
    gsize len = 0;
    const char *bytes = g_bytes_get_data(vm->carried_nvram, &len);
    g_autofree char *dir = g_path_get_dirname(plan->ovmf_vars);
    if (g_mkdir_with_parents(dir, 0700) < 0 ||
        !vmlet_write_file_atomic(plan->ovmf_vars, bytes, len, 0600, error))
      return FALSE;
  } else if (plan->ovmf_vars && !g_file_test(plan->ovmf_vars, G_FILE_TEST_EXISTS)) {
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autofree char *dir = g_path_get_dirname(plan->ovmf_vars);
    if (g_mkdir_with_parents(dir, 0700) < 0 ||
        !g_file_get_contents(plan->ovmf_vars_template, &data, &len, error) ||
        !vmlet_write_file_atomic(plan->ovmf_vars, data, len, 0600, error))
      return FALSE;
  }
  g_autofree char *log = g_build_filename(plan->runtime_dir, "qemu.log", NULL);
  *log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (*log_fd < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", log, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

/* QEMU's user may open exactly the files of its own VM: disks it writes become its own
 * (0600), images it only reads are given to its group (0640), its run directory (QEMU
 * creates its sockets there), seed ISO and NVRAM belong to it. */
static gboolean grant_access(const VmPlan *plan, const VmletConfine *c, GError **error)
{
  if (!vmlet_confine_changes_user(c))
    return TRUE;
  /* QEMU creates its sockets in the run directory: its own, reached through a parent
   * that lets only QEMU's group pass. */
  g_autofree char *vms_dir = g_path_get_dirname(plan->runtime_dir);
  g_autofree char *run_dir = g_path_get_dirname(vms_dir);
  /* The run directory is group vmlet's (the API socket): others, QEMU among them, may
   * only pass through it (0751); the socket itself is 0660. */
  struct stat st;
  if (stat(run_dir, &st) == 0 && !(st.st_mode & S_IXOTH) &&
      chmod(run_dir, (st.st_mode & 07777) | S_IXOTH) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", run_dir, g_strerror(errno));
    return FALSE;
  }
  if (!vmlet_qemu_access_traverse_dir(vms_dir, c, error) ||
      !vmlet_qemu_access_own_dir(plan->runtime_dir, c, error))
    return FALSE;
  for (guint i = 0; i < plan->disks->len; i++) {
    const VmPlanDisk *d = plan->disks->pdata[i];
    g_autofree char *what = d->is_ref ? g_strdup_printf("%s \"%s\"", vm_block_kind_name(d->kind),
                                                        d->name)
                                      : g_strdup("the provisioning ISO");
    /* The seed ISO is the VM's own (built for it, in its run directory). */
    gboolean writable = !d->read_only || !d->is_ref;
    if (!vmlet_qemu_access_grant_file(d->path, writable, what, c, error))
      return FALSE;
  }
  for (guint i = 0; plan->hotplugged && i < plan->hotplugged->len; i++) {
    const VmPlanDisk *d = plan->hotplugged->pdata[i];
    g_autofree char *what = g_strdup_printf("%s \"%s\"", vm_block_kind_name(d->kind), d->name);
    if (!vmlet_qemu_access_grant_file(d->path, !d->read_only, what, c, error))
      return FALSE;
  }
  if (plan->ovmf_vars) {
    g_autofree char *nvram_dir = g_path_get_dirname(plan->ovmf_vars);
    if (!vmlet_qemu_access_traverse_dir(nvram_dir, c, error) ||
        !vmlet_qemu_access_grant_file(plan->ovmf_vars, TRUE, "the EFI variable store", c, error))
      return FALSE;
  }
  return TRUE;
}

/* A deleted VM leaves nothing in the run dir: sockets, its seed ISO, QEMU's log. The dir
 * holds only files vmlet and QEMU created, never subdirectories. */
void vm_host_cleanup(VmletVm *vm)
{
  if (vm->rec->runtime_dir)
    vm_host_remove_dir(vm->rec->runtime_dir);
}

gboolean vm_host_prepare(VmletVm *vm, const VmPlan *plan, const VmletConfine *confine,
                         int *log_fd, GError **error)
{
  return prepare_files(vm, plan, log_fd, error) && grant_access(plan, confine, error);
}

/* vmlet makes at most one level below a run dir (a migration's TLS copy). Symbolic links
 * are removed, never followed: the directory belongs to QEMU's user. */
static void remove_tree(const char *dir, guint depth)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name(d))) {
    g_autofree char *path = g_build_filename(dir, name, NULL);
    if (depth > 0 && g_file_test(path, G_FILE_TEST_IS_DIR) &&
        !g_file_test(path, G_FILE_TEST_IS_SYMLINK))
      remove_tree(path, depth - 1);
    else
      g_unlink(path);
  }
  g_rmdir(dir);
}

void vm_host_remove_dir(const char *dir)
{
  /* A symlink in its place is removed, never followed. */
  if (g_file_test(dir, G_FILE_TEST_IS_SYMLINK))
    g_unlink(dir);
  else
    remove_tree(dir, 1);
}
