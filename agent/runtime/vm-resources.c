/* What a running VM may use: a live coreFraction change written to its cgroup, and
 * status.resources in DVP's shape. */
#include "vm-private.h"

#include "jsonval.h"
#include "quantity.h"

/* cores, coreFraction and memory of the spec the running QEMU was started with (specs are
 * stored with their defaults filled in, vmspec.c). The record is read back from disk:
 * anything missing or mistyped means "unknown", never an assertion. */
static gboolean started_sizing(VmletVm *vm, VmSpec *out)
{
  JsonNode *started = vm->rec->started_spec;
  JsonObject *spec = started && JSON_NODE_HOLDS_OBJECT(started) ? json_node_get_object(started)
                                                                 : NULL;
  JsonObject *cpu = jv_object_at(spec, "cpu");
  const char *fraction = jv_string_at(cpu, "coreFraction");
  const char *size = jv_string_at(jv_object_at(spec, "memory"), "size");
  const char *why = NULL;
  gint64 cores = jv_int_at(cpu, "cores", 0);
  if (!fraction || !size || cores <= 0 || cores > G_MAXUINT)
    return FALSE;
  out->cores = (guint)cores;
  out->core_fraction = (guint)g_ascii_strtoull(fraction, NULL, 10);
  return out->core_fraction > 0 && vmlet_quantity_parse_bytes(size, &out->memory_bytes, &why);
}

static VmletAccel accel_of(VmletVm *vm)
{
  return vm->plan ? vm->plan->accel : vm->env->node->accel;
}

/* DVP applies a coreFraction change to a running VM at once unless it crosses 100% (a
 * whole core guaranteed or not). With the new weight and quota in QEMU's cgroup, the
 * started spec takes the new fraction, so it is no longer a change awaiting a restart. */
static void on_cpu_updated(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  g_autoptr(GError) error = NULL;
  if (!vmlet_cgroups_update_cpu_finish(vm->env->cgroups, res, &error)) {
    if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      vm_set_str(&vm->resources_error, error->message);
    vm_changed(vm);
    return;
  }
  JsonNode *started = vm->rec->started_spec;
  JsonObject *cpu = started && JSON_NODE_HOLDS_OBJECT(started)
                        ? jv_object_at(json_node_get_object(started), "cpu")
                        : NULL;
  if (!vm->spec || !cpu)
    return;
  g_autofree char *fraction = g_strdup_printf("%u%%", vm->spec->core_fraction);
  json_object_set_string_member(cpu, "coreFraction", fraction);
  vm_save(vm);
  vm_changed(vm);
}

void vm_apply_core_fraction(VmletVm *vm)
{
  VmSpec running = {0};
  if (vm->phase != VM_PHASE_RUNNING || !vm->spec || !vm->rec->cgroup || !vm->env->cgroups ||
      vm->resources_error || !vm->qemu || !started_sizing(vm, &running))
    return;
  guint want = vm->spec->core_fraction;
  if (want == running.core_fraction || want == 100 || running.core_fraction == 100)
    return;
  running.core_fraction = want;
  VmResources r;
  vm_resources_compute(&running, accel_of(vm), vm->env->node->cpu_limit, &r);
  vmlet_cgroups_update_cpu_async(vm->env->cgroups, vm->rec->cgroup, &r,
                                 vmlet_instance_get_cancellable(vm->qemu), on_cpu_updated,
                                 g_object_ref(vm));
}

JsonNode *vm_resources_json(VmletVm *vm)
{
  VmSpec sizing = {0};
  if (!vm_qemu_alive(vm) || !started_sizing(vm, &sizing)) {
    if (!vm->spec)
      return NULL;
    sizing = *vm->spec;
  }
  VmResources r;
  vm_resources_compute(&sizing, accel_of(vm), vm->env->node->cpu_limit, &r);
  guint sockets = 0, per_socket = 0;
  vm_plan_topology(sizing.cores, &sockets, &per_socket);
  return vm_resources_status_json(&sizing, &r, sockets, per_socket);
}
