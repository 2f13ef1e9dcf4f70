#include "cordon.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "fileio.h"
#include "jsonval.h"
#include "meta.h"
#include "vmlet-error.h"

static const char *const state_names[] = {
    [CORDON_VM_PENDING] = "Pending",
    [CORDON_VM_EVICTING] = "Evicting",
    [CORDON_VM_MOVED] = "Moved",
    [CORDON_VM_UNPLACEABLE] = "Unplaceable",
    [CORDON_VM_STOPPING] = "Stopping",
    [CORDON_VM_STOPPED] = "Stopped",
};
#define N_STATES (CORDON_VM_STOPPED + 1)
#define TO(s) (1u << (s))

/* The table of cordon.h's diagram. */
static const guint moves[N_STATES] = {
    [CORDON_VM_PENDING] = TO(CORDON_VM_EVICTING) | TO(CORDON_VM_UNPLACEABLE) |
                          TO(CORDON_VM_STOPPING) | TO(CORDON_VM_MOVED) | TO(CORDON_VM_STOPPED),
    [CORDON_VM_EVICTING] = TO(CORDON_VM_MOVED) | TO(CORDON_VM_PENDING) | TO(CORDON_VM_UNPLACEABLE),
    [CORDON_VM_MOVED] = 0,
    [CORDON_VM_UNPLACEABLE] = TO(CORDON_VM_STOPPING) | TO(CORDON_VM_PENDING) | TO(CORDON_VM_MOVED),
    [CORDON_VM_STOPPING] = TO(CORDON_VM_STOPPED) | TO(CORDON_VM_MOVED),
    [CORDON_VM_STOPPED] = 0,
};

const char *vmlet_cordon_vm_state_name(CordonVmState state)
{
  return state_names[state];
}

gboolean vmlet_cordon_vm_state_from_name(const char *name, CordonVmState *out)
{
  for (guint i = 0; name && i < N_STATES; i++)
    if (g_str_equal(name, state_names[i])) {
      *out = (CordonVmState)i;
      return TRUE;
    }
  return FALSE;
}

gboolean vmlet_cordon_vm_state_is_final(CordonVmState state)
{
  switch (state) {
  case CORDON_VM_MOVED:
  case CORDON_VM_UNPLACEABLE:
  case CORDON_VM_STOPPED:
    return TRUE;
  case CORDON_VM_PENDING:
  case CORDON_VM_EVICTING:
  case CORDON_VM_STOPPING:
    return FALSE;
  }
  return FALSE;
}

gboolean vmlet_cordon_vm_can_move(CordonVmState from, CordonVmState to)
{
  return from == to || (moves[from] & TO(to)) != 0;
}

gboolean vmlet_cordon_vm_move(CordonVm *v, CordonVmState to, GError **error)
{
  if (!vmlet_cordon_vm_can_move(v->state, to)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s/%s: a drain does not go from %s to %s",
                v->namespace, v->name, state_names[v->state], state_names[to]);
    return FALSE;
  }
  v->state = to;
  return TRUE;
}

static void cordon_vm_free(gpointer p)
{
  CordonVm *v = p;
  g_free(v->namespace);
  g_free(v->name);
  g_free(v->operation);
  g_free(v->op_uid);
  g_free(v->target);
  g_free(v->reason);
  g_free(v);
}

VmletCordon *vmlet_cordon_new(gint64 since_us)
{
  VmletCordon *c = g_new0(VmletCordon, 1);
  c->since_us = since_us;
  c->vms = g_ptr_array_new_with_free_func(cordon_vm_free);
  return c;
}

void vmlet_cordon_free(VmletCordon *c)
{
  if (!c)
    return;
  g_ptr_array_unref(c->vms);
  g_free(c);
}

CordonVm *vmlet_cordon_find(VmletCordon *c, const char *ns, const char *name)
{
  for (guint i = 0; i < c->vms->len; i++) {
    CordonVm *v = c->vms->pdata[i];
    if (g_str_equal(v->namespace, ns) && g_str_equal(v->name, name))
      return v;
  }
  return NULL;
}

CordonVm *vmlet_cordon_add(VmletCordon *c, const char *ns, const char *name)
{
  CordonVm *v = vmlet_cordon_find(c, ns, name);
  if (v)
    return v;
  v = g_new0(CordonVm, 1);
  v->namespace = g_strdup(ns);
  v->name = g_strdup(name);
  v->state = CORDON_VM_PENDING;
  g_ptr_array_add(c->vms, v);
  return v;
}

guint vmlet_cordon_count(const VmletCordon *c, CordonVmState state)
{
  guint n = 0;
  for (guint i = 0; i < c->vms->len; i++)
    n += ((CordonVm *)c->vms->pdata[i])->state == state;
  return n;
}

guint vmlet_cordon_left(const VmletCordon *c)
{
  guint n = 0;
  for (guint i = 0; i < c->vms->len; i++)
    n += !vmlet_cordon_vm_state_is_final(((CordonVm *)c->vms->pdata[i])->state);
  return n;
}

char *vmlet_cordon_plural_vms(guint n)
{
  return g_strdup_printf("%u VM%s", n, n == 1 ? "" : "s");
}

/* The texts come from vm-migrate*.c and migrations.c; test-cordon.c holds each. */
CordonVerdict vmlet_cordon_classify(const char *reason)
{
  static const char *const busy[] = {
      "inbound migration limit", "incoming migration", "outgoing migration",
      "OtherMigrationInProgress", "the VM is busy", "the VM is migrating",
      "the VM is Starting", "the VM is Stopping",
  };
  static const char *const unplaceable[] = {
      "TargetUnschedulable", "hot-plugged devices", "is a block device",
      "migration is not enabled", "no migration peers", "liveMigrationPolicy",
      "the VM is Pending", "the VM is Stopped",
  };
  if (!reason)
    return CORDON_RETRY;
  for (gsize i = 0; i < G_N_ELEMENTS(busy); i++)
    if (strstr(reason, busy[i]))
      return CORDON_RETRY_BUSY;
  for (gsize i = 0; i < G_N_ELEMENTS(unplaceable); i++)
    if (strstr(reason, unplaceable[i]))
      return CORDON_UNPLACEABLE;
  return CORDON_RETRY;
}

/* ---- the file ---- */

char *vmlet_cordon_path(const char *state_dir)
{
  return g_build_filename(state_dir, "cordon.json", NULL);
}

static void add_opt_string(JsonBuilder *b, const char *member, const char *value)
{
  if (!value)
    return;
  json_builder_set_member_name(b, member);
  json_builder_add_string_value(b, value);
}

gboolean vmlet_cordon_save(const VmletCordon *c, const char *state_dir, GError **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "sinceUs");
  json_builder_add_int_value(b, c->since_us);
  json_builder_set_member_name(b, "draining");
  json_builder_add_boolean_value(b, c->draining);
  json_builder_set_member_name(b, "force");
  json_builder_add_boolean_value(b, c->force);
  json_builder_set_member_name(b, "drainStartedUs");
  json_builder_add_int_value(b, c->drain_started_us);
  json_builder_set_member_name(b, "drainEndedUs");
  json_builder_add_int_value(b, c->drain_ended_us);
  json_builder_set_member_name(b, "vms");
  json_builder_begin_array(b);
  for (guint i = 0; i < c->vms->len; i++) {
    const CordonVm *v = c->vms->pdata[i];
    json_builder_begin_object(b);
    add_opt_string(b, "namespace", v->namespace);
    add_opt_string(b, "name", v->name);
    add_opt_string(b, "state", state_names[v->state]);
    add_opt_string(b, "operation", v->operation);
    add_opt_string(b, "target", v->target);
    add_opt_string(b, "reason", v->reason);
    json_builder_set_member_name(b, "attempts");
    json_builder_add_int_value(b, v->attempts);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = json_to_string(root, TRUE);
  g_autofree char *path = vmlet_cordon_path(state_dir);
  /* A node cordoned before it ever ran a VM may have no state directory yet; made as the
   * VM records' directory below it is (vmrecord.c). */
  if (g_mkdir_with_parents(state_dir, 0700) < 0) {
    int e = errno;
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", state_dir, g_strerror(e));
    return FALSE;
  }
  return vmlet_write_file_atomic(path, text, strlen(text), 0600, error);
}

static void load_vm(VmletDiag *d, VmletCordon *c, JsonObject *o, const char *at)
{
  const char *ns = NULL, *name = NULL, *state = NULL, *op = NULL, *target = NULL,
             *reason = NULL;
  gint64 attempts = 0;
  CordonVmState st = CORDON_VM_PENDING;
  gboolean ok = vmlet_get_name(d, o, at, "namespace", JV_REQUIRED, &ns);
  ok = vmlet_get_name(d, o, at, "name", JV_REQUIRED, &name) && ok;
  if (jv_get_string(d, o, at, "state", JV_REQUIRED, 32, &state) &&
      !vmlet_cordon_vm_state_from_name(state, &st)) {
    g_autofree char *p = jv_path(at, "state");
    vmlet_diag_error(d, p, "expected Pending, Evicting, Moved, Unplaceable, Stopping or "
                     "Stopped, found \"%s\"", state);
    ok = FALSE;
  }
  jv_get_string(d, o, at, "operation", JV_OPTIONAL, 253, &op);
  jv_get_string(d, o, at, "target", JV_OPTIONAL, 253, &target);
  jv_get_string(d, o, at, "reason", JV_OPTIONAL, 4096, &reason);
  jv_get_int(d, o, at, "attempts", JV_OPTIONAL, 0, 1000, &attempts);
  if (!ok)
    return;
  if (vmlet_cordon_find(c, ns, name)) {
    vmlet_diag_error(d, at, "VM %s/%s is listed twice", ns, name);
    return;
  }
  CordonVm *v = vmlet_cordon_add(c, ns, name);
  v->state = st;
  v->operation = g_strdup(op);
  v->target = g_strdup(target);
  v->reason = g_strdup(reason);
  v->attempts = (guint)attempts;
}

gboolean vmlet_cordon_load(const char *state_dir, VmletCordon **out, GError **error)
{
  g_autofree char *path = vmlet_cordon_path(state_dir);
  g_autofree char *data = NULL;
  gsize len = 0;
  GError *local = NULL;
  if (!vmlet_read_file_bounded(path, VMLET_CORDON_MAX_BYTES, &data, &len, &local)) {
    if (g_error_matches(local, VMLET_ERROR, VMLET_ERROR_NOT_FOUND)) {
      g_error_free(local);
      *out = NULL;
      return TRUE;
    }
    g_propagate_error(error, local);
    return FALSE;
  }
  g_autoptr(JsonNode) root = vmlet_json_parse(path, data, (gssize)len, error);
  if (!root)
    return FALSE;
  JsonObject *o = json_node_get_object(root);
  g_autoptr(VmletDiag) d = vmlet_diag_new(path);
  gint64 since = 0, started = 0, ended = 0;
  gboolean draining = FALSE, force = FALSE;
  JsonArray *vms = NULL;
  jv_get_int(d, o, "", "sinceUs", JV_REQUIRED, 0, G_MAXINT64, &since);
  jv_get_bool(d, o, "", "draining", JV_OPTIONAL, &draining);
  jv_get_bool(d, o, "", "force", JV_OPTIONAL, &force);
  jv_get_int(d, o, "", "drainStartedUs", JV_OPTIONAL, 0, G_MAXINT64, &started);
  jv_get_int(d, o, "", "drainEndedUs", JV_OPTIONAL, 0, G_MAXINT64, &ended);
  jv_get_array(d, o, "", "vms", JV_OPTIONAL, VMLET_CORDON_MAX_VMS, &vms);
  g_autoptr(VmletCordon) c = vmlet_cordon_new(since);
  c->draining = draining;
  c->force = force;
  c->drain_started_us = started;
  c->drain_ended_us = ended;
  for (guint i = 0; vms && i < json_array_get_length(vms); i++) {
    g_autofree char *at = g_strdup_printf("vms[%u]", i);
    JsonObject *e = jv_element_object(d, vms, i, at, "an object");
    if (e)
      load_vm(d, c, e, at);
  }
  if (!vmlet_diag_check(d, error))
    return FALSE;
  *out = g_steal_pointer(&c);
  return TRUE;
}

gboolean vmlet_cordon_remove(const char *state_dir, GError **error)
{
  g_autofree char *path = vmlet_cordon_path(state_dir);
  if (g_unlink(path) < 0 && errno != ENOENT) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path,
                g_strerror(e));
    return FALSE;
  }
  /* The removal must survive a crash too, or a reboot would find the node cordoned. */
  return vmlet_sync_fs(state_dir, error);
}
