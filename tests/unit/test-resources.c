/* The mapping from a VM's CPU and memory to cgroup limits (resources.h). */
#include "resources.h"

static VmResources compute(guint cores, guint fraction, guint64 mem, VmletAccel accel,
                           VmletCpuLimitMode mode)
{
  VmSpec spec = {.cores = cores, .core_fraction = fraction, .memory_bytes = mem};
  VmResources r;
  vm_resources_compute(&spec, accel, mode, &r);
  return r;
}

/* The kubelet's numbers for the same requests (a pod with requests.cpu 100m has
 * cpu.shares 102; 2 CPUs 2048), and the OCI runtimes' v2 weights for them. */
static void test_kubelet_conversions(void)
{
  g_assert_cmpuint(vm_resources_shares_from_milli(100), ==, 102);
  g_assert_cmpuint(vm_resources_shares_from_milli(2000), ==, 2048);
  g_assert_cmpuint(vm_resources_shares_from_milli(1), ==, 2);        /* the kernel minimum */
  g_assert_cmpuint(vm_resources_shares_from_milli(248000), ==, 253952);
  g_assert_cmpuint(vm_resources_shares_from_milli(1000000), ==, 262144); /* the maximum */
  g_assert_cmpuint(vm_resources_weight_from_shares(2), ==, 1);
  g_assert_cmpuint(vm_resources_weight_from_shares(1024), ==, 39);
  g_assert_cmpuint(vm_resources_weight_from_shares(262144), ==, 10000);
}

static void test_guarantee(void)
{
  /* The seed's linux-vm: 1 core, 10%, 1Gi, under KVM. */
  VmResources r = compute(1, 10, 1ull << 30, VMLET_ACCEL_KVM, VMLET_CPU_LIMIT_GUARANTEE);
  g_assert_cmpuint(r.cpu_request_milli, ==, 100);
  g_assert_cmpuint(r.cpu_shares, ==, 102);
  g_assert_cmpuint(r.cpu_weight, ==, 4);
  g_assert_cmpuint(r.cpu_quota_us, ==, 100000); /* the limit is the whole core */
  g_assert_cmpuint(r.cpu_period_us, ==, 100000);
  /* 96 MiB + 8 MiB per vCPU + 1Gi/512 = 106 MiB of overhead. */
  g_assert_cmpuint(r.overhead_bytes, ==, 106ull << 20);
  g_assert_cmpuint(r.memory_max_bytes, ==, (1024ull + 106) << 20);
  g_assert_cmpuint(r.pids_max, ==, 260);

  /* 4 cores at 50%: request 2 CPUs, limit 4. */
  r = compute(4, 50, 8ull << 30, VMLET_ACCEL_KVM, VMLET_CPU_LIMIT_GUARANTEE);
  g_assert_cmpuint(r.cpu_request_milli, ==, 2000);
  g_assert_cmpuint(r.cpu_shares, ==, 2048);
  g_assert_cmpuint(r.cpu_quota_us, ==, 400000);
  g_assert_cmpuint(r.overhead_bytes, ==, (96ull + 32 + 16) << 20);
}

static void test_cap(void)
{
  VmResources r = compute(1, 10, 1ull << 30, VMLET_ACCEL_KVM, VMLET_CPU_LIMIT_CAP);
  g_assert_cmpuint(r.cpu_quota_us, ==, 10000); /* 10% of one core */
  g_assert_cmpuint(r.cpu_shares, ==, 102);     /* the weight is the same */
  r = compute(4, 50, 1ull << 30, VMLET_ACCEL_KVM, VMLET_CPU_LIMIT_CAP);
  g_assert_cmpuint(r.cpu_quota_us, ==, 200000);
  r = compute(1, 1, 1ull << 30, VMLET_ACCEL_KVM, VMLET_CPU_LIMIT_CAP);
  g_assert_cmpuint(r.cpu_quota_us, ==, 1000); /* never under the kernel's 1 ms */
}

static void test_tcg_counts_translation_cache(void)
{
  VmResources kvm = compute(1, 100, 256ull << 20, VMLET_ACCEL_KVM, VMLET_CPU_LIMIT_GUARANTEE);
  VmResources tcg = compute(1, 100, 256ull << 20, VMLET_ACCEL_TCG, VMLET_CPU_LIMIT_GUARANTEE);
  g_assert_cmpuint(tcg.overhead_bytes - kvm.overhead_bytes, ==,
                   (guint64)VMLET_TCG_TB_SIZE_MIB << 20);
  /* Guest memory that is not whole MiB is rounded up, as -m does. */
  VmResources odd = compute(1, 100, (256ull << 20) + 1, VMLET_ACCEL_KVM,
                            VMLET_CPU_LIMIT_GUARANTEE);
  g_assert_cmpuint(odd.memory_max_bytes, ==, kvm.memory_max_bytes + (1ull << 20));
}

static void test_status_shape(void)
{
  VmSpec spec = {.cores = 1, .core_fraction = 10, .memory_bytes = 1ull << 30};
  VmResources r;
  vm_resources_compute(&spec, VMLET_ACCEL_KVM, VMLET_CPU_LIMIT_GUARANTEE, &r);
  g_autoptr(JsonNode) n = vm_resources_status_json(&spec, &r, 1, 1);
  g_autoptr(JsonGenerator) g = json_generator_new();
  json_generator_set_root(g, n);
  g_autofree char *s = json_generator_to_data(g, NULL);
  g_assert_cmpstr(s, ==,
                  "{\"cpu\":{\"cores\":1,\"coreFraction\":\"10%\",\"requestedCores\":\"100m\","
                  "\"runtimeOverhead\":\"0\",\"topology\":{\"sockets\":1,\"coresPerSocket\":1}},"
                  "\"memory\":{\"size\":\"1Gi\",\"runtimeOverhead\":\"106Mi\"}}");
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/resources/kubelet-conversions", test_kubelet_conversions);
  g_test_add_func("/resources/guarantee", test_guarantee);
  g_test_add_func("/resources/cap", test_cap);
  g_test_add_func("/resources/tcg", test_tcg_counts_translation_cache);
  g_test_add_func("/resources/status", test_status_shape);
  return g_test_run();
}
