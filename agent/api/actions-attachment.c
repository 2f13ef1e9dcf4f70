#include "actions.h"

#include "actions-internal.h"
#include "errors.h"
#include "vmlet-error.h"

static JsonNode *attachment_json(VmletManager *mgr, const char *ns, const char *name)
{
  JsonNode *n = vmlet_manager_attachment(mgr, ns, name);
  return n ? n : vmlet_action_empty_object();
}

typedef struct {
  VmletManager *mgr;
  char *path, *ns, *name;
  GBytes *data;
  GTask *done; /* the caller's */
} AttachJob;

static void attach_job_free(gpointer p)
{
  AttachJob *j = p;
  g_object_unref(j->mgr);
  g_free(j->path);
  g_free(j->ns);
  g_free(j->name);
  g_bytes_unref(j->data);
  g_clear_object(&j->done);
  g_free(j);
}

static void write_dropin_thread(GTask *task, gpointer source, gpointer data, GCancellable *c)
{
  AttachJob *j = data;
  GError *error = NULL;
  gsize len = 0;
  const char *bytes = g_bytes_get_data(j->data, &len);
  g_autofree char *dir = g_path_get_dirname(j->path);
  g_mkdir_with_parents(dir, 0750);
  if (vmlet_action_write_dropin(j->path, bytes, len, &error))
    g_task_return_boolean(task, TRUE);
  else
    g_task_return_error(task, error);
}

/* On the main context again: the manager learns the outcome before the caller does. */
static void on_dropin_written(GObject *source, GAsyncResult *res, gpointer data)
{
  AttachJob *j = g_task_get_task_data(G_TASK(res));
  GError *error = NULL;
  gboolean ok = g_task_propagate_boolean(G_TASK(res), &error);
  /* Not on disk, so not wanted: it is forgotten and its device, if already plugged, is
   * detached again. */
  vmlet_manager_attachment_written(j->mgr, j->ns, j->name, ok);
  if (ok)
    g_task_return_pointer(j->done, attachment_json(j->mgr, j->ns, j->name),
                          (GDestroyNotify)json_node_unref);
  else
    g_task_return_error(j->done, error);
}

void vmlet_action_create_attachment(VmletManager *mgr, const char *ns, const char *name,
                                    GBytes *body, GAsyncReadyCallback callback,
                                    gpointer user_data)
{
  g_autoptr(GTask) done = g_task_new(NULL, NULL, callback, user_data);
  g_task_set_source_tag(done, vmlet_action_create_attachment);
  GError *error = NULL;
  g_autoptr(GPtrArray) objs =
      vmlet_action_parse_one(ns, name, body, VMLET_KIND_VMBDA, VMLET_KIND_NAME_VMBDA, &error);
  if (!objs) {
    g_task_return_error(done, error);
    return;
  }
  VmletObject *o = objs->pdata[0];
  g_autoptr(VmbdaProblem) problem = vmlet_manager_check_attachment(mgr, o->attachment);
  if (problem) {
    g_task_return_new_error(done, VMLET_ERROR, VMLET_ERROR_CONFLICT, "%s", problem->message);
    return;
  }
  if (vmlet_manager_attachment_source(mgr, ns, name)) {
    /* The same attachment again changes nothing (kubectl apply of an unchanged object). */
    g_task_return_pointer(done, attachment_json(mgr, ns, name), (GDestroyNotify)json_node_unref);
    return;
  }
  g_task_set_task_data(done, GINT_TO_POINTER(TRUE), NULL); /* created */
  AttachJob *j = g_new0(AttachJob, 1);
  j->mgr = g_object_ref(mgr);
  j->path = vmlet_action_dropin_path(mgr, "attachments.d", ns, name);
  j->ns = g_strdup(ns);
  j->name = g_strdup(name);
  j->data = g_bytes_ref(body);
  j->done = g_object_ref(done);
  /* The attach starts now; the reply waits for the file, QEMU does not. */
  vmlet_manager_add_attachment(mgr, o->attachment, j->path);
  g_autoptr(GTask) write = g_task_new(NULL, NULL, on_dropin_written, NULL);
  g_task_set_task_data(write, j, attach_job_free);
  g_task_run_in_thread(write, write_dropin_thread);
}

JsonNode *vmlet_action_create_attachment_finish(GAsyncResult *result, gboolean *created,
                                                GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
  *created = GPOINTER_TO_INT(g_task_get_task_data(G_TASK(result)));
  return g_task_propagate_pointer(G_TASK(result), error);
}

gboolean vmlet_action_delete_attachment(VmletManager *mgr, const char *ns, const char *name,
                                        GError **error)
{
  const char *source = vmlet_manager_attachment_source(mgr, ns, name);
  /* A drop-in that does not load has no object, only its file (listed as Failed). */
  g_autofree char *own = vmlet_action_dropin_path(mgr, "attachments.d", ns, name);
  if (!source && g_file_test(own, G_FILE_TEST_IS_REGULAR))
    source = own;
  if (!source) {
    g_autoptr(JsonNode) still = vmlet_manager_attachment(mgr, ns, name);
    if (still)
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_CONFLICT,
                  "%s \"%s\" is already being detached", VMLET_RESOURCE_VMBDAS, name);
    else
      vmlet_api_set_not_found(error, VMLET_RESOURCE_VMBDAS, ns, name);
    return FALSE;
  }
  /* Copied: the reload below frees the manager's string. */
  g_autofree char *path = g_strdup(source);
  g_autoptr(GError) local = NULL;
  if (!vmlet_action_refuse_list(path, error))
    return FALSE;
  if (!vmlet_action_remove_dropin(path, &local)) {
    /* It was there a moment ago: gone or not, not the client's doing. */
    vmlet_action_fail(error, VMLET_ERROR_IO, local);
    return FALSE;
  }
  vmlet_manager_reload(mgr);
  return TRUE;
}
