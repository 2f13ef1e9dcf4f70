#include "plan.h"

#include "strutil.h"

#include <stdlib.h>
#include <string.h>

#include "nocloud.h"
#include "quantity.h"

/* q35's built-in ICH9 AHCI controller has six ports, ide.0 to ide.5. */
#define AHCI_PORTS 6
/* QEMU rejects block node names longer than 31 bytes; suffixes are "-file" and "-fmt". */
#define NODE_PREFIX_MAX 26
#define LONGEST_SOCKET_NAME "console.sock"

void vm_plan_disk_free(VmPlanDisk *d)
{
  if (!d)
    return;
  g_free(d->device_id);
  g_free(d->node_prefix);
  g_free(d->name);
  g_free(d->path);
  g_free(d->attachment);
  g_free(d);
}

static void plan_disk_free(gpointer p)
{
  vm_plan_disk_free(p);
}

VmPlan *vm_plan_ref(VmPlan *plan)
{
  g_atomic_int_inc(&plan->refcount);
  return plan;
}

void vm_plan_unref(VmPlan *plan)
{
  if (!plan || !g_atomic_int_dec_and_test(&plan->refcount))
    return;
  vm_spec_unref(plan->spec);
  if (plan->klass)
    vm_class_unref(plan->klass);
  g_free(plan->qemu_binary);
  g_free(plan->machine);
  g_free(plan->cpu);
  g_ptr_array_unref(plan->disks);
  g_ptr_array_unref(plan->hotplugged);
  g_free(plan->uuid);
  g_free(plan->runtime_dir);
  g_free(plan->qmp_socket);
  g_free(plan->console_socket);
  g_free(plan->vnc_socket);
  g_free(plan->agent_socket);
  g_free(plan->ovmf_code);
  g_free(plan->ovmf_vars);
  g_free(plan->ovmf_vars_template);
  g_free(plan);
}

static char *short_hash(const char *text, gsize nchars)
{
  g_autofree char *full = g_compute_checksum_for_string(G_CHECKSUM_SHA256, text, -1);
  return g_strndup(full, nchars);
}

char *vm_plan_runtime_dir(const VmletNode *node, const char *namespace, const char *name)
{
  g_autofree char *leaf = g_strdup_printf("%s.%s", namespace, name);
  char *dir = g_build_filename(node->run_dir, "vms", leaf, NULL);
  if (strlen(dir) + 1 + strlen(LONGEST_SOCKET_NAME) <= VMLET_UNIX_PATH_MAX)
    return dir;
  g_free(dir);
  g_autofree char *hash = short_hash(leaf, 12);
  g_autofree char *shortleaf = g_strdup_printf("%.16s-%s", name, hash);
  return g_build_filename(node->run_dir, "vms", shortleaf, NULL);
}

/* A stable SMBIOS UUID: metadata.uid when it is one (kubectl output), else derived from
 * namespace/name so the guest sees the same machine across restarts and nodes. */
static char *plan_uuid(const VmSpec *spec)
{
  if (spec->meta.uid && g_uuid_string_is_valid(spec->meta.uid))
    return g_ascii_strdown(spec->meta.uid, -1);
  g_autofree char *src = g_strdup_printf("vmlet:%s/%s", spec->meta.namespace, spec->meta.name);
  g_autofree char *h = g_compute_checksum_for_string(G_CHECKSUM_SHA256, src, -1);
  /* RFC 4122 layout with version 5 and the variant bits set. */
  return g_strdup_printf("%.8s-%.4s-5%.3s-%c%.3s-%.12s", h, h + 8, h + 13,
                         "89ab"[g_ascii_xdigit_value(h[16]) & 3], h + 17, h + 20);
}

static char *node_prefix_for(const char *device_id)
{
  if (strlen(device_id) <= NODE_PREFIX_MAX)
    return g_strdup(device_id);
  g_autofree char *hash = short_hash(device_id, 8);
  return g_strdup_printf("%.17s-%s", device_id, hash);
}

static const char *kind_prefix(VmBlockKind kind)
{
  switch (kind) {
  case VM_BLOCK_VIRTUAL_DISK:
    return "vd";
  case VM_BLOCK_VIRTUAL_IMAGE:
    return "vi";
  case VM_BLOCK_CLUSTER_VIRTUAL_IMAGE:
    return "cvi";
  }
  return "x";
}

static char *default_path(const VmletNode *node, const VmletBlockObject *obj)
{
  g_autofree char *file =
      g_strdup_printf("%s.%s", obj->meta.name, vmlet_image_format_extension(obj->format));
  switch (obj->kind) {
  case VM_BLOCK_VIRTUAL_DISK:
    return g_build_filename(node->disk_dir, obj->meta.namespace, file, NULL);
  case VM_BLOCK_VIRTUAL_IMAGE:
    return g_build_filename(node->image_dir, obj->meta.namespace, file, NULL);
  case VM_BLOCK_CLUSTER_VIRTUAL_IMAGE:
    return g_build_filename(node->image_dir, file, NULL);
  }
  return NULL;
}

char *vm_plan_device_id(VmBlockKind kind, const char *name)
{
  return g_strdup_printf("%s-%s", kind_prefix(kind), name);
}

/* What a disk or image is to QEMU, wherever it is plugged: the same for a blockDeviceRef and
 * for an attachment, so a hot-plugged disk is the disk a restart would create. */
static VmPlanDisk *disk_for_object(const VmletNode *node, const VmletBlockObject *obj)
{
  VmPlanDisk *disk = g_new0(VmPlanDisk, 1);
  disk->kind = obj->kind;
  disk->name = g_strdup(obj->meta.name);
  disk->device_id = vm_plan_device_id(obj->kind, obj->meta.name);
  disk->node_prefix = node_prefix_for(disk->device_id);
  disk->path = obj->path ? g_strdup(obj->path) : default_path(node, obj);
  disk->format = obj->format;
  disk->read_only = obj->kind != VM_BLOCK_VIRTUAL_DISK;
  disk->cdrom = obj->format == VMLET_FORMAT_ISO;
  disk->host_device = g_str_has_prefix(disk->path, "/dev/");
  return disk;
}

VmPlanDisk *vm_plan_attachment_disk(const VmletNode *node, const VmletBlockObject *obj,
                                    const char *attachment)
{
  VmPlanDisk *disk = disk_for_object(node, obj);
  /* virtio-blk even when enableParavirtualization is false: the AHCI controller of q35
   * has no hotplug, and a disk must sit where a later hotplug could have put it. */
  disk->bus = disk->cdrom ? VM_DISK_BUS_SCSI : VM_DISK_BUS_VIRTIO;
  disk->attachment = g_strdup(attachment);
  return disk;
}


guint64 vm_plan_spare_ports(const VmPlan *plan)
{
  guint64 mask = 0;
  for (guint i = 0; i < plan->hotplug_ports && plan->first_hotplug_port + i < 64; i++)
    mask |= G_GUINT64_CONSTANT(1) << (plan->first_hotplug_port + i);
  return mask;
}

static char *cpu_argument(const VmClass *k, const VmSpec *spec, VmletAccel accel)
{
  gboolean kvm = accel == VMLET_ACCEL_KVM;
  GString *s = g_string_new(NULL);
  switch (k->cpu_type) {
  case VM_CPU_HOST:
  case VM_CPU_HOST_PASSTHROUGH:
  case VM_CPU_DISCOVERY:
    /* TCG cannot pass the host CPU through; "max" is every feature TCG emulates. */
    g_string_append(s, kvm ? "host" : k->tcg_cpu_model);
    break;
  case VM_CPU_MODEL:
    g_string_append(s, k->cpu_model);
    break;
  case VM_CPU_FEATURES:
    g_string_append(s, "qemu64");
    break;
  }
  for (guint i = 0; k->cpu_features && k->cpu_features[i]; i++)
    g_string_append_printf(s, ",+%s", k->cpu_features[i]);
  /* Hyper-V enlightenments make Windows usable under KVM; TCG implements too few of them. */
  if (spec->os_type == VM_OS_WINDOWS && kvm)
    g_string_append(s, ",hv-relaxed=on,hv-vapic=on,hv-spinlocks=0x1fff,hv-time=on");
  return g_string_free(s, FALSE);
}

static void add_provisioning_disk(VmPlan *plan)
{
  const char *id = NULL;
  switch (plan->spec->provisioning) {
  case VM_PROVISIONING_NONE:
    return;
  case VM_PROVISIONING_USER_DATA:
  case VM_PROVISIONING_USER_DATA_REF:
    id = "cidata";
    break;
  case VM_PROVISIONING_SYSPREP_REF:
    id = "sysprep";
    break;
  }
  /* Like DVP: a read-only CD-ROM outside the boot order, built per start in the run dir. */
  VmPlanDisk *disk = g_new0(VmPlanDisk, 1);
  disk->device_id = g_strdup(id);
  disk->node_prefix = g_strdup(id);
  disk->name = g_strdup(id);
  g_autofree char *file = g_strdup_printf("%s.iso", id);
  disk->path = g_build_filename(plan->runtime_dir, file, NULL);
  disk->format = VMLET_FORMAT_ISO;
  disk->read_only = TRUE;
  disk->cdrom = TRUE;
  disk->bus = VM_DISK_BUS_SATA;
  g_ptr_array_add(plan->disks, disk);
}

static void resolve_disks(VmPlan *plan, VmletInventory *inv, const VmletNode *node,
                          VmletDiag *d)
{
  const VmSpec *spec = plan->spec;
  for (guint i = 0; i < spec->block_devices->len; i++) {
    const VmBlockDeviceRef *ref = spec->block_devices->pdata[i];
    g_autofree char *p = g_strdup_printf("spec.blockDeviceRefs[%u]", i);
    VmletBlockObject *obj = vmlet_inventory_block(inv, ref->kind, spec->meta.namespace, ref->name);
    if (!obj) {
      if (ref->kind == VM_BLOCK_CLUSTER_VIRTUAL_IMAGE)
        vmlet_diag_error(d, p, "ClusterVirtualImage \"%s\" not found", ref->name);
      else
        vmlet_diag_error(d, p, "%s \"%s\" not found in namespace \"%s\"",
                         vm_block_kind_name(ref->kind), ref->name, spec->meta.namespace);
      continue;
    }
    VmPlanDisk *disk = disk_for_object(node, obj);
    disk->is_ref = TRUE;
    disk->bus = (disk->cdrom || !spec->paravirtualization) ? VM_DISK_BUS_SATA
                                                           : VM_DISK_BUS_VIRTIO;
    disk->boot_index = i + 1;
    /* QEMU's image locking would refuse the second open anyway; say why up front. */
    for (guint j = 0; j < plan->disks->len; j++) {
      const VmPlanDisk *prev = plan->disks->pdata[j];
      if (g_str_equal(prev->path, disk->path))
        vmlet_diag_error(d, p, "%s \"%s\" uses the file %s, which %s \"%s\" already uses",
                         vm_block_kind_name(ref->kind), ref->name, disk->path,
                         vm_block_kind_name(prev->kind), prev->name);
    }
    g_ptr_array_add(plan->disks, disk);
  }
  add_provisioning_disk(plan);
  guint sata = 0;
  for (guint j = 0; j < plan->disks->len; j++)
    sata += ((VmPlanDisk *)plan->disks->pdata[j])->bus == VM_DISK_BUS_SATA;
  if (sata > AHCI_PORTS)
    vmlet_diag_error(d, "spec.blockDeviceRefs",
                     "%u devices need a SATA port (CD-ROMs, the provisioning ISO, and disks when "
                     "enableParavirtualization is false), but q35 has %d",
                     sata, AHCI_PORTS);
}

void vm_plan_topology(guint cores, guint *sockets, guint *cores_per_socket)
{
  *sockets = cores <= 16 ? 1 : cores <= 32 ? 2 : cores <= 64 ? 4 : 8;
  *cores_per_socket = cores / *sockets;
}

/* A warning, not a refusal: cloud-init itself decides what it accepts. Inline user-data
 * and a UserDataRef Secret's userData get the same check; the warnings quote positions and
 * libyaml's fixed texts, never the content, so a Secret's value does not leak. A Secret that
 * is missing or unusable is not a warning here: starting the VM reports it. */
static void check_user_data(const VmSpec *spec, VmletInventory *inv, VmletDiag *d)
{
  g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
  switch (spec->provisioning) {
  case VM_PROVISIONING_USER_DATA:
    vmlet_user_data_check(spec->user_data, strlen(spec->user_data), warnings);
    for (guint i = 0; i < warnings->len; i++)
      vmlet_diag_warn(d, "spec.provisioning.userData", "%s", (char *)warnings->pdata[i]);
    return;
  case VM_PROVISIONING_USER_DATA_REF: {
    VmletSecret *secret = vmlet_inventory_secret(inv, spec->meta.namespace,
                                                 spec->provisioning_secret, NULL);
    GBytes *ud = secret && g_strcmp0(secret->type, VMLET_SECRET_TYPE_CLOUD_INIT) == 0
                     ? g_hash_table_lookup(secret->data, "userData")
                     : NULL;
    if (!ud)
      return;
    gsize len = 0;
    const char *data = g_bytes_get_data(ud, &len);
    vmlet_user_data_check(data, len, warnings);
    for (guint i = 0; i < warnings->len; i++)
      vmlet_diag_warn(d, "spec.provisioning.userDataRef", "Secret \"%s\": %s",
                      spec->provisioning_secret, (char *)warnings->pdata[i]);
    return;
  }
  case VM_PROVISIONING_SYSPREP_REF:
  case VM_PROVISIONING_NONE:
    return;
  }
}

VmPlan *vm_plan_build(VmSpec *spec, VmletInventory *inv, const VmletNode *node, VmletDiag *d)
{
  g_return_val_if_fail(node->accel != VMLET_ACCEL_AUTO, NULL);
  guint errors_before = d->errors->len;
  g_autoptr(VmPlan) plan = g_new0(VmPlan, 1);
  plan->refcount = 1;
  plan->spec = vm_spec_ref(spec);
  plan->disks = g_ptr_array_new_with_free_func(plan_disk_free);
  plan->hotplugged = g_ptr_array_new_with_free_func(plan_disk_free);
  plan->accel = node->accel;
  plan->qemu_binary = g_strdup(node->qemu_binary);

  VmClass *k = vmlet_inventory_class(inv, spec->class_name);
  if (!k) {
    guint n = 0;
    g_autofree const char **names =
        (const char **)g_hash_table_get_keys_as_array(inv->classes, &n);
    qsort(names, n, sizeof(char *), vmlet_compare_str_ptrs);
    g_autofree char *known = g_strjoinv(", ", (char **)names);
    vmlet_diag_error(d, "spec.virtualMachineClassName",
                     "VirtualMachineClass \"%s\" not found (known: %s)", spec->class_name,
                     *known ? known : "none");
  } else {
    plan->klass = vm_class_ref(k);
    vm_class_check_sizing(k, spec, d);
    plan->machine = g_strdup(k->machine);
    plan->cpu = cpu_argument(k, spec, node->accel);
  }

  vm_plan_topology(spec->cores, &plan->sockets, &plan->cores_per_socket);

  const guint64 mib = 1024 * 1024;
  plan->memory_mib = (spec->memory_bytes + mib - 1) / mib;
  if (spec->memory_bytes % mib) {
    g_autofree char *q = vmlet_quantity_format_bytes(plan->memory_mib * mib);
    vmlet_diag_warn(d, "spec.memory.size",
                    "%" G_GUINT64_FORMAT " bytes is not a whole number of MiB; the guest gets %s",
                    spec->memory_bytes, q);
  }

  plan->uuid = plan_uuid(spec);
  plan->runtime_dir = vm_plan_runtime_dir(node, spec->meta.namespace, spec->meta.name);
  if (strlen(plan->runtime_dir) + 1 + strlen(LONGEST_SOCKET_NAME) > VMLET_UNIX_PATH_MAX)
    vmlet_diag_error(d, NULL, "the node's run-dir %s is too long for unix socket paths",
                     node->run_dir);
  plan->qmp_socket = g_build_filename(plan->runtime_dir, "qmp.sock", NULL);
  plan->console_socket = g_build_filename(plan->runtime_dir, "console.sock", NULL);
  plan->vnc_socket = g_build_filename(plan->runtime_dir, "vnc.sock", NULL);
  plan->agent_socket = g_build_filename(plan->runtime_dir, "agent.sock", NULL);

  resolve_disks(plan, inv, node, d);
  check_user_data(spec, inv, d);
  vm_plan_layout(plan);

  switch (spec->bootloader) {
  case VM_BOOTLOADER_BIOS:
    break;
  case VM_BOOTLOADER_EFI:
  case VM_BOOTLOADER_EFI_SECURE_BOOT: {
    plan->secure_boot = spec->bootloader == VM_BOOTLOADER_EFI_SECURE_BOOT;
    plan->ovmf_code = g_strdup(plan->secure_boot ? node->ovmf_code_secboot : node->ovmf_code);
    plan->ovmf_vars_template =
        g_strdup(plan->secure_boot ? node->ovmf_vars_secboot : node->ovmf_vars);
    g_autofree char *file =
        g_strdup_printf("%s.%s_VARS.fd", spec->meta.namespace, spec->meta.name);
    plan->ovmf_vars = g_build_filename(node->state_dir, "nvram", file, NULL);
    break;
  }
  }
  if (d->errors->len != errors_before)
    return NULL;
  return g_steal_pointer(&plan);
}
