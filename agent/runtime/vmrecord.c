#include "vmrecord.h"

#include "strutil.h"

#include <errno.h>

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "diag.h"
#include "fileio.h"
#include "jsonval.h"
#include "meta.h"
#include "vmlet-error.h"
#include "vmspec.h"

#define RECORD_MAX_BYTES (256 * 1024)
#define MAX_TRANSITIONS 32

VmletVmRecord *vmlet_vm_record_new(const char *namespace, const char *name)
{
  VmletVmRecord *r = g_new0(VmletVmRecord, 1);
  r->namespace = g_strdup(namespace);
  r->name = g_strdup(name);
  r->phase = g_strdup("Pending");
  /* json_node_init_array takes a reference of its own: the new array's is dropped. */
  g_autoptr(JsonArray) transitions = json_array_new();
  r->transitions = json_node_init_array(json_node_alloc(), transitions);
  r->created_us = g_get_real_time();
  return r;
}

void vmlet_vm_record_free(VmletVmRecord *r)
{
  if (!r)
    return;
  g_free(r->namespace);
  g_free(r->name);
  g_free(r->phase);
  g_free(r->qmp_socket);
  g_free(r->runtime_dir);
  g_free(r->provisioning_digest);
  g_free(r->cgroup);
  g_free(r->job);
  g_free(r->job_intent);
  g_free(r->machine_alias);
  g_free(r->machine);
  if (r->started_spec)
    json_node_unref(r->started_spec);
  if (r->transitions)
    json_node_unref(r->transitions);
  if (r->hotplugged)
    json_node_unref(r->hotplugged);
  g_free(r);
}

char *vmlet_vm_record_path(const char *state_dir, const char *namespace, const char *name)
{
  g_autofree char *file = g_strdup_printf("%s.%s.json", namespace, name);
  return g_build_filename(state_dir, "vms", file, NULL);
}

void vmlet_vm_record_transition(VmletVmRecord *r, const char *phase, gint64 wall_us)
{
  JsonArray *arr = json_node_get_array(r->transitions);
  while (json_array_get_length(arr) >= MAX_TRANSITIONS)
    json_array_remove_element(arr, 0);
  g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(wall_us / G_USEC_PER_SEC);
  g_autofree char *ts = g_date_time_format_iso8601(dt);
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "phase", phase);
  json_object_set_string_member(o, "timestamp", ts);
  json_array_add_object_element(arr, o);
  g_free(r->phase);
  r->phase = g_strdup(phase);
}

gboolean vmlet_vm_record_save(const VmletVmRecord *r, const char *state_dir, gboolean sync,
                              GError **error)
{
  g_autofree char *dir = g_build_filename(state_dir, "vms", NULL);
  if (g_mkdir_with_parents(dir, 0700) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  g_autoptr(JsonBuilder) b = json_builder_new_immutable();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "version");
  json_builder_add_int_value(b, VMLET_VM_RECORD_VERSION);
  json_builder_set_member_name(b, "namespace");
  json_builder_add_string_value(b, r->namespace);
  json_builder_set_member_name(b, "name");
  json_builder_add_string_value(b, r->name);
  json_builder_set_member_name(b, "phase");
  json_builder_add_string_value(b, r->phase);
  json_builder_set_member_name(b, "pid");
  json_builder_add_int_value(b, r->proc.pid);
  json_builder_set_member_name(b, "startTime");
  json_builder_add_int_value(b, (gint64)r->proc.start_time);
  if (r->qmp_socket) {
    json_builder_set_member_name(b, "qmpSocket");
    json_builder_add_string_value(b, r->qmp_socket);
  }
  if (r->runtime_dir) {
    json_builder_set_member_name(b, "runtimeDir");
    json_builder_add_string_value(b, r->runtime_dir);
  }
  if (r->started_spec) {
    json_builder_set_member_name(b, "startedSpec");
    json_builder_add_value(b, json_node_copy(r->started_spec));
  }
  if (r->cgroup) {
    json_builder_set_member_name(b, "cgroup");
    json_builder_add_string_value(b, r->cgroup);
  }
  if (r->provisioning_digest) {
    json_builder_set_member_name(b, "provisioningDigest");
    json_builder_add_string_value(b, r->provisioning_digest);
  }
  if (r->hotplugged) {
    json_builder_set_member_name(b, "hotplugged");
    json_builder_add_value(b, json_node_copy(r->hotplugged));
  }
  if (r->job) {
    json_builder_set_member_name(b, "job");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "kind");
    json_builder_add_string_value(b, r->job);
    if (r->job_intent) {
      json_builder_set_member_name(b, "intent");
      json_builder_add_string_value(b, r->job_intent);
    }
    json_builder_set_member_name(b, "force");
    json_builder_add_boolean_value(b, r->job_force);
    json_builder_end_object(b);
  }
  if (r->machine) {
    json_builder_set_member_name(b, "machine");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "alias");
    json_builder_add_string_value(b, r->machine_alias ? r->machine_alias : "");
    json_builder_set_member_name(b, "resolved");
    json_builder_add_string_value(b, r->machine);
    json_builder_end_object(b);
  }
  json_builder_set_member_name(b, "generation");
  json_builder_add_int_value(b, (gint64)r->generation);
  json_builder_set_member_name(b, "stoppedManually");
  json_builder_add_boolean_value(b, r->stopped_manually);
  json_builder_set_member_name(b, "restarts");
  json_builder_add_int_value(b, r->restarts);
  json_builder_set_member_name(b, "phasesTransitions");
  json_builder_add_value(b, json_node_copy(r->transitions));
  json_builder_set_member_name(b, "createdUs");
  json_builder_add_int_value(b, r->created_us);
  json_builder_set_member_name(b, "launchUs");
  json_builder_add_int_value(b, r->launch_us);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = json_to_string(root, TRUE);
  g_autofree char *path = vmlet_vm_record_path(state_dir, r->namespace, r->name);
  return sync ? vmlet_write_file_atomic(path, text, strlen(text), 0600, error)
              : vmlet_write_file_atomic_nosync(path, text, strlen(text), 0600, error);
}

VmletVmRecord *vmlet_vm_record_load(const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, RECORD_MAX_BYTES, &data, &len, error))
    return NULL;
  g_autoptr(JsonNode) root = vmlet_json_parse(path, data, (gssize)len, error);
  if (!root)
    return NULL;
  JsonObject *o = json_node_get_object(root);
  g_autoptr(VmletDiag) d = vmlet_diag_new(path);
  const char *ns = NULL, *name = NULL, *phase = NULL, *qmp = NULL, *rdir = NULL, *digest = NULL,
             *cgroup = NULL;
  gint64 pid = 0, start = 0, restarts = 0, created = 0, launch = 0, generation = 0;
  gboolean manual = FALSE;
  gint64 version = 1;
  jv_get_int(d, o, "", "version", JV_OPTIONAL, 1, G_MAXINT32, &version);
  if (version > VMLET_VM_RECORD_VERSION) {
    vmlet_diag_error(d, "version", "expected at most %d, found %" G_GINT64_FORMAT
                     " (written by a newer vmletd)", VMLET_VM_RECORD_VERSION, version);
    vmlet_diag_check(d, error);
    return NULL;
  }
  vmlet_get_name(d, o, "", "namespace", JV_REQUIRED, &ns);
  vmlet_get_name(d, o, "", "name", JV_REQUIRED, &name);
  jv_get_string(d, o, "", "phase", JV_REQUIRED, 32, &phase);
  jv_get_int(d, o, "", "pid", JV_REQUIRED, 0, G_MAXINT32, &pid);
  jv_get_int(d, o, "", "startTime", JV_REQUIRED, 0, G_MAXINT64, &start);
  jv_get_string(d, o, "", "qmpSocket", JV_OPTIONAL, 4096, &qmp);
  jv_get_string(d, o, "", "runtimeDir", JV_OPTIONAL, 4096, &rdir);
  jv_get_string(d, o, "", "provisioningDigest", JV_OPTIONAL, 64, &digest);
  jv_get_string(d, o, "", "cgroup", JV_OPTIONAL, 8192, &cgroup);
  jv_get_bool(d, o, "", "stoppedManually", JV_OPTIONAL, &manual);
  jv_get_int(d, o, "", "restarts", JV_OPTIONAL, 0, G_MAXINT32, &restarts);
  jv_get_int(d, o, "", "createdUs", JV_OPTIONAL, 0, G_MAXINT64, &created);
  jv_get_int(d, o, "", "launchUs", JV_OPTIONAL, 0, G_MAXINT64, &launch);
  jv_get_int(d, o, "", "generation", JV_OPTIONAL, 0, G_MAXINT64, &generation);
  JsonObject *spec = NULL, *job = NULL, *machine = NULL;
  jv_get_object(d, o, "", "startedSpec", JV_OPTIONAL, &spec);
  const char *job_kind = NULL, *job_intent = NULL, *alias = NULL, *resolved = NULL;
  gboolean job_force = FALSE;
  if (jv_get_object(d, o, "", "job", JV_OPTIONAL, &job)) {
    jv_get_string(d, job, "job", "kind", JV_REQUIRED, 32, &job_kind);
    jv_get_string(d, job, "job", "intent", JV_OPTIONAL, 32, &job_intent);
    jv_get_bool(d, job, "job", "force", JV_OPTIONAL, &job_force);
  }
  if (jv_get_object(d, o, "", "machine", JV_OPTIONAL, &machine)) {
    jv_get_string(d, machine, "machine", "alias", JV_REQUIRED, 64, &alias);
    jv_get_string(d, machine, "machine", "resolved", JV_REQUIRED, 64, &resolved);
  }
  JsonArray *tr = NULL, *hot = NULL;
  jv_get_array(d, o, "", "phasesTransitions", JV_OPTIONAL, MAX_TRANSITIONS, &tr);
  /* Its entries are checked by attachctl.c, which reads them. */
  jv_get_array(d, o, "", "hotplugged", JV_OPTIONAL, VM_MAX_BLOCK_DEVICES, &hot);
  if (!vmlet_diag_check(d, error))
    return NULL;
  g_autoptr(VmletVmRecord) r = vmlet_vm_record_new(ns, name);
  g_free(r->phase);
  r->phase = g_strdup(phase);
  r->proc.pid = (pid_t)pid;
  r->proc.start_time = (guint64)start;
  r->qmp_socket = g_strdup(qmp);
  r->runtime_dir = g_strdup(rdir);
  r->provisioning_digest = g_strdup(digest);
  r->cgroup = g_strdup(cgroup);
  r->stopped_manually = manual;
  r->restarts = (guint)restarts;
  if (created)
    r->created_us = created;
  r->launch_us = launch;
  r->generation = (guint64)generation;
  r->job = g_strdup(job_kind);
  r->job_intent = g_strdup(job_intent);
  r->job_force = job_force;
  r->machine_alias = g_strdup(alias);
  r->machine = g_strdup(resolved);
  if (spec)
    r->started_spec = json_node_copy(json_object_get_member(o, "startedSpec"));
  if (hot)
    r->hotplugged = json_node_copy(json_object_get_member(o, "hotplugged"));
  if (tr) {
    json_node_unref(r->transitions);
    r->transitions = json_node_copy(json_object_get_member(o, "phasesTransitions"));
  }
  return g_steal_pointer(&r);
}

GPtrArray *vmlet_vm_record_list(const char *state_dir)
{
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  g_autofree char *dir = g_build_filename(state_dir, "vms", NULL);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name(d)))
    if (name[0] != '.' && g_str_has_suffix(name, ".json"))
      g_ptr_array_add(out, g_build_filename(dir, name, NULL));
  g_ptr_array_sort(out, vmlet_compare_str_ptrs);
  return out;
}

gboolean vmlet_vm_record_delete(const char *state_dir, const char *namespace, const char *name,
                                GError **error)
{
  g_autofree char *path = vmlet_vm_record_path(state_dir, namespace, name);
  if (unlink(path) < 0 && errno != ENOENT) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", path, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

static char *tombstone_path(const char *state_dir, const char *namespace, const char *name)
{
  g_autofree char *file = g_strdup_printf("%s.%s.json", namespace, name);
  return g_build_filename(state_dir, "moved", file, NULL);
}

gboolean vmlet_vm_tombstone_write(const char *state_dir, const char *namespace,
                                  const char *name, const char *target, guint64 generation,
                                  GError **error)
{
  g_autofree char *dir = g_build_filename(state_dir, "moved", NULL);
  if (g_mkdir_with_parents(dir, 0700) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  g_autoptr(JsonBuilder) b = json_builder_new_immutable();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "target");
  json_builder_add_string_value(b, target);
  json_builder_set_member_name(b, "generation");
  json_builder_add_int_value(b, (gint64)generation);
  json_builder_set_member_name(b, "movedUs");
  json_builder_add_int_value(b, g_get_real_time());
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = json_to_string(root, TRUE);
  g_autofree char *path = tombstone_path(state_dir, namespace, name);
  return vmlet_write_file_atomic(path, text, strlen(text), 0600, error);
}

char *vmlet_vm_tombstone_read(const char *state_dir, const char *namespace, const char *name)
{
  g_autofree char *path = tombstone_path(state_dir, namespace, name);
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, 4096, &data, &len, NULL))
    return NULL;
  g_autoptr(JsonNode) root = vmlet_json_parse(path, data, (gssize)len, NULL);
  JsonObject *o = root ? json_node_get_object(root) : NULL;
  const char *target = jv_string_at(o, "target");
  return g_strdup_printf("migrated to %s (generation %" G_GINT64_FORMAT "): this node does not "
                         "run it again; remove %s to run it here", target ? target : "a peer",
                         jv_int_at(o, "generation", 0), path);
}

void vmlet_vm_tombstone_remove(const char *state_dir, const char *namespace, const char *name)
{
  g_autofree char *path = tombstone_path(state_dir, namespace, name);
  g_unlink(path);
}
