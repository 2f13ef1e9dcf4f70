#include "resources.h"

#include "quantity.h"

#define MIB (1024ull * 1024ull)

/* The kubelet's MilliCPUToShares (pkg/kubelet/cm/helpers_linux.go): 1024 shares per CPU,
 * at least 2 (the kernel's minimum), at most 262144. */
guint64 vm_resources_shares_from_milli(guint64 milli)
{
  guint64 shares = milli * 1024 / 1000;
  return CLAMP(shares, 2, 262144);
}

/* The OCI runtimes' conversion of cpu.shares to cgroup v2 cpu.weight (runc and crun,
 * "ConvertCPUSharesToCgroupV2Value"), which the kubelet relies on under cgroup v2:
 * [2, 262144] maps linearly onto [1, 10000]. */
guint64 vm_resources_weight_from_shares(guint64 shares)
{
  shares = CLAMP(shares, 2, 262144);
  return 1 + ((shares - 2) * 9999) / 262142;
}

void vm_resources_compute(const VmSpec *spec, VmletAccel accel, VmletCpuLimitMode mode,
                          VmResources *out)
{
  VmResources r = {0};
  r.cpu_request_milli = (guint64)spec->cores * spec->core_fraction * 10;
  r.cpu_shares = vm_resources_shares_from_milli(r.cpu_request_milli);
  r.cpu_weight = vm_resources_weight_from_shares(r.cpu_shares);
  r.cpu_period_us = VMLET_CPU_PERIOD_US;
  switch (mode) {
  case VMLET_CPU_LIMIT_GUARANTEE:
    r.cpu_quota_us = (guint64)spec->cores * VMLET_CPU_PERIOD_US;
    break;
  case VMLET_CPU_LIMIT_CAP:
    /* The kernel refuses quotas under 1 ms; 1% of one core is exactly that. */
    r.cpu_quota_us = MAX(r.cpu_request_milli * VMLET_CPU_PERIOD_US / 1000, 1000);
    break;
  }
  guint64 overhead = (VMLET_OVERHEAD_BASE_MIB + (guint64)VMLET_OVERHEAD_PER_VCPU_MIB * spec->cores) *
                         MIB +
                     spec->memory_bytes / VMLET_OVERHEAD_RAM_DIVISOR;
  if (accel == VMLET_ACCEL_TCG)
    overhead += (guint64)VMLET_TCG_TB_SIZE_MIB * MIB;
  /* Whole MiB, so every backend (systemd rounds to pages) reports the same number. */
  overhead = (overhead + MIB - 1) / MIB * MIB;
  r.overhead_bytes = overhead;
  /* Guest RAM is whole MiB after planning (-m takes MiB): round the same way. */
  r.memory_max_bytes = (spec->memory_bytes + MIB - 1) / MIB * MIB + overhead;
  r.pids_max = VMLET_PIDS_BASE + (guint64)VMLET_PIDS_PER_VCPU * spec->cores;
  *out = r;
}

static char *milli_quantity(guint64 milli)
{
  if (milli % 1000 == 0)
    return g_strdup_printf("%" G_GUINT64_FORMAT, milli / 1000);
  return g_strdup_printf("%" G_GUINT64_FORMAT "m", milli);
}

JsonNode *vm_resources_status_json(const VmSpec *spec, const VmResources *res, guint sockets,
                                   guint cores_per_socket)
{
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "cpu");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "cores");
  json_builder_add_int_value(b, spec->cores);
  json_builder_set_member_name(b, "coreFraction");
  g_autofree char *fraction = g_strdup_printf("%u%%", spec->core_fraction);
  json_builder_add_string_value(b, fraction);
  json_builder_set_member_name(b, "requestedCores");
  g_autofree char *requested = milli_quantity(res->cpu_request_milli);
  json_builder_add_string_value(b, requested);
  /* vmlet runs no per-VM helper processes (no launcher, libvirtd or virtlogd per VM). */
  json_builder_set_member_name(b, "runtimeOverhead");
  json_builder_add_string_value(b, "0");
  json_builder_set_member_name(b, "topology");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "sockets");
  json_builder_add_int_value(b, sockets);
  json_builder_set_member_name(b, "coresPerSocket");
  json_builder_add_int_value(b, cores_per_socket);
  json_builder_end_object(b);
  json_builder_end_object(b);
  json_builder_set_member_name(b, "memory");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "size");
  g_autofree char *size = vmlet_quantity_format_bytes(spec->memory_bytes);
  json_builder_add_string_value(b, size);
  json_builder_set_member_name(b, "runtimeOverhead");
  g_autofree char *overhead = vmlet_quantity_format_bytes(res->overhead_bytes);
  json_builder_add_string_value(b, overhead);
  json_builder_end_object(b);
  json_builder_end_object(b);
  return json_builder_get_root(b);
}
