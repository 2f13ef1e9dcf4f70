#include "journal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "fileio.h"
#include "jsonval.h"
#include "meta.h"
#include "strutil.h"
#include "vmlet-error.h"

/* The destination's journal holds the VM's manifest and its disks' (each drop-in is at most
 * 1 MiB, in practice a few KiB). */
#define JOURNAL_MAX_BYTES (2 * 1024 * 1024)
#define JOURNAL_VERSION 1

static const char *const step_names[] = {
    [VMLET_MIG_PREPARING] = "Preparing",   [VMLET_MIG_PREPARED] = "Prepared",
    [VMLET_MIG_SWITCHOVER] = "Switchover", [VMLET_MIG_COMPLETED] = "Completed",
    [VMLET_MIG_COMMITTING] = "Committing", [VMLET_MIG_COMMITTED] = "Committed",
    [VMLET_MIG_ABORTING] = "Aborting",     [VMLET_MIG_FINISHED] = "Finished",
    [VMLET_MIG_ABORTED] = "Aborted",       NULL,
};
static const char *const role_names[] = {
    [VMLET_MIG_SOURCE] = "Source",
    [VMLET_MIG_DESTINATION] = "Destination",
    NULL,
};

gboolean vmlet_mig_step_is_outcome(VmletMigStep step)
{
  return step == VMLET_MIG_FINISHED || step == VMLET_MIG_ABORTED;
}

const char *vmlet_mig_step_name(VmletMigStep step)
{
  return step_names[step];
}

const char *vmlet_mig_role_name(VmletMigRole role)
{
  return role_names[role];
}

gboolean vmlet_mig_id_valid(const char *id)
{
  return id && strlen(id) == 36 && g_uuid_string_is_valid(id) &&
         strspn(id, "0123456789abcdef-") == 36;
}

VmletMigJournal *vmlet_mig_journal_new(const char *id, VmletMigRole role, const char *ns,
                                       const char *name, const char *peer,
                                       guint64 generation)
{
  VmletMigJournal *j = g_new0(VmletMigJournal, 1);
  j->id = g_strdup(id);
  j->role = role;
  j->step = VMLET_MIG_PREPARING;
  j->namespace = g_strdup(ns);
  j->name = g_strdup(name);
  j->peer = g_strdup(peer);
  j->generation = generation;
  j->started_us = j->updated_us = g_get_real_time();
  j->created = g_ptr_array_new_with_free_func(g_free);
  return j;
}

void vmlet_mig_journal_free(VmletMigJournal *j)
{
  if (!j)
    return;
  g_free(j->id);
  g_free(j->namespace);
  g_free(j->name);
  g_free(j->peer);
  g_free(j->operation);
  g_free(j->reason);
  g_ptr_array_unref(j->created);
  if (j->manifests)
    json_node_unref(j->manifests);
  g_free(j);
}

static char *path_of(const char *state_dir, const char *id)
{
  g_autofree char *file = g_strdup_printf("%s.json", id);
  return g_build_filename(state_dir, "migrations", file, NULL);
}

gboolean vmlet_mig_journal_save(const VmletMigJournal *j, const char *state_dir,
                                GError **error)
{
  g_autofree char *dir = g_build_filename(state_dir, "migrations", NULL);
  if (g_mkdir_with_parents(dir, 0700) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  g_autoptr(JsonBuilder) b = json_builder_new_immutable();
  json_builder_begin_object(b);
#define STR(k, v)                                                                              \
  do {                                                                                         \
    if (v) {                                                                                   \
      json_builder_set_member_name(b, k);                                                      \
      json_builder_add_string_value(b, v);                                                     \
    }                                                                                          \
  } while (0)
#define INT(k, v)                                                                              \
  do {                                                                                         \
    json_builder_set_member_name(b, k);                                                        \
    json_builder_add_int_value(b, v);                                                          \
  } while (0)
  INT("version", JOURNAL_VERSION);
  STR("id", j->id);
  STR("role", role_names[j->role]);
  STR("step", step_names[j->step]);
  STR("namespace", j->namespace);
  STR("name", j->name);
  STR("peer", j->peer);
  INT("generation", (gint64)j->generation);
  STR("operation", j->operation);
  STR("reason", j->reason);
  if (j->created->len) {
    json_builder_set_member_name(b, "created");
    json_builder_begin_array(b);
    for (guint i = 0; i < j->created->len; i++)
      json_builder_add_string_value(b, j->created->pdata[i]);
    json_builder_end_array(b);
  }
  if (j->paused) {
    json_builder_set_member_name(b, "paused");
    json_builder_add_boolean_value(b, TRUE);
  }
  if (j->manifests) {
    json_builder_set_member_name(b, "manifests");
    json_builder_add_value(b, json_node_copy(j->manifests));
  }
  INT("startedUs", j->started_us);
  INT("updatedUs", j->updated_us);
#undef STR
#undef INT
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = json_to_string(root, TRUE);
  g_autofree char *path = path_of(state_dir, j->id);
  return vmlet_write_file_atomic(path, text, strlen(text), 0600, error);
}

gboolean vmlet_mig_journal_step(VmletMigJournal *j, const char *state_dir, VmletMigStep step,
                                GError **error)
{
  VmletMigStep before = j->step;
  j->step = step;
  j->updated_us = g_get_real_time();
  if (vmlet_mig_journal_save(j, state_dir, error))
    return TRUE;
  j->step = before;
  return FALSE;
}

VmletMigJournal *vmlet_mig_journal_load(const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, JOURNAL_MAX_BYTES, &data, &len, error))
    return NULL;
  g_autoptr(JsonNode) root = vmlet_json_parse(path, data, (gssize)len, error);
  if (!root)
    return NULL;
  JsonObject *o = json_node_get_object(root);
  g_autoptr(VmletDiag) d = vmlet_diag_new(path);
  const char *id = NULL, *ns = NULL, *name = NULL, *peer = NULL, *op = NULL, *reason = NULL;
  guint step = 0, role = 0;
  gint64 version = 0, generation = 0, started = 0, updated = 0;
  jv_get_int(d, o, "", "version", JV_REQUIRED, 1, JOURNAL_VERSION, &version);
  jv_get_string(d, o, "", "id", JV_REQUIRED, 36, &id);
  jv_get_enum(d, o, "", "role", JV_REQUIRED, role_names, &role);
  jv_get_enum(d, o, "", "step", JV_REQUIRED, step_names, &step);
  vmlet_get_name(d, o, "", "namespace", JV_REQUIRED, &ns);
  vmlet_get_name(d, o, "", "name", JV_REQUIRED, &name);
  jv_get_string(d, o, "", "peer", JV_REQUIRED, 253, &peer);
  jv_get_int(d, o, "", "generation", JV_REQUIRED, 0, G_MAXINT64, &generation);
  jv_get_string(d, o, "", "operation", JV_OPTIONAL, 253, &op);
  jv_get_string(d, o, "", "reason", JV_OPTIONAL, 4096, &reason);
  jv_get_int(d, o, "", "startedUs", JV_OPTIONAL, 0, G_MAXINT64, &started);
  jv_get_int(d, o, "", "updatedUs", JV_OPTIONAL, 0, G_MAXINT64, &updated);
  JsonArray *created = NULL, *manifests = NULL;
  gboolean paused = FALSE;
  jv_get_array(d, o, "", "created", JV_OPTIONAL, 64, &created);
  jv_get_bool(d, o, "", "paused", JV_OPTIONAL, &paused);
  jv_get_array(d, o, "", "manifests", JV_OPTIONAL, 64, &manifests);
  if (id && !vmlet_mig_id_valid(id))
    vmlet_diag_error(d, "id", "expected a lowercase UUID, found \"%s\"", id);
  if (!vmlet_diag_check(d, error))
    return NULL;
  VmletMigJournal *j = vmlet_mig_journal_new(id, (VmletMigRole)role, ns, name, peer,
                                             (guint64)generation);
  j->step = (VmletMigStep)step;
  j->operation = g_strdup(op);
  j->reason = g_strdup(reason);
  j->started_us = started;
  j->updated_us = updated;
  j->paused = paused;
  if (manifests)
    j->manifests = json_node_copy(json_object_get_member(o, "manifests"));
  for (guint i = 0; created && i < json_array_get_length(created); i++) {
    JsonNode *e = json_array_get_element(created, i);
    /* Only absolute paths: the list is what recovery deletes. */
    if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING &&
        g_path_is_absolute(json_node_get_string(e)) && !strstr(json_node_get_string(e), "/../"))
      g_ptr_array_add(j->created, g_strdup(json_node_get_string(e)));
  }
  return j;
}

GPtrArray *vmlet_mig_journal_list(const char *state_dir)
{
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  g_autofree char *dir = g_build_filename(state_dir, "migrations", NULL);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name(d)))
    if (name[0] != '.' && g_str_has_suffix(name, ".json"))
      g_ptr_array_add(out, g_build_filename(dir, name, NULL));
  g_ptr_array_sort(out, vmlet_compare_str_ptrs);
  return out;
}

gboolean vmlet_mig_journal_delete(const char *state_dir, const char *id, GError **error)
{
  g_autofree char *path = path_of(state_dir, id);
  if (unlink(path) < 0 && errno != ENOENT) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", path, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

VmletMigJournal *vmlet_mig_journal_find(const char *state_dir, const char *id, GError **error)
{
  if (!vmlet_mig_id_valid(id)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "\"%s\" is not a migration id",
                id ? id : "");
    return NULL;
  }
  g_autofree char *path = path_of(state_dir, id);
  return vmlet_mig_journal_load(path, error);
}

void vmlet_mig_journal_prune(const char *state_dir, gint64 before_us)
{
  g_autoptr(GPtrArray) paths = vmlet_mig_journal_list(state_dir);
  for (guint i = 0; i < paths->len; i++) {
    g_autoptr(VmletMigJournal) j = vmlet_mig_journal_load(paths->pdata[i], NULL);
    if (j && vmlet_mig_step_is_outcome(j->step) && j->updated_us < before_us)
      unlink(paths->pdata[i]);
  }
}
