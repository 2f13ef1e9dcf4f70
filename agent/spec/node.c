#include "node.h"

#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "meta.h"
#include "vmlet-config.h"
#include "vmlet-error.h"

#define NODE_CONF_MAX_BYTES (64 * 1024)

const char *vmlet_accel_name(VmletAccel accel)
{
  switch (accel) {
  case VMLET_ACCEL_AUTO:
    return "auto";
  case VMLET_ACCEL_KVM:
    return "kvm";
  case VMLET_ACCEL_TCG:
    return "tcg";
  }
  return "auto";
}

const char *vmlet_cgroup_manager_name(VmletCgroupManagerKind kind)
{
  switch (kind) {
  case VMLET_CGROUP_AUTO:
    return "auto";
  case VMLET_CGROUP_SYSTEMD:
    return "systemd";
  case VMLET_CGROUP_FS_V2:
    return "cgroupfs-v2";
  case VMLET_CGROUP_FS_V1:
    return "cgroupfs-v1";
  case VMLET_CGROUP_NONE:
    return "none";
  }
  return "auto";
}

const char *vmlet_cpu_limit_name(VmletCpuLimitMode mode)
{
  switch (mode) {
  case VMLET_CPU_LIMIT_GUARANTEE:
    return "guarantee";
  case VMLET_CPU_LIMIT_CAP:
    return "cap";
  }
  return "guarantee";
}

VmletNode *vmlet_node_new_default(void)
{
  VmletNode *n = g_new0(VmletNode, 1);
  n->name = g_strdup(g_get_host_name());
  n->labels = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  n->run_dir = g_strdup("/run/vmlet");
  n->state_dir = g_strdup("/var/lib/vmlet");
  n->disk_dir = g_strdup("/var/lib/vmlet/disks");
  n->image_dir = g_strdup("/var/lib/vmlet/images");
  n->config_dir = g_strdup("/etc/vmlet");
  n->profiles_dir = g_strdup(VMLET_PROFILES_DIR);
  n->qemu_binary = g_strdup("/usr/bin/qemu-system-x86_64");
  n->accel = VMLET_ACCEL_AUTO;
  /* Debian's ovmf package; the 4M builds are the ones with Secure Boot variants. */
  n->ovmf_code = g_strdup("/usr/share/OVMF/OVMF_CODE_4M.fd");
  n->ovmf_vars = g_strdup("/usr/share/OVMF/OVMF_VARS_4M.fd");
  n->ovmf_code_secboot = g_strdup("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd");
  n->ovmf_vars_secboot = g_strdup("/usr/share/OVMF/OVMF_VARS_4M.ms.fd");
  n->qemu_user = g_strdup("vmlet-qemu"); /* systemd/vmlet.sysusers */
  n->cgroup_manager = VMLET_CGROUP_AUTO;
  /* libvirt's and systemd-machined's slice: `systemd-cgls /machine.slice` shows VMs. */
  n->slice = g_strdup("machine.slice");
  n->cgroup_parent = g_strdup("/machine");
  n->cpu_limit = VMLET_CPU_LIMIT_GUARANTEE;
  vmlet_node_migration_defaults(&n->migration);
  return n;
}

void vmlet_node_free(VmletNode *n)
{
  if (!n)
    return;
  g_free(n->name);
  g_hash_table_unref(n->labels);
  g_free(n->run_dir);
  g_free(n->state_dir);
  g_free(n->disk_dir);
  g_free(n->image_dir);
  g_free(n->config_dir);
  g_free(n->profiles_dir);
  g_free(n->qemu_binary);
  g_free(n->ovmf_code);
  g_free(n->ovmf_vars);
  g_free(n->ovmf_code_secboot);
  g_free(n->ovmf_vars_secboot);
  g_free(n->qemu_user);
  g_free(n->slice);
  g_free(n->cgroup_parent);
  vmlet_node_migration_clear(&n->migration);
  g_free(n);
}

typedef struct {
  const char *group, *key;
  gsize offset; /* of a char * member of VmletNode, or 0 for special keys */
} NodeKey;

static const NodeKey path_keys[] = {
    {"paths", "run-dir", G_STRUCT_OFFSET(VmletNode, run_dir)},
    {"paths", "state-dir", G_STRUCT_OFFSET(VmletNode, state_dir)},
    {"paths", "disk-dir", G_STRUCT_OFFSET(VmletNode, disk_dir)},
    {"paths", "image-dir", G_STRUCT_OFFSET(VmletNode, image_dir)},
    {"paths", "config-dir", G_STRUCT_OFFSET(VmletNode, config_dir)},
    {"paths", "profiles-dir", G_STRUCT_OFFSET(VmletNode, profiles_dir)},
    {"qemu", "binary", G_STRUCT_OFFSET(VmletNode, qemu_binary)},
    {"qemu", "ovmf-code", G_STRUCT_OFFSET(VmletNode, ovmf_code)},
    {"qemu", "ovmf-vars", G_STRUCT_OFFSET(VmletNode, ovmf_vars)},
    {"qemu", "ovmf-code-secboot", G_STRUCT_OFFSET(VmletNode, ovmf_code_secboot)},
    {"qemu", "ovmf-vars-secboot", G_STRUCT_OFFSET(VmletNode, ovmf_vars_secboot)},
};

/* Settings with a fixed set of values, stored as an enum member of VmletNode. */
typedef struct {
  const char *group, *key;
  gsize offset; /* of an enum (int-sized) member */
  const char *const *names; /* indexed by the enum value */
} NodeChoice;

static const char *const accel_names[] = {"auto", "kvm", "tcg", NULL};
static const char *const cgroup_names[] = {"auto", "systemd", "cgroupfs-v2", "cgroupfs-v1",
                                           "none", NULL};
static const char *const cpu_limit_names[] = {"guarantee", "cap", NULL};

static const NodeChoice choice_keys[] = {
    {"qemu", "accel", G_STRUCT_OFFSET(VmletNode, accel), accel_names},
    {"resources", "cgroup-manager", G_STRUCT_OFFSET(VmletNode, cgroup_manager), cgroup_names},
    {"resources", "core-fraction", G_STRUCT_OFFSET(VmletNode, cpu_limit), cpu_limit_names},
};

static gboolean set_choice(VmletNode *n, const char *path, GKeyFile *kf, const NodeChoice *c,
                           GError **error)
{
  g_autofree char *v = g_key_file_get_string(kf, c->group, c->key, NULL);
  if (!v)
    return TRUE;
  g_strstrip(v);
  for (int i = 0; c->names[i]; i++)
    if (g_str_equal(v, c->names[i])) {
      *(int *)G_STRUCT_MEMBER_P(n, c->offset) = i;
      return TRUE;
    }
  g_autofree char *list = g_strjoinv(", ", (char **)c->names);
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
              "%s: [%s] %s: expected one of %s, found \"%s\"", path, c->group, c->key, list, v);
  return FALSE;
}

/* Plain strings checked by a pattern of their own. */
static const struct {
  const char *group, *key;
  gsize offset;
} string_keys[] = {
    {"qemu", "user", G_STRUCT_OFFSET(VmletNode, qemu_user)},
    {"resources", "slice", G_STRUCT_OFFSET(VmletNode, slice)},
    {"resources", "cgroup-parent", G_STRUCT_OFFSET(VmletNode, cgroup_parent)},
};

static gboolean valid_string_setting(const char *key, const char *v)
{
  gsize len = strlen(v);
  if (len > 200)
    return FALSE;
  if (g_str_equal(key, "user")) /* a user name, or empty for the agent's own user */
    return strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == len;
  if (g_str_equal(key, "slice"))
    return len > 6 && g_str_has_suffix(v, ".slice") && !strchr(v, '/') &&
           strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:") == len;
  /* cgroup-parent: path components without "." or ".." */
  if (len == 0 || strstr(v, "//") || g_str_has_suffix(v, "/"))
    return FALSE;
  g_auto(GStrv) parts = g_strsplit(v[0] == '/' ? v + 1 : v, "/", -1);
  for (guint i = 0; parts[i]; i++)
    if (!*parts[i] || g_str_equal(parts[i], ".") || g_str_equal(parts[i], ".."))
      return FALSE;
  return strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@") == len;
}

static gboolean set_string(VmletNode *n, const char *path, GKeyFile *kf, guint i, GError **error)
{
  g_autofree char *v = g_key_file_get_string(kf, string_keys[i].group, string_keys[i].key, NULL);
  if (!v)
    return TRUE;
  g_strstrip(v);
  if (!valid_string_setting(string_keys[i].key, v)) {
    static const char *const expected[] = {
        "a user name (letters, digits, '_', '-', '.'), or nothing for the agent's own user",
        "a slice unit name such as machine.slice",
        "a cgroup path such as /machine (absolute) or vmlet (below the agent's own cgroup)",
    };
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: [%s] %s: expected %s, found \"%s\"",
                path, string_keys[i].group, string_keys[i].key, expected[i], v);
    return FALSE;
  }
  char **slot = G_STRUCT_MEMBER_P(n, string_keys[i].offset);
  g_free(*slot);
  *slot = g_steal_pointer(&v);
  return TRUE;
}

static gboolean known_key(const char *group, const char *key)
{
  if (g_str_equal(group, "migration"))
    return vmlet_node_migration_known(key);
  if (g_str_equal(group, "node"))
    return g_str_equal(key, "name") || g_str_equal(key, "labels");
  for (gsize i = 0; i < G_N_ELEMENTS(choice_keys); i++)
    if (g_str_equal(group, choice_keys[i].group) && g_str_equal(key, choice_keys[i].key))
      return TRUE;
  for (gsize i = 0; i < G_N_ELEMENTS(string_keys); i++)
    if (g_str_equal(group, string_keys[i].group) && g_str_equal(key, string_keys[i].key))
      return TRUE;
  for (gsize i = 0; i < G_N_ELEMENTS(path_keys); i++)
    if (g_str_equal(group, path_keys[i].group) && g_str_equal(key, path_keys[i].key))
      return TRUE;
  return FALSE;
}

static gboolean set_path(VmletNode *n, const char *path, GKeyFile *kf, const NodeKey *k,
                         gboolean *explicit_out, GError **error)
{
  g_autofree char *v = g_key_file_get_string(kf, k->group, k->key, NULL);
  if (!v)
    return TRUE;
  g_strstrip(v);
  if (v[0] != '/' || strchr(v, ',') || strlen(v) > 512) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: [%s] %s: expected an absolute path of at most 512 bytes without commas, "
                "found \"%s\"",
                path, k->group, k->key, v);
    return FALSE;
  }
  char **slot = G_STRUCT_MEMBER_P(n, k->offset);
  g_free(*slot);
  *slot = g_steal_pointer(&v);
  if (explicit_out)
    *explicit_out = TRUE;
  return TRUE;
}

const char *vmlet_node_config_path(const char *given)
{
  static const char default_path[] = VMLET_SYSCONFDIR "/vmlet.conf";
  if (given)
    return given;
  return g_file_test(default_path, G_FILE_TEST_EXISTS) ? default_path : NULL;
}

VmletNode *vmlet_node_load(const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, NODE_CONF_MAX_BYTES, &data, &len, error))
    return NULL;
  g_autoptr(GKeyFile) kf = g_key_file_new();
  g_autoptr(GError) local = NULL;
  if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, &local)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: %s", path, local->message);
    return NULL;
  }
  g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
  for (guint i = 0; groups[i]; i++) {
    g_auto(GStrv) keys = g_key_file_get_keys(kf, groups[i], NULL, NULL);
    for (guint j = 0; keys && keys[j]; j++)
      if (!known_key(groups[i], keys[j])) {
        g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                    "%s: [%s] %s: unknown setting (known: [node] name, labels; [paths] run-dir, "
                    "state-dir, disk-dir, image-dir, config-dir, profiles-dir; [qemu] binary, "
                    "accel, user, ovmf-code, ovmf-vars, ovmf-code-secboot, ovmf-vars-secboot; "
                    "[resources] cgroup-manager, slice, cgroup-parent, core-fraction; "
                    "[migration] listen-address, port, cert-dir, stream-ports, bandwidth, "
                    "downtime-limit, outbound, inbound, progress-timeout, multifd-channels)",
                    path, groups[i], keys[j]);
        return NULL;
      }
  }

  g_autoptr(VmletNode) n = vmlet_node_new_default();
  gboolean disk_set = FALSE, image_set = FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS(path_keys); i++) {
    gboolean *flag = NULL;
    if (g_str_equal(path_keys[i].key, "disk-dir"))
      flag = &disk_set;
    else if (g_str_equal(path_keys[i].key, "image-dir"))
      flag = &image_set;
    if (!set_path(n, path, kf, &path_keys[i], flag, error))
      return NULL;
  }
  /* Disk and image directories follow state-dir unless set on their own. */
  if (!disk_set) {
    g_free(n->disk_dir);
    n->disk_dir = g_build_filename(n->state_dir, "disks", NULL);
  }
  if (!image_set) {
    g_free(n->image_dir);
    n->image_dir = g_build_filename(n->state_dir, "images", NULL);
  }

  g_autofree char *name = g_key_file_get_string(kf, "node", "name", NULL);
  if (name) {
    g_strstrip(name);
    if (strlen(name) > 253 || !*name) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: [node] name: expected 1 to 253 characters", path);
      return NULL;
    }
    g_free(n->name);
    n->name = g_steal_pointer(&name);
  }
  /* labels=key=value;key2=value2 (GKeyFile list syntax). */
  g_auto(GStrv) labels = g_key_file_get_string_list(kf, "node", "labels", NULL, NULL);
  for (guint i = 0; labels && labels[i]; i++) {
    char *eq = strchr(labels[i], '=');
    if (!eq || eq == labels[i] || strlen(eq + 1) > 63) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: [node] labels: expected key=value entries separated by ';' (values at "
                  "most 63 bytes), found \"%s\"",
                  path, labels[i]);
      return NULL;
    }
    g_hash_table_insert(n->labels, g_strndup(labels[i], (gsize)(eq - labels[i])),
                        g_strdup(eq + 1));
  }
  for (gsize i = 0; i < G_N_ELEMENTS(choice_keys); i++)
    if (!set_choice(n, path, kf, &choice_keys[i], error))
      return NULL;
  for (guint i = 0; i < G_N_ELEMENTS(string_keys); i++)
    if (!set_string(n, path, kf, i, error))
      return NULL;
  if (!vmlet_node_migration_load(&n->migration, path, kf, error))
    return NULL;
  return g_steal_pointer(&n);
}

/* KVM is usable for a q35 guest only with hardware-assisted virtualization (kvm_intel or
 * kvm_amd). A /dev/kvm backed by another module is not enough: under kvm_pvm (pagetable-
 * based nested virtualization, seen on cloud sandboxes) SeaBIOS dies with "KVM internal
 * error ... emulation failure" in real mode and "-cpu host" aborts QEMU on MSR 0x10a. */
gboolean vmlet_kvm_usable(const char *sysfs_module_dir)
{
  if (access("/dev/kvm", R_OK | W_OK) != 0)
    return FALSE;
  g_autofree char *intel = g_build_filename(sysfs_module_dir, "kvm_intel", NULL);
  g_autofree char *amd = g_build_filename(sysfs_module_dir, "kvm_amd", NULL);
  return g_file_test(intel, G_FILE_TEST_IS_DIR) || g_file_test(amd, G_FILE_TEST_IS_DIR);
}

void vmlet_node_resolve_accel(VmletNode *node)
{
  if (node->accel == VMLET_ACCEL_AUTO)
    node->accel = vmlet_kvm_usable("/sys/module") ? VMLET_ACCEL_KVM : VMLET_ACCEL_TCG;
}

char *vmlet_node_dropin_path(const VmletNode *node, const char *dir, const char *ns,
                             const char *name)
{
  g_autofree char *file = g_str_equal(ns, VMLET_DEFAULT_NAMESPACE)
                              ? g_strdup_printf("%s.json", name)
                              : g_strdup_printf("%s.%s.json", ns, name);
  return g_build_filename(node->config_dir, dir, file, NULL);
}
