/* What a VM may use of the node: its spec turned into cgroup limits. Pure.
 *
 * DVP's coreFraction is a guaranteed share: the VM's CPU request is cores x fraction and
 * its limit is cores (a KubeVirt pod with requests.cpu = cores x fraction, limits.cpu =
 * cores). On a node without Kubernetes the request becomes a CPU weight relative to other
 * VMs, computed exactly as the kubelet does for a pod (milli-CPU -> cpu.shares ->
 * cpu.weight), and the limit a CFS quota of `cores` full CPUs. A node may instead make
 * the fraction a hard cap (Proxmox's cpulimit): quota = cores x fraction.
 *
 * The memory limit is the guest's RAM plus QEMU's own overhead (VMLET_OVERHEAD_*, measured
 * on QEMU 7.2; see README "Resources"). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "node.h"
#include "vmspec.h"

/* QEMU's memory beyond guest RAM. Measured here (tests/bench/bench_overhead.py, QEMU 7.2):
 * 58.5 MiB without TCG's translation cache for a 1-vCPU guest (binary, libraries, heap,
 * VGA memory, firmware), about +1.5 MiB per further vCPU, the same for 256Mi and 2Gi of
 * RAM. The constants keep about 2x headroom for I/O buffers, hotplug and migration. */
#define VMLET_OVERHEAD_BASE_MIB 96
#define VMLET_OVERHEAD_PER_VCPU_MIB 8
/* KVM's page tables and QEMU's dirty bitmaps grow with guest RAM: 1/512 of it. */
#define VMLET_OVERHEAD_RAM_DIVISOR 512
/* Under TCG the translated-code cache is anonymous memory that fills up to its size and
 * is never given back; vmlet bounds it (-accel tcg,tb-size=) and counts it. */
#define VMLET_TCG_TB_SIZE_MIB 128

#define VMLET_CPU_PERIOD_US 100000
#define VMLET_PIDS_BASE 256
#define VMLET_PIDS_PER_VCPU 4

typedef struct {
  guint64 cpu_request_milli; /* cores x fraction, in milli-CPUs */
  guint64 cpu_shares;        /* cgroup v1 cpu.shares, 2..262144 */
  guint64 cpu_weight;        /* cgroup v2 cpu.weight and systemd CPUWeight, 1..10000 */
  guint64 cpu_quota_us;      /* per VMLET_CPU_PERIOD_US */
  guint64 cpu_period_us;
  guint64 memory_max_bytes;  /* guest RAM + overhead */
  guint64 overhead_bytes;
  guint64 pids_max;
} VmResources;

/* Computes the limits of spec on a node with the given accelerator (KVM or TCG). */
void vm_resources_compute(const VmSpec *spec, VmletAccel accel, VmletCpuLimitMode mode,
                          VmResources *out);

/* The kubelet's conversions, exposed for tests. */
guint64 vm_resources_shares_from_milli(guint64 milli);
guint64 vm_resources_weight_from_shares(guint64 shares);

/* DVP's status.resources: {cpu: {cores, coreFraction, requestedCores, runtimeOverhead,
 * topology: {sockets, coresPerSocket}}, memory: {size, runtimeOverhead}}. */
JsonNode *vm_resources_status_json(const VmSpec *spec, const VmResources *res,
                                           guint sockets, guint cores_per_socket);
