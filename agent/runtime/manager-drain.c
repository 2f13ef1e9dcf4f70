/* Maintenance: cordon, drain, uncordon (DVP's "Режим обслуживания", kubectl drain).
 *
 * A drain is carried out by the operation machinery the user has: one Evict per VM that
 * runs here, named evacuation-VM-UID as DVP names them, at most [migration] outbound at
 * once, each choosing its peer as any Evict does (placement, not cordoned, a free inbound
 * slot: vm-migrate-out-steps.c). Only one eviction at a time is still choosing its target,
 * so two do not pick the same peer's last inbound slot and fail on it. A tick looks at
 * every VM of the drain (cordon.h has their states) and saves the table whenever it
 * changes, so that a restarted vmletd resumes it: an eviction whose operation it no longer
 * knows is either settled by the migration's own recovery (the VM then leaves, or stays
 * and is evicted again) or begun again. */
#include "manager-private.h"

#include <stdarg.h>
#include <syslog.h>

#include "cordon.h"
#include "jsonval.h"
#include "migrations.h"

#define DRAIN_TICK_MS 500
/* A VM whose Evict found every fitting peer at its inbound limit (or this node at its
 * outbound one) waits this long before the next try: one failed operation per VM every
 * 2 s, not every tick. */
#define BUSY_RETRY_US (2 * G_USEC_PER_SEC)

static void drain_note(VmletManager *mgr, CordonVm *v, int priority, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static void drain_note(VmletManager *mgr, CordonVm *v, int priority, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *text = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_autofree char *line = g_strdup_printf("drain: %s/%s: %s", v->namespace, v->name, text);
  mgr_emit_node_note(mgr, priority, line);
}

gboolean vmlet_manager_is_cordoned(VmletManager *mgr)
{
  return mgr->env.cordoned;
}

static void set_str(char **slot, const char *value)
{
  char *copy = g_strdup(value);
  g_free(*slot);
  *slot = copy;
}

static void save(VmletManager *mgr)
{
  g_autoptr(GError) error = NULL;
  if (vmlet_cordon_save(mgr->cordon, mgr->env.node->state_dir, &error)) {
    g_clear_pointer(&mgr->cordon_problem, g_free);
    return;
  }
  /* The drain goes on; a restart would resume it from the last table written. */
  g_free(mgr->cordon_problem);
  mgr->cordon_problem = g_strdup(error->message);
}

static gboolean move(VmletManager *mgr, CordonVm *v, CordonVmState to, const char *reason)
{
  g_autoptr(GError) error = NULL;
  if (!vmlet_cordon_vm_move(v, to, &error)) {
    g_critical("%s", error->message);
    return FALSE;
  }
  set_str(&v->reason, reason);
  const char *detail = reason ? reason : to == CORDON_VM_MOVED ? v->target : NULL;
  drain_note(mgr, v, to == CORDON_VM_UNPLACEABLE ? LOG_WARNING : LOG_INFO, "%s%s%s",
             vmlet_cordon_vm_state_name(to), detail ? ": " : "", detail ? detail : "");
  return TRUE;
}

/* Every VM that runs here and is not in the table yet (a VM still starting when the drain
 * began, say) joins it. */
static gboolean collect(VmletManager *mgr)
{
  gboolean added = FALSE;
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmletVm *vm = vms->pdata[i];
    const char *ns = vmlet_vm_get_namespace(vm), *name = vmlet_vm_get_name(vm);
    CordonVm *v = vmlet_cordon_find(mgr->cordon, ns, name);
    if (vmlet_vm_runs_here(vm) && (!v || v->state == CORDON_VM_MOVED ||
                                   v->state == CORDON_VM_STOPPED)) {
      if (v)
        g_ptr_array_remove(mgr->cordon->vms, v);
      vmlet_cordon_add(mgr->cordon, ns, name);
      added = TRUE;
    }
  }
  return added;
}

/* Where the VM went, from its operation kept after it left (manager-ops.c). */
static const char *target_of(VmletManager *mgr, CordonVm *v, JsonNode **keep)
{
  *keep = v->operation ? vmlet_manager_operation(mgr, v->namespace, v->operation) : NULL;
  return *keep ? jv_string_path(json_node_get_object(*keep), "status.targetNode") : NULL;
}

typedef struct {
  guint free_slots;  /* outgoing migrations the drain may still begin */
  gboolean choosing; /* an eviction is still choosing or preparing its target */
} Tick;

/* Progress below 4 %: choosing a target or preparing it (vm-migrate-out.c's steps). */
#define PROGRESS_PREPARED 4

static gboolean step_evicting(VmletManager *mgr, CordonVm *v, VmletVm *vm, Tick *t)
{
  g_autoptr(JsonNode) keep = NULL;
  if (!vm) {
    set_str(&v->target, target_of(mgr, v, &keep));
    return move(mgr, v, CORDON_VM_MOVED, NULL);
  }
  gboolean ended = FALSE, ok = FALSE;
  gint progress = -1;
  const char *reason = NULL;
  if (!vmlet_vm_operation_outcome(vm, v->op_uid, &ended, &ok, &progress, &reason)) {
    /* vmletd restarted (the uid was its predecessor's) or the operation was deleted: a
     * migration still under way is recovery's to settle; then the VM is tried again. */
    if (vmlet_vm_is_migrating_out(vm))
      return FALSE;
    return move(mgr, v, CORDON_VM_PENDING, "its eviction is gone (vmletd restarted, or the "
                                           "operation was deleted): evicted again");
  }
  if (!ended) {
    t->choosing = t->choosing || progress < PROGRESS_PREPARED;
    return FALSE;
  }
  if (ok) /* the VM is handed over and leaves the node at once */
    return FALSE;
  switch (vmlet_cordon_classify(reason)) {
  case CORDON_RETRY_BUSY:
    v->not_before_us = g_get_monotonic_time() + BUSY_RETRY_US;
    return move(mgr, v, CORDON_VM_PENDING, reason);
  case CORDON_RETRY:
    if (++v->attempts < VMLET_CORDON_MAX_ATTEMPTS)
      return move(mgr, v, CORDON_VM_PENDING, reason);
    break;
  case CORDON_UNPLACEABLE:
    break;
  }
  return move(mgr, v, CORDON_VM_UNPLACEABLE, reason);
}

static gboolean begin_eviction(VmletManager *mgr, CordonVm *v, VmletVm *vm, Tick *t)
{
  if (vmlet_vm_get_phase(vm) != VM_PHASE_RUNNING || t->free_slots == 0 || t->choosing ||
      g_get_monotonic_time() < v->not_before_us)
    return FALSE;
  g_autofree char *uid = vmlet_vm_migrate(vm, VM_OP_EVICT, NULL, FALSE);
  g_autofree char *name = g_strdup_printf("evacuation-%s-%s", v->name, uid);
  vmlet_vm_name_operation(vm, uid, name);
  set_str(&v->op_uid, uid);
  set_str(&v->operation, name);
  t->free_slots--;
  move(mgr, v, CORDON_VM_EVICTING, NULL);
  /* Refused at once (not migratable, no slot after all): known now. */
  step_evicting(mgr, v, vm, t);
  return TRUE;
}

static gboolean step_vm(VmletManager *mgr, CordonVm *v, Tick *t)
{
  VmletVm *vm = vmlet_manager_lookup(mgr, v->namespace, v->name);
  switch (v->state) {
  case CORDON_VM_PENDING:
    if (!vm)
      return move(mgr, v, CORDON_VM_MOVED, "no longer on this node");
    if (!vmlet_vm_runs_here(vm))
      return move(mgr, v, CORDON_VM_STOPPED, "stopped before its turn");
    return begin_eviction(mgr, v, vm, t);
  case CORDON_VM_EVICTING:
    return step_evicting(mgr, v, vm, t);
  case CORDON_VM_UNPLACEABLE:
    if (!vm)
      return move(mgr, v, CORDON_VM_MOVED, "no longer on this node");
    if (!mgr->cordon->force || !vmlet_vm_runs_here(vm))
      return FALSE;
    vmlet_vm_stop_for_maintenance(vm);
    return move(mgr, v, CORDON_VM_STOPPING, "drain --force: stopped gracefully, spec kept");
  case CORDON_VM_STOPPING:
    if (!vm)
      return move(mgr, v, CORDON_VM_MOVED, "no longer on this node");
    if (vmlet_vm_runs_here(vm))
      return FALSE;
    /* Its run policy may want it running: Pending with NodeCordoned until uncordon. */
    vmlet_vm_reconcile(vm);
    return move(mgr, v, CORDON_VM_STOPPED, NULL);
  case CORDON_VM_MOVED:
  case CORDON_VM_STOPPED:
    return FALSE;
  }
  return FALSE;
}

static void drain_tick(VmletManager *mgr)
{
  VmletCordon *c = mgr->cordon;
  if (!c || !c->draining)
    return;
  gboolean changed = collect(mgr);
  VmletMigrations *ms = mgr->env.migrations;
  guint limit = mgr->env.node->migration.outbound;
  Tick t = {ms ? limit - MIN(limit, vmlet_migrations_in_use(ms, TRUE)) : G_MAXUINT, FALSE};
  /* Evictions under way first: they tell whether a target is being chosen. */
  for (guint i = 0; i < c->vms->len; i++)
    if (((CordonVm *)c->vms->pdata[i])->state != CORDON_VM_PENDING)
      changed = step_vm(mgr, c->vms->pdata[i], &t) || changed;
  for (guint i = 0; i < c->vms->len; i++)
    if (((CordonVm *)c->vms->pdata[i])->state == CORDON_VM_PENDING)
      changed = step_vm(mgr, c->vms->pdata[i], &t) || changed;
  /* With force, one found unplaceable just now is stopped now, before the drain could be
   * taken for ended. */
  for (guint i = 0; c->force && i < c->vms->len; i++)
    if (((CordonVm *)c->vms->pdata[i])->state == CORDON_VM_UNPLACEABLE)
      changed = step_vm(mgr, c->vms->pdata[i], &t) || changed;
  if (vmlet_cordon_left(c) == 0) {
    c->draining = FALSE;
    c->drain_ended_us = g_get_real_time();
    guint bad = vmlet_cordon_count(c, CORDON_VM_UNPLACEABLE);
    g_autofree char *n = vmlet_cordon_plural_vms(bad);
    g_autofree char *line = bad ? g_strdup_printf("drain: ended, %s could not be moved", n)
                                : g_strdup("drain: ended, the node is empty");
    mgr_emit_node_note(mgr, bad ? LOG_WARNING : LOG_NOTICE, line);
    changed = TRUE;
  }
  if (changed) {
    save(mgr);
    mgr_emit_node_changed(mgr);
  }
}

static gboolean on_drain_timer(gpointer data)
{
  VmletManager *mgr = data;
  drain_tick(mgr);
  if (mgr->cordon && mgr->cordon->draining)
    return G_SOURCE_CONTINUE;
  mgr->drain_timer = 0;
  return G_SOURCE_REMOVE;
}

static void drain_run(VmletManager *mgr)
{
  if (!mgr->drain_timer)
    mgr->drain_timer = g_timeout_add(DRAIN_TICK_MS, on_drain_timer, mgr);
  drain_tick(mgr);
}

gboolean vmlet_manager_drain(VmletManager *mgr, gboolean force, GError **error)
{
  gboolean fresh = mgr->cordon == NULL;
  if (fresh)
    mgr->cordon = vmlet_cordon_new(g_get_real_time());
  VmletCordon *c = mgr->cordon;
  c->draining = TRUE;
  c->force = force;
  c->drain_started_us = g_get_real_time();
  c->drain_ended_us = 0;
  /* A drain again is a new table: the VMs the last one moved or stopped are done with;
   * those it could not move are tried again (or, with force, stopped). */
  for (guint i = c->vms->len; i-- > 0;) {
    CordonVm *v = c->vms->pdata[i];
    if (v->state == CORDON_VM_MOVED || v->state == CORDON_VM_STOPPED) {
      g_ptr_array_remove_index(c->vms, i);
    } else if (v->state == CORDON_VM_UNPLACEABLE && !force) {
      v->state = CORDON_VM_PENDING;
      v->attempts = 0;
    }
  }
  collect(mgr);
  if (!vmlet_cordon_save(c, mgr->env.node->state_dir, error)) {
    if (fresh)
      g_clear_pointer(&mgr->cordon, vmlet_cordon_free);
    return FALSE;
  }
  mgr->env.cordoned = TRUE;
  mgr_emit_node_changed(mgr);
  drain_run(mgr);
  return TRUE;
}

gboolean vmlet_manager_uncordon(VmletManager *mgr, GError **error)
{
  if (!mgr->env.cordoned)
    return TRUE;
  if (!vmlet_cordon_remove(mgr->env.node->state_dir, error))
    return FALSE;
  g_autoptr(VmletCordon) c = g_steal_pointer(&mgr->cordon);
  g_clear_handle_id(&mgr->drain_timer, g_source_remove);
  mgr->env.cordoned = FALSE;
  g_clear_pointer(&mgr->cordon_problem, g_free);
  /* KubeVirt's known complaint: evictions that go on after uncordon. Those not yet at the
   * switchover are cancelled; the VM runs on here. */
  for (guint i = 0; c && i < c->vms->len; i++) {
    CordonVm *v = c->vms->pdata[i];
    VmletVm *vm = v->state == CORDON_VM_EVICTING
                      ? vmlet_manager_lookup(mgr, v->namespace, v->name) : NULL;
    if (vm && vmlet_vm_cancel_migration_before_switchover(vm, "cancelled: the node was "
                                                          "uncordoned"))
      drain_note(mgr, v, LOG_INFO, "eviction %s cancelled", v->operation);
  }
  mgr_emit_node_note(mgr, LOG_NOTICE, "uncordoned: VMs may start here again");
  /* The VMs kept Pending by the cordon start as their run policies want. */
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++)
    vmlet_vm_reconcile(vms->pdata[i]);
  mgr_emit_node_changed(mgr);
  return TRUE;
}

void mgr_cordon_load(VmletManager *mgr)
{
  g_autoptr(GError) error = NULL;
  VmletCordon *c = NULL;
  if (!vmlet_cordon_load(mgr->env.node->state_dir, &c, &error)) {
    /* Whoever wrote it wanted maintenance: the node stays cordoned, without a drain,
     * until `vmlet uncordon` (which removes the file) or a new `vmlet drain`. */
    g_ptr_array_add(mgr->setup_problems,
                    g_strdup_printf("%s; the node stays cordoned: `vmlet uncordon` or "
                                    "`vmlet drain` replaces the file", error->message));
    c = vmlet_cordon_new(g_get_real_time());
  }
  mgr->cordon = c;
  mgr->env.cordoned = c != NULL;
}

void mgr_cordon_resume(VmletManager *mgr)
{
  if (mgr->cordon && mgr->cordon->draining)
    drain_run(mgr);
}
