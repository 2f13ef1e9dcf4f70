#include "attachctl.h"

#include <string.h>

#include "hotplug.h"
#include "jsonval.h"
#include "qemu-access.h"
#include "qemu-devices.h"
#include "slots.h"
#include "vmlet-error.h"

typedef enum {
  HOT_ATTACHING, /* blockdev-add + device_add sent (or QEMU started with it, unconfirmed) */
  HOT_ATTACHED,
  HOT_DETACHING, /* device_del sent; waiting for DEVICE_DELETED */
  HOT_RELEASING, /* the device is gone; blockdev-del sent */
} HotState;

static const char *const hot_state_names[] = {"Attaching", "Attached", "Detaching",
                                              "Releasing"};

typedef struct {
  VmletAttachment *att; /* the spec it was plugged for (the drop-in may be gone) */
  VmPlanDisk *disk;     /* device id, node names, bus and slot */
  HotState state;
  char *message;        /* why it waits, for the status */
  gint64 created_us;
  guint gen;            /* identifies the operation in flight */
  guint timer;          /* the DEVICE_DELETED wait, or a retry */
  gboolean busy;        /* a QMP operation of this entry is in flight */
  gboolean timed_out;   /* DEVICE_DELETED is overdue */
  gboolean retry;       /* device_del or blockdev-del failed: try again on the recheck */
  gboolean cleanup;     /* removing nodes an interrupted attach left, before attaching */
} HotEntry;

struct _VmletAttachCtl {
  GObject parent;
  char *namespace, *vm_name;
  const VmletNode *node;
  VmletInventory **inv;
  VmSpec *spec;
  char *not_running;     /* NULL while the VM runs */
  gboolean paused;
  GPtrArray *desired;    /* VmletAttachment * */
  GHashTable *conflicts; /* name -> VmbdaProblem *, from the manager */
  GHashTable *failures;  /* name -> VmbdaProblem *, what QEMU refused */
  GHashTable *waiting;   /* name -> VmbdaProblem *, why it is not plugged yet */
  GHashTable *entries;   /* name -> HotEntry * */
  GHashTable *first_seen; /* name -> gint64 *: creation time when the object has none */
  GHashTable *last_slots; /* name -> GUINT_TO_POINTER(slot + 1), kept across restarts */
  const VmletConfine *confine; /* QEMU's user, to give disks to; NULL: none */
  VmletQmp *qmp;
  gulong event_id;
  GCancellable *cancel;  /* every QMP operation of the current QEMU */
  gboolean probed;       /* QEMU's state has been read: operations may start */
  guint64 ports;         /* root ports hot-plugged disks may use in this QEMU */
  guint recheck;
  guint next_gen;
  gboolean dirty;        /* something changed since the last "changed" */
  gboolean recheck_due;  /* in the recheck: failed QMP steps may be retried */
};

enum { SIGNAL_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletAttachCtl, vmlet_attach_ctl, G_TYPE_OBJECT)

static void reconcile(VmletAttachCtl *ctl);

static void entry_free(gpointer p)
{
  HotEntry *e = p;
  g_clear_handle_id(&e->timer, g_source_remove);
  vmlet_attachment_unref(e->att);
  vm_plan_disk_free(e->disk);
  g_free(e->message);
  g_free(e);
}

static void set_message(HotEntry *e, const char *message)
{
  char *copy = g_strdup(message);
  g_free(e->message);
  e->message = copy;
}

static void vmlet_attach_ctl_finalize(GObject *obj)
{
  VmletAttachCtl *ctl = VMLET_ATTACH_CTL(obj);
  vmlet_attach_ctl_deactivate(ctl);
  g_clear_handle_id(&ctl->recheck, g_source_remove);
  g_free(ctl->namespace);
  g_free(ctl->vm_name);
  g_clear_pointer(&ctl->spec, vm_spec_unref);
  g_free(ctl->not_running);
  g_ptr_array_unref(ctl->desired);
  g_hash_table_unref(ctl->conflicts);
  g_hash_table_unref(ctl->failures);
  g_hash_table_unref(ctl->waiting);
  g_hash_table_unref(ctl->entries);
  g_hash_table_unref(ctl->first_seen);
  g_hash_table_unref(ctl->last_slots);
  G_OBJECT_CLASS(vmlet_attach_ctl_parent_class)->finalize(obj);
}

static void vmlet_attach_ctl_class_init(VmletAttachCtlClass *klass)
{
  G_OBJECT_CLASS(klass)->finalize = vmlet_attach_ctl_finalize;
  signals[SIGNAL_CHANGED] = g_signal_new("changed", VMLET_TYPE_ATTACH_CTL, G_SIGNAL_RUN_LAST, 0,
                                         NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static GHashTable *problem_table(void)
{
  return g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                               (GDestroyNotify)vmbda_problem_free);
}

static void vmlet_attach_ctl_init(VmletAttachCtl *ctl)
{
  ctl->desired = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_attachment_unref);
  ctl->conflicts = problem_table();
  ctl->failures = problem_table();
  ctl->waiting = problem_table();
  ctl->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
  ctl->first_seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  ctl->last_slots = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

VmletAttachCtl *vmlet_attach_ctl_new(const char *namespace, const char *vm_name,
                                     const VmletNode *node, VmletInventory **inv)
{
  VmletAttachCtl *ctl = g_object_new(VMLET_TYPE_ATTACH_CTL, NULL);
  ctl->namespace = g_strdup(namespace);
  ctl->vm_name = g_strdup(vm_name);
  ctl->node = node;
  ctl->inv = inv;
  return ctl;
}

static void changed(VmletAttachCtl *ctl)
{
  ctl->dirty = FALSE;
  g_signal_emit(ctl, signals[SIGNAL_CHANGED], 0);
}

/* Why name is not plugged yet (takes p); marks a change only when the why changed, so a
 * periodic recheck that finds the same reason reports nothing. */
static void set_waiting(VmletAttachCtl *ctl, const char *name, VmbdaProblem *p)
{
  const VmbdaProblem *old = g_hash_table_lookup(ctl->waiting, name);
  if (!old || old->reason != p->reason || g_strcmp0(old->message, p->message) != 0)
    ctl->dirty = TRUE;
  g_hash_table_replace(ctl->waiting, g_strdup(name), p);
}

static void clear_waiting(VmletAttachCtl *ctl, const char *name)
{
  if (g_hash_table_remove(ctl->waiting, name))
    ctl->dirty = TRUE;
}

static VmletAttachment *find_desired(VmletAttachCtl *ctl, const char *name)
{
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *a = ctl->desired->pdata[i];
    if (g_str_equal(a->meta.name, name))
      return a;
  }
  return NULL;
}

static gboolean active(VmletAttachCtl *ctl)
{
  return ctl->qmp && ctl->probed && !ctl->not_running && !vmlet_qmp_is_closed(ctl->qmp);
}

/* ---- context ---- */

void vmlet_attach_ctl_set_vm(VmletAttachCtl *ctl, VmSpec *spec, const char *not_running)
{
  if (spec != ctl->spec) {
    g_clear_pointer(&ctl->spec, vm_spec_unref);
    ctl->spec = spec ? vm_spec_ref(spec) : NULL;
  }
  if (g_strcmp0(not_running, ctl->not_running) != 0) {
    g_free(ctl->not_running);
    ctl->not_running = g_strdup(not_running);
  }
  reconcile(ctl);
}

static void explain_detach(VmletAttachCtl *ctl, HotEntry *e)
{
  if (e->state != HOT_DETACHING)
    return;
  if (ctl->paused)
    set_message(e, "the VM is paused: the guest releases the device only when it runs again "
                   "(vmlet unpause); waiting for QEMU's DEVICE_DELETED");
  else if (e->timed_out)
    set_message(e, "the guest has not released the device within "
                   G_STRINGIFY(VMLET_DETACH_WAIT_S) " s of device_del; waiting for QEMU's "
                   "DEVICE_DELETED");
  else
    set_message(e, NULL);
}

void vmlet_attach_ctl_set_confine(VmletAttachCtl *ctl, const VmletConfine *confine)
{
  ctl->confine = confine;
}

void vmlet_attach_ctl_set_paused(VmletAttachCtl *ctl, gboolean paused)
{
  if (ctl->paused == paused)
    return;
  ctl->paused = paused;
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (g_hash_table_iter_next(&it, NULL, &v))
    explain_detach(ctl, v);
  changed(ctl);
}

void vmlet_attach_ctl_set_desired(VmletAttachCtl *ctl, GPtrArray *attachments,
                                  GHashTable *conflicts, gboolean retry)
{
  g_ptr_array_set_size(ctl->desired, 0);
  gint64 now = g_get_real_time();
  for (guint i = 0; i < attachments->len; i++) {
    VmletAttachment *a = attachments->pdata[i];
    g_ptr_array_add(ctl->desired, vmlet_attachment_ref(a));
    if (!g_hash_table_contains(ctl->first_seen, a->meta.name))
      g_hash_table_insert(ctl->first_seen, g_strdup(a->meta.name), g_memdup2(&now, sizeof(now)));
  }
  g_hash_table_remove_all(ctl->conflicts);
  if (conflicts) {
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, conflicts);
    while (g_hash_table_iter_next(&it, &k, &v)) {
      const VmbdaProblem *p = v;
      g_hash_table_insert(ctl->conflicts, g_strdup(k),
                          vmbda_problem_new(p->reason, "%s", p->message));
    }
  }
  /* Forget what is no longer asked for; keep a refusal only until the inputs change. */
  GHashTableIter it;
  gpointer k;
  g_hash_table_iter_init(&it, ctl->failures);
  while (g_hash_table_iter_next(&it, &k, NULL))
    if (retry || !find_desired(ctl, k))
      g_hash_table_iter_remove(&it);
  g_hash_table_iter_init(&it, ctl->first_seen);
  while (g_hash_table_iter_next(&it, &k, NULL))
    if (!find_desired(ctl, k) && !g_hash_table_contains(ctl->entries, k))
      g_hash_table_iter_remove(&it);
  reconcile(ctl);
  changed(ctl);
}

/* ---- readiness ---- */

static gboolean file_exists(const VmPlanDisk *disk)
{
  return g_file_test(disk->path, G_FILE_TEST_EXISTS);
}

/* The attachments already holding a device of this VM, in the order they got it. */
static GPtrArray *holders(VmletAttachCtl *ctl)
{
  GPtrArray *out = g_ptr_array_new();
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_ptr_array_add(out, ((HotEntry *)v)->att);
  return out;
}

/* The disk att would plug now, or NULL with why not (in ctl->waiting). */
static VmPlanDisk *ready_disk(VmletAttachCtl *ctl, VmletAttachment *att, GPtrArray *others)
{
  const char *name = att->meta.name;
  VmbdaProblem *p = g_hash_table_lookup(ctl->conflicts, name);
  if (!p)
    p = g_hash_table_lookup(ctl->failures, name);
  if (p) {
    set_waiting(ctl, name, vmbda_problem_new(p->reason, "%s", p->message));
    return NULL;
  }
  VmletBlockObject *obj = vmlet_inventory_block(*ctl->inv, att->kind, att->meta.namespace,
                                                att->block_name);
  if (!obj) {
    set_waiting(ctl, name,
                att->kind == VM_BLOCK_CLUSTER_VIRTUAL_IMAGE
                    ? vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY,
                                        "ClusterVirtualImage \"%s\" not found", att->block_name)
                    : vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY,
                                        "%s \"%s\" not found in namespace \"%s\"",
                                        vm_block_kind_name(att->kind), att->block_name,
                                        att->meta.namespace));
    return NULL;
  }
  VmbdaProblem *check = vmlet_slots_check(ctl->spec, others, att);
  if (check) {
    set_waiting(ctl, name, check);
    return NULL;
  }
  g_autoptr(VmPlanDisk) disk = vm_plan_attachment_disk(ctl->node, obj, name);
  if (!file_exists(disk)) {
    set_waiting(ctl, name,
                vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY, "%s \"%s\": %s does not exist",
                                  vm_block_kind_name(att->kind), att->block_name, disk->path));
    return NULL;
  }
  clear_waiting(ctl, name);
  return g_steal_pointer(&disk);
}

/* ---- start ---- */

void vmlet_attach_ctl_plan(VmletAttachCtl *ctl, VmPlan *plan)
{
  /* A start is a fresh chance for what QEMU refused before. */
  g_hash_table_remove_all(ctl->failures);
  g_autoptr(GPtrArray) ready = g_ptr_array_new();
  g_autoptr(GPtrArray) empty = g_ptr_array_new();
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *att = ctl->desired->pdata[i];
    /* Limits and duplicates are checked by the placement, among the ready ones. */
    g_autoptr(VmPlanDisk) disk = ready_disk(ctl, att, empty);
    if (disk)
      g_ptr_array_add(ready, att);
  }
  g_autoptr(GHashTable) left_out = problem_table();
  vmlet_slots_place(plan, ready, *ctl->inv, ctl->node, ctl->last_slots, left_out);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, left_out);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    const VmbdaProblem *p = v;
    set_waiting(ctl, k, vmbda_problem_new(p->reason, "%s", p->message));
  }
}

static HotEntry *add_entry(VmletAttachCtl *ctl, VmletAttachment *att, VmPlanDisk *disk,
                           HotState state)
{
  HotEntry *e = g_new0(HotEntry, 1);
  e->att = vmlet_attachment_ref(att);
  e->disk = disk;
  e->state = state;
  gint64 *seen = g_hash_table_lookup(ctl->first_seen, att->meta.name);
  e->created_us = seen ? *seen : g_get_real_time();
  g_hash_table_replace(ctl->entries, g_strdup(att->meta.name), e);
  g_hash_table_remove(ctl->waiting, att->meta.name);
  g_hash_table_replace(ctl->last_slots, g_strdup(att->meta.name),
                       GUINT_TO_POINTER(disk->slot + 1));
  return e;
}

void vmlet_attach_ctl_started(VmletAttachCtl *ctl, const VmPlan *plan)
{
  for (guint i = 0; i < plan->hotplugged->len; i++) {
    const VmPlanDisk *d = plan->hotplugged->pdata[i];
    VmletAttachment *att = find_desired(ctl, d->attachment);
    if (!att)
      continue;
    VmPlanDisk *copy = g_new0(VmPlanDisk, 1);
    *copy = *d;
    copy->device_id = g_strdup(d->device_id);
    copy->node_prefix = g_strdup(d->node_prefix);
    copy->name = g_strdup(d->name);
    copy->path = g_strdup(d->path);
    copy->attachment = g_strdup(d->attachment);
    /* In QEMU's argv, confirmed by the probe once QMP is up. */
    add_entry(ctl, att, copy, HOT_ATTACHING);
  }
  changed(ctl);
}

/* ---- operations ---- */

typedef struct {
  VmletAttachCtl *ctl;
  char *name;
  guint gen;
} Op;

static Op *op_new(VmletAttachCtl *ctl, const char *name, HotEntry *e)
{
  Op *op = g_new0(Op, 1);
  op->ctl = g_object_ref(ctl);
  op->name = g_strdup(name);
  e->gen = ++ctl->next_gen;
  e->busy = TRUE;
  op->gen = e->gen;
  return op;
}

static void op_free(Op *op)
{
  g_object_unref(op->ctl);
  g_free(op->name);
  g_free(op);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Op, op_free)

/* The entry an operation was started for, or NULL when QEMU went away or the entry was
 * replaced meanwhile (the result then means nothing). */
static HotEntry *op_entry(Op *op, const GError *error)
{
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return NULL;
  HotEntry *e = g_hash_table_lookup(op->ctl->entries, op->name);
  if (!e || e->gen != op->gen)
    return NULL;
  e->busy = FALSE;
  return e;
}

static void remove_entry(VmletAttachCtl *ctl, const char *key)
{
  /* key may be the table's own key, freed by the removal. */
  g_autofree char *name = g_strdup(key);
  g_hash_table_remove(ctl->entries, name);
  if (!find_desired(ctl, name))
    g_hash_table_remove(ctl->first_seen, name);
}

static void start_release(VmletAttachCtl *ctl, const char *name, HotEntry *e);

static void on_attached(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = vmlet_hotplug_attach_finish(res, &error);
  HotEntry *e = op_entry(op, error);
  if (!e)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (ok) {
    e->state = HOT_ATTACHED;
    set_message(e, NULL);
    g_hash_table_remove(ctl->failures, op->name);
  } else {
    /* Rolled back by hotplug.c: nothing of it is left in QEMU. */
    g_hash_table_replace(ctl->failures, g_strdup(op->name),
                         vmbda_problem_new(VMBDA_REASON_HOTPLUG_FAILED,
                                           "QEMU refused the device (rolled back): %s",
                                           error->message));
    remove_entry(ctl, op->name);
  }
  reconcile(ctl);
  changed(ctl);
}

static void start_attach(VmletAttachCtl *ctl, VmletAttachment *att, VmPlanDisk *disk)
{
  /* QEMU opens the file itself, as its own unprivileged user. */
  g_autoptr(GError) error = NULL;
  g_autofree char *what = g_strdup_printf("%s \"%s\"", vm_block_kind_name(disk->kind),
                                          disk->name);
  if (ctl->confine &&
      !vmlet_qemu_access_grant_file(disk->path, !disk->read_only, what, ctl->confine, &error)) {
    g_hash_table_replace(ctl->failures, g_strdup(att->meta.name),
                         vmbda_problem_new(VMBDA_REASON_HOTPLUG_FAILED, "%s", error->message));
    vm_plan_disk_free(disk);
    return;
  }
  HotEntry *e = add_entry(ctl, att, disk, HOT_ATTACHING);
  /* Not persisted: after a crash QEMU says whether it made it (on_probed). */
  vmlet_hotplug_attach_async(ctl->qmp, e->disk, ctl->cancel, on_attached,
                             op_new(ctl, att->meta.name, e));
}

static gboolean on_detach_overdue(gpointer data)
{
  Op *op = data;
  HotEntry *e = g_hash_table_lookup(op->ctl->entries, op->name);
  if (e && e->gen == op->gen && e->state == HOT_DETACHING) {
    e->timer = 0;
    e->timed_out = TRUE;
    explain_detach(op->ctl, e);
    changed(op->ctl);
  }
  return G_SOURCE_REMOVE;
}

static void on_unplugged(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  gboolean gone = FALSE;
  gboolean ok = vmlet_hotplug_unplug_finish(res, &gone, &error);
  HotEntry *e = op_entry(op, error);
  if (!e || e->state != HOT_DETACHING)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (ok && gone) {
    start_release(ctl, op->name, e);
  } else if (!ok) {
    /* Retried by the recheck timer; the guest may still be handling an earlier request. */
    g_autofree char *m = g_strdup_printf("device_del failed, retrying: %s", error->message);
    set_message(e, m);
    e->retry = TRUE;
    reconcile(ctl);
    changed(ctl);
  } else {
    /* Accepted: now the guest must let go. Say so if it takes long; keep waiting. */
    g_clear_handle_id(&e->timer, g_source_remove);
    Op *wait = g_new0(Op, 1);
    wait->ctl = g_object_ref(ctl);
    wait->name = g_strdup(op->name);
    wait->gen = e->gen;
    e->timer = g_timeout_add_seconds_full(G_PRIORITY_DEFAULT, VMLET_DETACH_WAIT_S,
                                          on_detach_overdue, wait, (GDestroyNotify)op_free);
    explain_detach(ctl, e);
    changed(ctl);
  }
}

static void start_detach(VmletAttachCtl *ctl, const char *name, HotEntry *e)
{
  g_clear_handle_id(&e->timer, g_source_remove);
  e->state = HOT_DETACHING;
  e->timed_out = FALSE;
  e->retry = FALSE;
  explain_detach(ctl, e);
  vmlet_hotplug_unplug_async(ctl->qmp, e->disk->device_id, ctl->cancel, on_unplugged,
                             op_new(ctl, name, e));
}

static void on_released(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = vmlet_hotplug_release_finish(res, &error);
  HotEntry *e = op_entry(op, error);
  if (!e)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (!ok) {
    g_autofree char *m = g_strdup_printf("blockdev-del failed, retrying: %s", error->message);
    set_message(e, m);
    e->retry = TRUE;
    reconcile(ctl);
    changed(ctl);
    return;
  }
  remove_entry(ctl, op->name);
  reconcile(ctl);
  changed(ctl);
}

/* Only once the device is gone: blockdev-del of a node in use fails. */
static void start_release(VmletAttachCtl *ctl, const char *name, HotEntry *e)
{
  g_clear_handle_id(&e->timer, g_source_remove);
  e->state = HOT_RELEASING;
  e->retry = FALSE;
  set_message(e, NULL);
  vmlet_hotplug_release_async(ctl->qmp, e->disk, ctl->cancel, on_released, op_new(ctl, name, e));
}

static void on_qmp_event(VmletQmp *qmp, const char *event, JsonObject *data, gint64 ts,
                         VmletAttachCtl *ctl)
{
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    HotEntry *e = v;
    if (e->state == HOT_RELEASING || !vmlet_hotplug_is_deleted(event, data, e->disk->device_id))
      continue;
    /* The guest let go (of a device we asked for, or one it ejected by itself). The
     * device_del reply may still be on its way: the event is what counts. */
    g_autofree char *name = g_strdup(k);
    start_release(ctl, name, e);
    changed(ctl);
    return;
  }
}

/* ---- reconcile ---- */

static gboolean on_recheck(gpointer data)
{
  VmletAttachCtl *ctl = data;
  ctl->recheck = 0;
  ctl->recheck_due = TRUE;
  reconcile(ctl);
  ctl->recheck_due = FALSE;
  if (ctl->dirty)
    changed(ctl);
  return G_SOURCE_REMOVE;
}

static void reconcile(VmletAttachCtl *ctl)
{
  if (!active(ctl))
    return;
  gboolean retry_later = FALSE;
  /* Detach what is no longer wanted (or wanted with another disk: detach, then attach). */
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    HotEntry *e = g_hash_table_lookup(ctl->entries, name);
    if (e->busy)
      continue;
    VmletAttachment *want = find_desired(ctl, name);
    gboolean wanted = want && vmlet_attachment_same_spec(want, e->att);
    if (e->state == HOT_ATTACHED && !wanted) {
      start_detach(ctl, name, e);
      ctl->dirty = TRUE;
    } else if (e->retry && e->state == HOT_DETACHING) {
      if (ctl->recheck_due)
        start_detach(ctl, name, e);
      retry_later = TRUE;
    } else if (e->retry && e->state == HOT_RELEASING) {
      if (ctl->recheck_due)
        start_release(ctl, name, e);
      retry_later = TRUE;
    }
  }
  /* Attach what is wanted and not plugged, in name order. */
  g_autoptr(GPtrArray) others = holders(ctl);
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *att = ctl->desired->pdata[i];
    if (g_hash_table_contains(ctl->entries, att->meta.name))
      continue;
    g_autoptr(VmPlanDisk) disk = ready_disk(ctl, att, others);
    if (!disk) {
      VmbdaProblem *p = g_hash_table_lookup(ctl->waiting, att->meta.name);
      retry_later = retry_later || (p && p->reason == VMBDA_REASON_BLOCK_NOT_READY);
      continue;
    }
    guint64 taken = 0;
    gboolean scsi = disk->bus == VM_DISK_BUS_SCSI;
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, ctl->entries);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
      const VmPlanDisk *d = ((HotEntry *)v)->disk;
      if ((d->bus == VM_DISK_BUS_SCSI) == scsi && d->slot < 64)
        taken |= G_GUINT64_CONSTANT(1) << d->slot;
    }
    gpointer kept = g_hash_table_lookup(ctl->last_slots, att->meta.name);
    guint64 candidates = scsi ? VMLET_SCSI_IDS : ctl->ports;
    gint slot = -1;
    if (kept && GPOINTER_TO_UINT(kept) - 1 < 64 &&
        (candidates & ~taken & (G_GUINT64_CONSTANT(1) << (GPOINTER_TO_UINT(kept) - 1))))
      slot = (gint)GPOINTER_TO_UINT(kept) - 1;
    if (slot < 0)
      slot = vmlet_slot_lowest(candidates, taken);
    if (slot < 0) {
      set_waiting(ctl, att->meta.name,
                  vmbda_problem_new(VMBDA_REASON_CAPACITY_REACHED,
                                    "no free %s in VirtualMachine \"%s\"",
                                    scsi ? "SCSI id on scsi0" : "hotplug port", ctl->vm_name));
      continue;
    }
    disk->slot = (guint)slot;
    start_attach(ctl, att, g_steal_pointer(&disk));
    g_ptr_array_add(others, att);
    ctl->dirty = TRUE;
  }
  if (retry_later && !ctl->recheck)
    ctl->recheck = g_timeout_add(VMLET_ATTACH_RECHECK_MS, on_recheck, ctl);
}

/* ---- taking over a QEMU ---- */

static void on_located(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(Op) op = data;
  g_autoptr(GError) error = NULL;
  guint slot = 0;
  gboolean ok = vmlet_hotplug_locate_finish(res, &slot, &error);
  HotEntry *e = op_entry(op, error);
  if (!e)
    return;
  VmletAttachCtl *ctl = op->ctl;
  if (ok) {
    e->disk->slot = slot;
    if (e->disk->bus == VM_DISK_BUS_VIRTIO && slot < 64)
      ctl->ports |= G_GUINT64_CONSTANT(1) << slot;
    e->state = HOT_ATTACHED;
  } else {
    /* Plugged by us, but not where vmlet would put it: take it out again. */
    start_detach(ctl, op->name, e);
  }
  reconcile(ctl);
  changed(ctl);
}

static void on_probed(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletAttachCtl) ctl = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletHotplugProbe) probe = vmlet_hotplug_probe_finish(res, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !ctl->qmp)
    return;
  if (!probe) {
    /* QEMU is going away, or answers in a way vmlet does not understand: act on nothing. */
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, ctl->entries);
    while (g_hash_table_iter_next(&it, NULL, &v))
      set_message(v, error->message);
    changed(ctl);
    return;
  }
  ctl->ports = probe->free_ports;
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    HotEntry *e = g_hash_table_lookup(ctl->entries, name);
    const VmPlanDisk *d = e->disk;
    g_autofree char *fmt = qdev_node_name(d, "fmt"), *file = qdev_node_name(d, "file");
    if (g_hash_table_contains(probe->devices, d->device_id)) {
      if (d->bus == VM_DISK_BUS_VIRTIO && d->slot < 64)
        ctl->ports |= G_GUINT64_CONSTANT(1) << d->slot;
      switch (e->state) {
      case HOT_ATTACHING:
      case HOT_ATTACHED:
        e->state = HOT_ATTACHED;
        break;
      case HOT_DETACHING:
      case HOT_RELEASING:
        /* Ask again: a device_del sent by the previous vmletd may be lost. */
        start_detach(ctl, name, e);
        break;
      }
    } else if (g_hash_table_contains(probe->nodes, fmt) ||
               g_hash_table_contains(probe->nodes, file)) {
      start_release(ctl, name, e); /* the device is gone, its nodes are not */
    } else {
      remove_entry(ctl, name);
    }
  }
  /* A device QEMU has for a wanted attachment that the record lacks (vmletd died between
   * device_add and saving the record): adopt it rather than plug it twice. Nodes of an
   * attachment without a device (died between blockdev-add and device_add): remove them
   * first, or blockdev-add would fail on the duplicate node names. */
  for (guint i = 0; i < ctl->desired->len; i++) {
    VmletAttachment *att = ctl->desired->pdata[i];
    if (g_hash_table_contains(ctl->entries, att->meta.name))
      continue;
    VmletBlockObject *obj = vmlet_inventory_block(*ctl->inv, att->kind, att->meta.namespace,
                                                  att->block_name);
    if (!obj)
      continue;
    VmPlanDisk *disk = vm_plan_attachment_disk(ctl->node, obj, att->meta.name);
    g_autofree char *fmt = qdev_node_name(disk, "fmt"), *file = qdev_node_name(disk, "file");
    gboolean in_refs = FALSE;
    for (guint j = 0; ctl->spec && j < ctl->spec->block_devices->len; j++) {
      const VmBlockDeviceRef *ref = ctl->spec->block_devices->pdata[j];
      in_refs = in_refs || (ref->kind == att->kind && g_str_equal(ref->name, att->block_name));
    }
    if (!in_refs && g_hash_table_contains(probe->devices, disk->device_id)) {
      HotEntry *e = add_entry(ctl, att, disk, HOT_ATTACHING);
      vmlet_hotplug_locate_async(ctl->qmp, e->disk, ctl->cancel, on_located,
                                 op_new(ctl, att->meta.name, e));
    } else if (!in_refs && (g_hash_table_contains(probe->nodes, fmt) ||
                            g_hash_table_contains(probe->nodes, file))) {
      HotEntry *e = add_entry(ctl, att, disk, HOT_RELEASING);
      e->cleanup = TRUE;
      start_release(ctl, att->meta.name, e);
    } else {
      vm_plan_disk_free(disk);
    }
  }
  ctl->probed = TRUE;
  reconcile(ctl);
  changed(ctl);
}

void vmlet_attach_ctl_activate(VmletAttachCtl *ctl, VmletQmp *qmp)
{
  if (ctl->qmp == qmp)
    return;
  if (ctl->qmp) {
    g_cancellable_cancel(ctl->cancel);
    g_clear_object(&ctl->cancel);
    g_clear_signal_handler(&ctl->event_id, ctl->qmp);
    g_clear_object(&ctl->qmp);
  }
  ctl->qmp = g_object_ref(qmp);
  ctl->cancel = g_cancellable_new();
  ctl->probed = FALSE;
  ctl->event_id = g_signal_connect(qmp, "event", G_CALLBACK(on_qmp_event), ctl);
  vmlet_hotplug_probe_async(qmp, ctl->cancel, on_probed, g_object_ref(ctl));
}

void vmlet_attach_ctl_deactivate(VmletAttachCtl *ctl)
{
  if (ctl->cancel) {
    g_cancellable_cancel(ctl->cancel);
    g_clear_object(&ctl->cancel);
  }
  if (ctl->qmp) {
    g_clear_signal_handler(&ctl->event_id, ctl->qmp);
    g_clear_object(&ctl->qmp);
  }
  ctl->probed = FALSE;
  ctl->ports = 0;
  g_clear_handle_id(&ctl->recheck, g_source_remove);
  if (g_hash_table_size(ctl->entries) == 0)
    return;
  /* Every device went with QEMU. Attachments whose object is gone are now gone too. */
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  for (GList *l = names; l; l = l->next)
    remove_entry(ctl, l->data);
  changed(ctl);
}

/* ---- the record ---- */

static const char *const bus_names[] = {"virtio", "sata", "scsi"};

JsonNode *vmlet_attach_ctl_record(VmletAttachCtl *ctl)
{
  JsonArray *arr = json_array_new();
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  names = g_list_sort(names, (GCompareFunc)strcmp);
  for (GList *l = names; l; l = l->next) {
    HotEntry *e = g_hash_table_lookup(ctl->entries, l->data);
    /* An unconfirmed attach is not recorded: after a crash, QEMU itself says whether the
     * device made it (vmlet_attach_ctl_activate). */
    if (e->state == HOT_ATTACHING)
      continue;
    const VmPlanDisk *d = e->disk;
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "attachment", e->att->meta.name);
    json_object_set_string_member(o, "kind", vm_block_kind_name(d->kind));
    json_object_set_string_member(o, "name", d->name);
    json_object_set_string_member(o, "state", hot_state_names[e->state]);
    json_object_set_string_member(o, "deviceId", d->device_id);
    json_object_set_string_member(o, "nodePrefix", d->node_prefix);
    json_object_set_string_member(o, "path", d->path);
    json_object_set_string_member(o, "format", vmlet_image_format_name(d->format));
    json_object_set_boolean_member(o, "readOnly", d->read_only);
    json_object_set_boolean_member(o, "cdrom", d->cdrom);
    json_object_set_boolean_member(o, "hostDevice", d->host_device);
    json_object_set_string_member(o, "bus", bus_names[d->bus]);
    json_object_set_int_member(o, "slot", d->slot);
    json_object_set_int_member(o, "createdUs", e->created_us);
    json_array_add_object_element(arr, o);
  }
  JsonNode *node = json_node_new(JSON_NODE_ARRAY);
  json_node_take_array(node, arr);
  return node;
}

gboolean vmlet_attach_ctl_load(VmletAttachCtl *ctl, JsonNode *record, GError **error)
{
  if (!record)
    return TRUE;
  g_autoptr(VmletDiag) d = vmlet_diag_new("hotplugged");
  JsonArray *arr = JSON_NODE_HOLDS_ARRAY(record) ? json_node_get_array(record) : NULL;
  if (!arr) {
    vmlet_diag_error(d, NULL, "expected an array");
    return vmlet_diag_check(d, error);
  }
  static const char *const kinds[] = {"VirtualDisk", "VirtualImage", "ClusterVirtualImage",
                                      NULL};
  static const char *const formats[] = {"qcow2", "raw", "iso", NULL};
  static const char *const buses[] = {"virtio", "sata", "scsi", NULL};
  for (guint i = 0; i < json_array_get_length(arr) && i < VM_MAX_BLOCK_DEVICES; i++) {
    g_autofree char *p = g_strdup_printf("hotplugged[%u]", i);
    JsonObject *o = jv_element_object(d, arr, i, p, "an object");
    if (!o)
      continue;
    const char *att = NULL, *name = NULL, *state = NULL, *dev = NULL, *prefix = NULL,
               *path = NULL;
    guint kind = 0, format = 0, bus = 0;
    gint64 slot = 0, created = 0;
    gboolean ro = FALSE, cdrom = FALSE, host = FALSE;
    guint before = d->errors->len;
    vmlet_get_name(d, o, p, "attachment", JV_REQUIRED, &att);
    jv_get_enum(d, o, p, "kind", JV_REQUIRED, kinds, &kind);
    vmlet_get_name(d, o, p, "name", JV_REQUIRED, &name);
    jv_get_string(d, o, p, "state", JV_REQUIRED, 16, &state);
    jv_get_string(d, o, p, "deviceId", JV_REQUIRED, 128, &dev);
    jv_get_string(d, o, p, "nodePrefix", JV_REQUIRED, 26, &prefix);
    jv_get_string(d, o, p, "path", JV_REQUIRED, 4096, &path);
    jv_get_enum(d, o, p, "format", JV_REQUIRED, formats, &format);
    jv_get_bool(d, o, p, "readOnly", JV_REQUIRED, &ro);
    jv_get_bool(d, o, p, "cdrom", JV_REQUIRED, &cdrom);
    jv_get_bool(d, o, p, "hostDevice", JV_OPTIONAL, &host);
    jv_get_enum(d, o, p, "bus", JV_REQUIRED, buses, &bus);
    jv_get_int(d, o, p, "slot", JV_REQUIRED, 0, 63, &slot);
    jv_get_int(d, o, p, "createdUs", JV_OPTIONAL, 0, G_MAXINT64, &created);
    HotState st = HOT_ATTACHED;
    for (guint s = 0; state && s < G_N_ELEMENTS(hot_state_names); s++)
      if (g_str_equal(state, hot_state_names[s]))
        st = (HotState)s;
    if (d->errors->len != before)
      continue;
    VmPlanDisk *disk = g_new0(VmPlanDisk, 1);
    disk->kind = (VmBlockKind)kind;
    disk->name = g_strdup(name);
    disk->device_id = g_strdup(dev);
    disk->node_prefix = g_strdup(prefix);
    disk->path = g_strdup(path);
    disk->format = (VmletImageFormat)format;
    disk->read_only = ro;
    disk->cdrom = cdrom;
    disk->host_device = host;
    disk->bus = (VmDiskBus)bus;
    disk->slot = (guint)slot;
    disk->attachment = g_strdup(att);
    /* The drop-in may be gone (detached while vmletd was away): keep what the record says. */
    VmletAttachment *want = find_desired(ctl, att);
    g_autoptr(VmletAttachment) stand_in =
        vmlet_attachment_new(ctl->namespace, att, ctl->vm_name, disk->kind, name);
    HotEntry *e = add_entry(ctl, want && want->kind == disk->kind &&
                                         g_str_equal(want->block_name, name)
                                     ? want
                                     : stand_in,
                            disk, st);
    if (created)
      e->created_us = created;
  }
  return vmlet_diag_check(d, error);
}

/* ---- status ---- */

static gint64 created_for(VmletAttachCtl *ctl, const char *name)
{
  HotEntry *e = g_hash_table_lookup(ctl->entries, name);
  if (e)
    return e->created_us;
  gint64 *seen = g_hash_table_lookup(ctl->first_seen, name);
  return seen ? *seen : 0;
}

gboolean vmlet_attach_ctl_status(VmletAttachCtl *ctl, const char *name, VmbdaStatus *out)
{
  VmletAttachment *want = find_desired(ctl, name);
  HotEntry *e = g_hash_table_lookup(ctl->entries, name);
  if (!want && !e)
    return FALSE;
  *out = (VmbdaStatus){.created_us = created_for(ctl, name)};
  if (e && e->cleanup) {
    out->phase = VMBDA_PHASE_IN_PROGRESS;
    out->reason = VMBDA_REASON_REQUEST_SENT;
    out->message = e->message ? e->message
                              : "removing block nodes an interrupted attach left in QEMU";
    return TRUE;
  }
  if (e && (!want || !vmlet_attachment_same_spec(want, e->att) || e->state == HOT_DETACHING ||
            e->state == HOT_RELEASING)) {
    /* On its way out (possibly to come back with another disk). */
    out->phase = VMBDA_PHASE_TERMINATING;
    out->reason = VMBDA_REASON_DETACH_PENDING;
    out->message = e->message;
    out->target = e->disk->device_id;
    return TRUE;
  }
  if (e) {
    switch (e->state) {
    case HOT_ATTACHING:
      out->phase = VMBDA_PHASE_IN_PROGRESS;
      out->reason = VMBDA_REASON_REQUEST_SENT;
      out->message = e->message;
      break;
    case HOT_ATTACHED:
      out->phase = VMBDA_PHASE_ATTACHED;
      out->target = e->disk->device_id;
      break;
    case HOT_DETACHING:
    case HOT_RELEASING:
      break;
    }
    return TRUE;
  }
  const VmbdaProblem *p = g_hash_table_lookup(ctl->conflicts, name);
  if (!p)
    p = g_hash_table_lookup(ctl->failures, name);
  if (!p && ctl->not_running) {
    out->phase = VMBDA_PHASE_PENDING;
    out->reason = VMBDA_REASON_VM_NOT_READY;
    out->message = ctl->not_running;
    return TRUE;
  }
  if (!p)
    p = g_hash_table_lookup(ctl->waiting, name);
  if (p) {
    out->phase = vmbda_problem_phase(p);
    out->reason = p->reason;
    out->message = p->message;
    return TRUE;
  }
  /* Wanted, nothing against it: about to be plugged once QMP is read. */
  out->phase = VMBDA_PHASE_PENDING;
  out->reason = VMBDA_REASON_VM_NOT_READY;
  out->message = "waiting for vmletd to read the VM's devices over QMP";
  return TRUE;
}

GPtrArray *vmlet_attach_ctl_terminating(VmletAttachCtl *ctl)
{
  GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_attachment_unref);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (g_hash_table_iter_next(&it, &k, &v))
    if (!find_desired(ctl, k))
      g_ptr_array_add(out, vmlet_attachment_ref(((HotEntry *)v)->att));
  return out;
}

gboolean vmlet_attach_ctl_holds(VmletAttachCtl *ctl, const char *name)
{
  return g_hash_table_contains(ctl->entries, name);
}

void vmlet_attach_ctl_block_refs(VmletAttachCtl *ctl, JsonArray *into)
{
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  names = g_list_sort(names, (GCompareFunc)strcmp);
  for (GList *l = names; l; l = l->next) {
    HotEntry *e = g_hash_table_lookup(ctl->entries, l->data);
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "kind", vm_block_kind_name(e->disk->kind));
    json_object_set_string_member(o, "name", e->disk->name);
    json_object_set_string_member(o, "target", e->disk->device_id);
    json_object_set_boolean_member(o, "attached",
                                   e->state == HOT_ATTACHED || e->state == HOT_DETACHING);
    json_object_set_boolean_member(o, "hotplugged", TRUE);
    json_object_set_string_member(o, "virtualMachineBlockDeviceAttachmentName",
                                  e->att->meta.name);
    json_array_add_object_element(into, o);
  }
}
