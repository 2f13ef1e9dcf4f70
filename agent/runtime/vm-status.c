/* The VM in DVP's shape: apiVersion, kind, metadata, spec (with DVP's defaults filled in)
 * and status: phase, node, conditions, stats, restartAwaitingChanges, resources, cgroup,
 * blockDeviceRefs and vmlet's warnings. */
#include "vm-private.h"

#include "meta.h"
#include "specdiff.h"
#include "vm-migrate.h"

/* Changes to the spec that the running QEMU does not have yet, and a changed provisioning
 * Secret (its content never shown: only that it changed). */
JsonArray *vm_pending_changes(VmletVm *vm)
{
  if (!vm_qemu_alive(vm) || !vm->spec || !vm->rec->started_spec)
    return json_array_new();
  JsonArray *changes = vmlet_spec_diff(vm->rec->started_spec, vm->spec->spec_json);
  g_autofree char *digest = vm_secret_digest(vm);
  if (digest && vm->rec->provisioning_digest &&
      !g_str_equal(digest, vm->rec->provisioning_digest)) {
    gboolean sysprep = vm->spec->provisioning == VM_PROVISIONING_SYSPREP_REF;
    JsonObject *o = json_object_new();
    g_autofree char *cur = g_strdup_printf("Secret %s as of the last start",
                                           vm->spec->provisioning_secret);
    g_autofree char *want = g_strdup_printf("Secret %s as it is now",
                                            vm->spec->provisioning_secret);
    json_object_set_string_member(o, "currentValue", cur);
    json_object_set_string_member(o, "desiredValue", want);
    json_object_set_string_member(o, "operation", "replace");
    json_object_set_string_member(o, "path",
                                  sysprep ? "provisioning.sysprepRef" : "provisioning.userDataRef");
    json_array_add_object_element(changes, o);
  }
  return changes;
}

/* status.blockDeviceRefs as DVP shows it: the spec's devices in boot order, then the
 * hot-plugged ones with their attachment. */
static JsonArray *block_device_refs(VmletVm *vm)
{
  JsonArray *arr = json_array_new();
  gboolean running = vm->phase == VM_PHASE_RUNNING && vm_qemu_alive(vm);
  for (guint i = 0; vm->spec && i < vm->spec->block_devices->len; i++) {
    const VmBlockDeviceRef *ref = vm->spec->block_devices->pdata[i];
    JsonObject *o = json_object_new();
    g_autofree char *target = vm_plan_device_id(ref->kind, ref->name);
    json_object_set_string_member(o, "kind", vm_block_kind_name(ref->kind));
    json_object_set_string_member(o, "name", ref->name);
    json_object_set_string_member(o, "target", target);
    json_object_set_boolean_member(o, "attached", running);
    json_object_set_boolean_member(o, "hotplugged", FALSE);
    json_array_add_object_element(arr, o);
  }
  vmlet_attach_ctl_block_refs(vm->hot, arr);
  return arr;
}

static JsonObject *metadata_json(VmletVm *vm)
{
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", vm->name);
  json_object_set_string_member(md, "namespace", vm->namespace);
  g_autofree char *created = vmlet_timestamp(vm->rec->created_us);
  json_object_set_string_member(md, "creationTimestamp", created);
  if (!vm->spec)
    return md;
  JsonObject *labels = json_object_new(), *ann = json_object_new();
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, vm->spec->meta.labels);
  while (g_hash_table_iter_next(&it, &k, &v))
    json_object_set_string_member(labels, k, v);
  g_hash_table_iter_init(&it, vm->spec->meta.annotations);
  while (g_hash_table_iter_next(&it, &k, &v))
    json_object_set_string_member(ann, k, v);
  json_object_set_object_member(md, "labels", labels);
  json_object_set_object_member(md, "annotations", ann);
  if (vm->spec->meta.uid)
    json_object_set_string_member(md, "uid", vm->spec->meta.uid);
  return md;
}

static JsonArray *conditions_json(VmletVm *vm, gboolean awaiting)
{
  JsonArray *conds = json_array_new();
  if (vm->held)
    vmlet_condition_add(conds, "Ready", FALSE, vm->held_reason, vm->held);
  else if (vm->problem)
    vmlet_condition_add(conds, "Ready", FALSE, vm->spec ? "DependencyNotReady" : "InvalidSpec",
                        vm->problem);
  else if (vm->env->cordoned && vm->phase == VM_PHASE_PENDING && vm_want_running(vm)) {
    g_autofree char *why = g_strdup_printf("node %s is cordoned (maintenance): the VM starts "
                                           "once it is uncordoned", vm->env->node->name);
    vmlet_condition_add(conds, "Ready", FALSE, "NodeCordoned", why);
  }
  else
    vmlet_condition_add(conds, "Ready", TRUE, NULL, NULL);
  if (vm->backoff_timer)
    vmlet_condition_add(conds, "Running", FALSE, "CrashLoopBackOff", vm->last_exit);
  else if (vm->last_exit && vm->phase != VM_PHASE_RUNNING)
    vmlet_condition_add(conds, "Running", FALSE, "Stopped", vm->last_exit);
  else
    vmlet_condition_add(conds, "Running", vm->phase == VM_PHASE_RUNNING, NULL, NULL);
  if (vm->save_error)
    vmlet_condition_add(conds, "StatePersisted", FALSE, "WriteFailed", vm->save_error);
  if (vm->resources_error)
    vmlet_condition_add(conds, "ResourcesApplied", FALSE, "CgroupUpdateFailed",
                        vm->resources_error);
  if (vm->confine_error)
    vmlet_condition_add(conds, "Confined", FALSE, "ConfinementUnavailable", vm->confine_error);
  /* KubeVirt's LiveMigratable: what `vmlet get -o wide` shows as MIGRATABLE. */
  g_autofree char *not_migratable = vm_migratable(vm);
  vmlet_condition_add(conds, "Migratable", !not_migratable,
                      not_migratable ? "NotMigratable" : NULL, not_migratable);
  vmlet_condition_add(conds, "AgentReady", FALSE, "NotImplemented",
                      "the guest agent channel is not read yet");
  if (vm->paused && vm_qemu_alive(vm))
    vmlet_condition_add(conds, "Paused", TRUE, "PausedByUser",
                        "the VM's vCPUs are stopped (vmlet unpause resumes them)");
  vmlet_condition_add(conds, "AwaitingRestartToApplyConfiguration", awaiting,
                      awaiting ? "RestartAwaitingChangesExist" : NULL,
                      awaiting ? "the VM must be restarted to apply the changes listed in "
                                 "status.restartAwaitingChanges"
                               : NULL);
  return conds;
}

static JsonObject *stats_json(VmletVm *vm)
{
  JsonObject *stats = json_object_new();
  json_object_set_member(stats, "phasesTransitions", json_node_copy(vm->rec->transitions));
  if (vm->rec->launch_us) {
    JsonObject *ltd = json_object_new();
    g_autofree char *dur = g_strdup_printf("%.3fs", vm->rec->launch_us / 1e6);
    json_object_set_string_member(ltd, "waitingForDependencies", "0s");
    json_object_set_string_member(ltd, "virtualMachineStarting", dur);
    json_object_set_object_member(stats, "launchTimeDuration", ltd);
  }
  return stats;
}

static JsonObject *status_json(VmletVm *vm)
{
  JsonObject *st = json_object_new();
  json_object_set_string_member(st, "phase", vm_phase_name(vm->phase));
  if (vm->moved_to)
    json_object_set_string_member(st, "nodeName", vm->moved_to);
  else if (vm->mig_in)
    json_object_set_string_member(st, "nodeName", vmlet_vm_migration_peer(vm));
  /* Migrating away, the VM is this node's until it is handed over, also in the moment
   * between the source's QEMU quitting and the hand-over (the guide's get -w shows no
   * row without a node). */
  else if (vm_qemu_alive(vm) || vm->phase == VM_PHASE_RUNNING ||
           vm->phase == VM_PHASE_MIGRATING)
    json_object_set_string_member(st, "nodeName", vm->env->node->name);
  JsonArray *changes = vm_pending_changes(vm);
  json_object_set_array_member(st, "conditions",
                               conditions_json(vm, json_array_get_length(changes) > 0));
  json_object_set_object_member(st, "stats", stats_json(vm));
  json_object_set_int_member(st, "restarts", vm->rec->restarts);
  if (vm->rec->proc.pid)
    json_object_set_int_member(st, "pid", vm->rec->proc.pid);
  json_object_set_array_member(st, "restartAwaitingChanges", changes);
  JsonNode *resources = vm_resources_json(vm);
  if (resources)
    json_object_set_member(st, "resources", resources);
  if (vm->rec->cgroup && vm->env->cgroups) {
    g_autofree char *where = vmlet_cgroups_describe(vm->env->cgroups, vm->rec->cgroup);
    json_object_set_string_member(st, "cgroup", where);
  }
  json_object_set_array_member(st, "blockDeviceRefs", block_device_refs(vm));
  JsonNode *mig = vm->mig_state ? vm_migration_state_json(vm->mig_state) : NULL;
  if (mig)
    json_object_set_member(st, "migrationState", mig);
  /* What kubectl shows as "Warning:" lines at apply time, kept on the object so that a
   * drop-in written by hand shows them too (vmlet's addition to DVP's status). */
  if (vm->warnings) {
    JsonArray *w = json_array_new();
    for (guint i = 0; vm->warnings[i]; i++)
      json_array_add_string_element(w, vm->warnings[i]);
    json_object_set_array_member(st, "warnings", w);
  }
  return st;
}

JsonNode *vmlet_vm_to_json(VmletVm *vm)
{
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "apiVersion", VMLET_API_GROUP "/v1alpha2");
  json_object_set_string_member(root, "kind", "VirtualMachine");
  json_object_set_object_member(root, "metadata", metadata_json(vm));
  if (vm->spec)
    json_object_set_member(root, "spec", json_node_copy(vm->spec->spec_json));
  json_object_set_object_member(root, "status", status_json(vm));
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, root);
  return node;
}
