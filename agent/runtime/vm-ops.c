/* VirtualMachineOperations (Start, Stop, Restart) and every other request, carried out
 * through the job slot (vm-job.h): the run policy decides whether an operation may happen
 * at all, the job in the slot what it does now. An operation is recorded even when it is
 * refused, Failed with the reason, as DVP shows one it cannot carry out. */
#include "vm-private.h"

#include "meta.h"
#include "vm-migrate.h"

typedef enum {
  OP_PENDING,
  OP_IN_PROGRESS,
  OP_COMPLETED,
  OP_FAILED,
} OpPhase;

typedef struct {
  char *uid;
  VmOpType type;
  gboolean force;
  OpPhase phase;
  char *reason;
  gint64 created_us;
  GHashTable *selector; /* Migrate's migrate.nodeSelector, or NULL */
  gint progress;        /* Evict / Migrate: DVP's percent; -1 before it begins */
  char *target;         /* Evict / Migrate: the node chosen */
  gint64 paused_ms;     /* Evict / Migrate, once switched over: the guest's pause, at most */
  gint64 qemu_downtime_ms, memory_ms; /* ... QEMU's downtime, the memory copy's length */
  char *name;           /* metadata.name the client gave or generated; NULL: op_name's */
} VmOp;

static const char *const op_type_names[] = {
    [VM_OP_START] = "Start",
    [VM_OP_STOP] = "Stop",
    [VM_OP_RESTART] = "Restart",
    [VM_OP_EVICT] = "Evict",
    [VM_OP_MIGRATE] = "Migrate",
};
static const char *const op_phase_names[] = {
    [OP_PENDING] = "Pending",
    [OP_IN_PROGRESS] = "InProgress",
    [OP_COMPLETED] = "Completed",
    [OP_FAILED] = "Failed",
};

void vm_op_free(gpointer p)
{
  VmOp *op = p;
  g_free(op->uid);
  g_free(op->reason);
  g_clear_pointer(&op->selector, g_hash_table_unref);
  g_free(op->target);
  g_free(op->name);
  g_free(op);
}

static char *op_name(VmletVm *vm, const VmOp *op);

static VmOp *find_op(VmletVm *vm, const char *uid)
{
  for (guint i = 0; i < vm->ops->len; i++) {
    VmOp *op = vm->ops->pdata[i];
    if (g_str_equal(op->uid, uid))
      return op;
  }
  return NULL;
}

void vm_ops_progress(VmletVm *vm, const char *uid, gint progress, const char *target)
{
  VmOp *op = uid ? find_op(vm, uid) : NULL;
  if (!op)
    return;
  op->progress = progress;
  if (target)
    vm_set_str(&op->target, target);
}

void vm_ops_switched_over(VmletVm *vm, const char *uid, gint64 paused_ms,
                          gint64 qemu_downtime_ms, gint64 memory_ms)
{
  VmOp *op = uid ? find_op(vm, uid) : NULL;
  if (!op)
    return;
  op->paused_ms = paused_ms;
  op->qemu_downtime_ms = qemu_downtime_ms;
  op->memory_ms = memory_ms;
}

void vm_ops_complete(VmletVm *vm, VmOpType type, gboolean ok, const char *reason)
{
  for (guint i = 0; i < vm->ops->len; i++) {
    VmOp *op = vm->ops->pdata[i];
    if (op->type == type && (op->phase == OP_PENDING || op->phase == OP_IN_PROGRESS)) {
      op->phase = ok ? OP_COMPLETED : OP_FAILED;
      vm_set_str(&op->reason, reason);
    }
  }
}

/* ---- requests through the slot ---- */

/* The slot is empty: the request becomes the job, when it has anything to do. */
static void begin(VmletVm *vm, VmRequest request, gboolean force)
{
  switch (request) {
  case VM_REQ_START:
    vmlet_vm_reconcile(vm);
    return;
  case VM_REQ_RESTART:
    if (!vm_qemu_alive(vm)) {
      vmlet_vm_reconcile(vm);
      return;
    }
    break;
  case VM_REQ_DELETE:
    vm_set_phase(vm, VM_PHASE_TERMINATING);
    if (!vm_qemu_alive(vm)) {
      vm_forget(vm);
      return;
    }
    break;
  case VM_REQ_STOP:
  case VM_REQ_GUEST_OFF:
    if (!vm_qemu_alive(vm))
      return;
    break;
  case VM_REQ_MIGRATE:
    return; /* begun by vmlet_vm_migrate, which holds the operation */
  }
  vm_set_job(vm, VM_JOB_STOP, vm_job_intent_of(request), force);
  vm_stop_begin(vm);
}

char *vm_request(VmletVm *vm, VmRequest request, gboolean force)
{
  switch (vm_job_rule(&vm->job, request)) {
  case VM_RULE_BEGIN:
    begin(vm, request, force);
    return NULL;
  case VM_RULE_JOIN:
    /* A forced stop, or the guest powering off, ends a graceful stop now. */
    if (vm->job.kind == VM_JOB_STOP && (force || request == VM_REQ_GUEST_OFF)) {
      if (request == VM_REQ_GUEST_OFF)
        vm->stop_end = VM_STOP_END_BY_GUEST;
      vm->job.force = vm->rec->job_force = TRUE;
      vmlet_instance_quit(vm->qemu);
    }
    return NULL;
  case VM_RULE_RETARGET:
    vm_set_job(vm, VM_JOB_STOP, vm_job_intent_of(request), vm->job.force || force);
    if (request == VM_REQ_DELETE)
      vm_set_phase(vm, VM_PHASE_TERMINATING);
    else
      vm_save(vm);
    if (vm->job.force)
      vmlet_instance_quit(vm->qemu);
    return NULL;
  case VM_RULE_PREEMPT:
    /* A start cut short: the guest is not running yet, so there is nobody to press the
     * button for. */
    vm_set_job(vm, VM_JOB_STOP, vm_job_intent_of(request), TRUE);
    if (request == VM_REQ_DELETE)
      vm_set_phase(vm, VM_PHASE_TERMINATING);
    vm_stop_begin(vm);
    return NULL;
  case VM_RULE_CANCEL:
    /* Carried out once the migration has ended, here (cancelled) or not at all (the VM
     * left: a deletion then concerns nothing this node runs). */
    vm->after_migration = TRUE;
    vm->after_request = request;
    vm->after_force = force;
    if (vm->job.kind == VM_JOB_MIGRATE_OUT)
      vm_migrate_out_cancel(vm, "cancelled: the VM is being stopped or deleted");
    else
      vm_migrate_in_cancel(vm, "cancelled: the VM is being deleted on the destination");
    return NULL;
  case VM_RULE_REFUSE:
    break;
  }
  if (vm->job.kind == VM_JOB_MIGRATE_OUT || vm->job.kind == VM_JOB_MIGRATE_IN)
    return g_strdup_printf("%s: is migrating (OtherMigrationInProgress): delete the "
                           "migration's operation to cancel it", vm->name);
  return g_strdup_printf("%s: is being deleted", vm->name);
}

void vm_after_migration(VmletVm *vm)
{
  if (!vm->after_migration)
    return;
  vm->after_migration = FALSE;
  g_free(vm_request(vm, vm->after_request, vm->after_force));
}

/* ---- operations ---- */

/* Why the run policy or the VM's state refuses an operation, or NULL when it may go ahead. */
static char *refusal(VmletVm *vm, VmOpType type)
{
  if (!vm->spec)
    return g_strdup_printf("%s: cannot be operated: %s", vm->name,
                           vm->problem ? vm->problem : "no valid spec");
  VmRunPolicy policy = vm->spec->run_policy;
  if ((type == VM_OP_START || type == VM_OP_RESTART) && vm->env->cordoned)
    return g_strdup_printf("NodeCordoned: node %s is cordoned (maintenance): no VM starts "
                           "here until it is uncordoned", vm->env->node->name);
  if (type != VM_OP_STOP && policy == VM_RUN_POLICY_ALWAYS_OFF)
    return g_strdup_printf("%s: runPolicy AlwaysOff does not allow starting the VM", vm->name);
  if (type == VM_OP_STOP && policy == VM_RUN_POLICY_ALWAYS_ON)
    return g_strdup_printf("%s: runPolicy AlwaysOn keeps the VM running; change runPolicy to "
                           "stop it", vm->name);
  if (vm_deleting(vm))
    return g_strdup_printf("%s: is being deleted", vm->name);
  return NULL;
}

static VmOp *add_op(VmletVm *vm, VmOpType type, gboolean force)
{
  VmOp *op = g_new0(VmOp, 1);
  op->progress = -1;
  op->paused_ms = -1;
  g_autofree char *uuid = g_uuid_string_random();
  op->uid = g_strndup(uuid, 8);
  op->type = type;
  op->force = force;
  op->phase = OP_IN_PROGRESS;
  op->created_us = g_get_real_time();
  while (vm->ops->len >= VM_MAX_OPERATIONS)
    g_ptr_array_remove_index(vm->ops, 0);
  g_ptr_array_add(vm->ops, op);
  return op;
}

static void migrate(VmletVm *vm, VmOp *op)
{
  if (vm_job_rule(&vm->job, VM_REQ_MIGRATE) == VM_RULE_REFUSE) {
    op->phase = OP_FAILED;
    op->reason = g_strdup_printf("OtherMigrationInProgress: %s is busy (%s)", vm->name,
                                 vm_job_kind_name(vm->job.kind));
    return;
  }
  char *why = vm_migrate_out_begin(vm, op->uid, op->selector, op->force);
  if (why) {
    op->phase = OP_FAILED;
    op->reason = why;
  }
}

char *vmlet_vm_operate(VmletVm *vm, VmOpType type, gboolean force)
{
  VmOp *op = add_op(vm, type, force);
  char *uid = g_strdup(op->uid);
  op->reason = refusal(vm, type);
  if (op->reason) {
    op->phase = OP_FAILED;
    vm_changed(vm);
    return uid;
  }
  /* An operation is the user's word: it ends any crash-loop wait. */
  g_clear_handle_id(&vm->backoff_timer, g_source_remove);
  vm->backoff_s = VM_BACKOFF_MIN_S;
  switch (type) {
  case VM_OP_START:
    vm->rec->stopped_manually = FALSE;
    vm_save(vm);
    if (vm->phase == VM_PHASE_RUNNING)
      vm_ops_complete(vm, VM_OP_START, TRUE, "already running");
    g_free(vm_request(vm, VM_REQ_START, force));
    break;
  case VM_OP_STOP:
    if (vm->spec->run_policy != VM_RUN_POLICY_ALWAYS_ON)
      vm->rec->stopped_manually = TRUE;
    vm_save(vm);
    if (!vm_qemu_alive(vm)) {
      vm_ops_complete(vm, VM_OP_STOP, TRUE, "already stopped");
      vm_set_phase(vm, vm->phase == VM_PHASE_PENDING ? VM_PHASE_PENDING : VM_PHASE_STOPPED);
    } else {
      g_free(vm_request(vm, VM_REQ_STOP, force));
    }
    break;
  case VM_OP_RESTART:
    vm->rec->stopped_manually = FALSE;
    vm_save(vm);
    g_free(vm_request(vm, VM_REQ_RESTART, force));
    break;
  case VM_OP_EVICT:
  case VM_OP_MIGRATE:
    migrate(vm, op);
    break;
  }
  vm_changed(vm);
  return uid;
}

char *vmlet_vm_migrate(VmletVm *vm, VmOpType type, GHashTable *selector, gboolean force)
{
  VmOp *op = add_op(vm, type, force);
  op->selector = selector ? g_hash_table_ref(selector) : NULL;
  char *uid = g_strdup(op->uid);
  op->reason = refusal(vm, type);
  if (op->reason)
    op->phase = OP_FAILED;
  else
    migrate(vm, op);
  vm_changed(vm);
  return uid;
}

void vmlet_vm_name_operation(VmletVm *vm, const char *uid, const char *name)
{
  VmOp *op = find_op(vm, uid);
  if (!op)
    return;
  vm_set_str(&op->name, name);
  vm_changed(vm);
}

gboolean vmlet_vm_delete_operation(VmletVm *vm, const char *name)
{
  for (guint i = 0; i < vm->ops->len; i++) {
    VmOp *op = vm->ops->pdata[i];
    g_autofree char *n = op_name(vm, op);
    if (!g_str_equal(n, name))
      continue;
    gboolean running = op->phase == OP_IN_PROGRESS;
    gboolean migration = op->type == VM_OP_EVICT || op->type == VM_OP_MIGRATE;
    g_ptr_array_remove_index(vm->ops, i);
    /* DVP: deleting the operation of a migration under way cancels it. */
    if (running && migration)
      vm_migrate_out_cancel(vm, "cancelled: its VirtualMachineOperation was deleted");
    vm_changed(vm);
    return TRUE;
  }
  return FALSE;
}

gboolean vmlet_vm_operation_outcome(VmletVm *vm, const char *uid, gboolean *ended,
                                    gboolean *ok, gint *progress, const char **reason)
{
  VmOp *op = uid ? find_op(vm, uid) : NULL;
  if (!op)
    return FALSE;
  *ended = op->phase == OP_COMPLETED || op->phase == OP_FAILED;
  *ok = op->phase == OP_COMPLETED;
  *progress = op->progress;
  *reason = op->reason;
  return TRUE;
}

void vmlet_vm_stop_for_maintenance(VmletVm *vm)
{
  g_free(vm_request(vm, VM_REQ_STOP, FALSE));
}

/* The client's name, else DVP's "<type>-<vm>-<uid>", as the CLI prints them. */
static char *op_name(VmletVm *vm, const VmOp *op)
{
  if (op->name)
    return g_strdup(op->name);
  g_autofree char *type = g_ascii_strdown(op_type_names[op->type], -1);
  return g_strdup_printf("%s-%s-%s", type, vm->name, op->uid);
}

JsonNode *vmlet_vm_operations_json(VmletVm *vm)
{
  JsonArray *arr = json_array_new();
  for (guint i = 0; i < vm->ops->len; i++) {
    VmOp *op = vm->ops->pdata[i];
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "apiVersion", VMLET_API_GROUP "/v1alpha2");
    json_object_set_string_member(o, "kind", "VirtualMachineOperation");
    JsonObject *md = json_object_new();
    g_autofree char *name = op_name(vm, op);
    json_object_set_string_member(md, "name", name);
    json_object_set_string_member(md, "namespace", vm->namespace);
    g_autofree char *created = vmlet_timestamp(op->created_us);
    json_object_set_string_member(md, "creationTimestamp", created);
    json_object_set_object_member(o, "metadata", md);
    JsonObject *spec = json_object_new();
    json_object_set_string_member(spec, "virtualMachineName", vm->name);
    json_object_set_string_member(spec, "type", op_type_names[op->type]);
    json_object_set_boolean_member(spec, "force", op->force);
    if (op->type == VM_OP_MIGRATE) {
      JsonObject *mig = json_object_new(), *sel = json_object_new();
      GHashTableIter it;
      gpointer k, v;
      if (op->selector) {
        g_hash_table_iter_init(&it, op->selector);
        while (g_hash_table_iter_next(&it, &k, &v))
          json_object_set_string_member(sel, k, v);
      }
      json_object_set_object_member(mig, "nodeSelector", sel);
      json_object_set_object_member(spec, "migrate", mig);
    }
    json_object_set_object_member(o, "spec", spec);
    JsonObject *st = json_object_new();
    json_object_set_string_member(st, "phase", op_phase_names[op->phase]);
    if (op->progress >= 0) {
      g_autofree char *p = g_strdup_printf("%d%%", op->progress);
      json_object_set_string_member(st, "progress", p);
    }
    if (op->target)
      json_object_set_string_member(st, "targetNode", op->target);
    if (op->reason)
      json_object_set_string_member(st, "reason", op->reason);
    if (op->paused_ms >= 0) {
      /* vmlet's addition: how long the guest was paused, and QEMU's own measures. */
      JsonObject *mig = json_object_new();
      json_object_set_int_member(mig, "pausedMs", op->paused_ms);
      if (op->qemu_downtime_ms >= 0) {
        json_object_set_int_member(mig, "qemuDowntimeMs", op->qemu_downtime_ms);
        json_object_set_int_member(mig, "memoryCopyMs", op->memory_ms);
      }
      json_object_set_object_member(st, "migration", mig);
    }
    json_object_set_object_member(o, "status", st);
    json_array_add_object_element(arr, o);
  }
  JsonNode *node = json_node_new(JSON_NODE_ARRAY);
  json_node_take_array(node, arr);
  return node;
}
