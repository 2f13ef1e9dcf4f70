#include "api.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libsoup/soup.h>

#include "fileio.h"
#include "jsonval.h"
#include "meta.h"
#include "objects.h"
#include "specdiff.h"
#include "vmlet-error.h"

#define API_PREFIX "/apis/virtualization.deckhouse.io/v1alpha2"
#define MAX_BODY_BYTES VMLET_MAX_DROPIN_BYTES

/* A client of GET ...?watch=true: one JSON event per line, chunked, until it goes away. */
typedef struct {
  VmletApi *api;
  SoupServerMessage *msg;
  char *namespace; /* NULL: all */
  gboolean attachments; /* VirtualMachineBlockDeviceAttachments, else VirtualMachines */
  gsize queued;    /* bytes appended but not yet written to the client */
  gboolean ended;
} Watcher;

#define MAX_WATCHERS 64
/* A client that stops reading would make its unwritten events grow without end; past this
 * its watch is ended, as a Kubernetes API server ends watches, and the client re-lists. */
#define MAX_WATCH_BACKLOG (1024 * 1024)

struct _VmletApi {
  VmletManager *mgr;
  GPtrArray *watchers; /* Watcher * */
  gulong changed_id, removed_id, att_changed_id, att_removed_id;
  SoupServer *server;
  char *socket_path;
  gid_t group;
  gboolean have_group;
  guint trim_source;
};

static void respond_json(SoupServerMessage *msg, guint status, JsonNode *node)
{
  /* Compact, as a Kubernetes API server answers: indentation made a list of 1000 VMs 1.8
   * instead of 1 MB, and json-glib's parsing in `vmlet get` is proportional to it. */
  g_autofree char *text = json_to_string(node, FALSE);
  g_autofree char *body = g_strconcat(text, "\n", NULL);
  soup_server_message_set_status(msg, status, NULL);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, body,
                                   strlen(body));
  /* One request per connection, closed by vmletd once it has answered: libsoup 3.2
   * (Debian 12) never frees an idle keep-alive connection that its client closes (fixed
   * upstream in 3.3, commit d20c6601), so every `vmlet` call or curl cost vmletd a file
   * descriptor and 2 KiB for good (3000 requests: 3000 fds). A watch stream is answered
   * elsewhere and keeps its connection. */
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection",
                               "close");
}

/* Errors in Kubernetes' Status shape, so clients that speak the API understand them. */
static void respond_error(SoupServerMessage *msg, guint status, const char *reason,
                          const char *message)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "apiVersion", "v1");
  json_object_set_string_member(o, "kind", "Status");
  json_object_set_string_member(o, "status", "Failure");
  json_object_set_string_member(o, "reason", reason);
  json_object_set_string_member(o, "message", message);
  json_object_set_int_member(o, "code", status);
  g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  respond_json(msg, status, n);
}

static void watcher_free(gpointer p)
{
  Watcher *w = p;
  g_free(w->namespace);
  g_free(w);
}

static void send_event(Watcher *w, const char *type, JsonNode *object)
{
  JsonObject *ev = json_object_new();
  json_object_set_string_member(ev, "type", type);
  json_object_set_member(ev, "object", object);
  g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, ev);
  g_autofree char *text = json_to_string(n, FALSE);
  g_autofree char *line = g_strconcat(text, "\n", NULL);
  gsize len = strlen(line);
  if (w->ended)
    return;
  SoupMessageBody *body = soup_server_message_get_response_body(w->msg);
  if (w->queued + len > MAX_WATCH_BACKLOG) {
    w->ended = TRUE;
    soup_message_body_complete(body);
  } else {
    w->queued += len;
    soup_message_body_append(body, SOUP_MEMORY_COPY, line, len);
  }
  soup_server_message_unpause(w->msg);
}

static void on_watch_wrote(SoupServerMessage *msg, guint chunk_size, gpointer data)
{
  Watcher *w = data;
  w->queued = chunk_size > w->queued ? 0 : w->queued - chunk_size;
}

static void on_watch_finished(SoupServerMessage *msg, gpointer data)
{
  Watcher *w = data;
  g_ptr_array_remove(w->api->watchers, w);
}

static void on_vm_changed(VmletManager *mgr, VmletVm *vm, gpointer data)
{
  VmletApi *api = data;
  for (guint i = 0; i < api->watchers->len; i++) {
    Watcher *w = api->watchers->pdata[i];
    if (!w->attachments &&
        (!w->namespace || g_str_equal(w->namespace, vmlet_vm_get_namespace(vm))))
      send_event(w, "MODIFIED", vmlet_vm_to_json(vm));
  }
}

static const char *object_namespace(JsonNode *obj)
{
  JsonObject *md = json_object_get_object_member(json_node_get_object(obj), "metadata");
  return json_object_get_string_member(md, "namespace");
}

static void on_attachment_changed(VmletManager *mgr, JsonNode *att, gpointer data)
{
  VmletApi *api = data;
  for (guint i = 0; i < api->watchers->len; i++) {
    Watcher *w = api->watchers->pdata[i];
    if (w->attachments && (!w->namespace || g_str_equal(w->namespace, object_namespace(att))))
      send_event(w, "MODIFIED", json_node_copy(att));
  }
}

static JsonNode *deleted_stub(const char *kind, const char *ns, const char *name)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "apiVersion", "virtualization.deckhouse.io/v1alpha2");
  json_object_set_string_member(o, "kind", kind);
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", name);
  json_object_set_string_member(md, "namespace", ns);
  json_object_set_object_member(o, "metadata", md);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

static void on_attachment_removed(VmletManager *mgr, const char *ns, const char *name,
                                  gpointer data)
{
  VmletApi *api = data;
  for (guint i = 0; i < api->watchers->len; i++) {
    Watcher *w = api->watchers->pdata[i];
    if (w->attachments && (!w->namespace || g_str_equal(w->namespace, ns)))
      send_event(w, "DELETED", deleted_stub(VMLET_KIND_NAME_VMBDA, ns, name));
  }
}

static void on_vm_removed(VmletManager *mgr, const char *ns, const char *name, gpointer data)
{
  VmletApi *api = data;
  for (guint i = 0; i < api->watchers->len; i++) {
    Watcher *w = api->watchers->pdata[i];
    if (w->attachments || (w->namespace && !g_str_equal(w->namespace, ns)))
      continue;
    send_event(w, "DELETED", deleted_stub("VirtualMachine", ns, name));
  }
}

/* Starts a watch: the current objects as ADDED events, then every change as it happens. */
static void start_watch(VmletApi *api, SoupServerMessage *msg, const char *ns, const char *name,
                        gboolean attachments)
{
  if (name) {
    respond_error(msg, 400, "BadRequest", "watch a collection, not one object");
    return;
  }
  if (api->watchers->len >= MAX_WATCHERS) {
    respond_error(msg, 503, "ServiceUnavailable", "too many watchers");
    return;
  }
  Watcher *w = g_new0(Watcher, 1);
  w->api = api;
  w->msg = msg;
  w->namespace = g_strdup(ns);
  w->attachments = attachments;
  g_ptr_array_add(api->watchers, w);
  soup_server_message_set_status(msg, 200, NULL);
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_set_encoding(h, SOUP_ENCODING_CHUNKED);
  soup_message_headers_set_content_type(h, "application/json", NULL);
  /* Written chunks are dropped, or a long watch would keep every event it ever sent. */
  soup_message_body_set_accumulate(soup_server_message_get_response_body(msg), FALSE);
  g_signal_connect(msg, "wrote-body-data", G_CALLBACK(on_watch_wrote), w);
  g_signal_connect(msg, "finished", G_CALLBACK(on_watch_finished), w);
  if (attachments) {
    g_autoptr(GPtrArray) atts = vmlet_manager_attachments(api->mgr, ns);
    for (guint i = 0; i < atts->len; i++)
      send_event(w, "ADDED", json_node_ref(atts->pdata[i]));
  } else {
    g_autoptr(GPtrArray) vms = vmlet_manager_list(api->mgr);
    for (guint i = 0; i < vms->len; i++)
      if (!ns || g_str_equal(ns, vmlet_vm_get_namespace(vms->pdata[i])))
        send_event(w, "ADDED", vmlet_vm_to_json(vms->pdata[i]));
  }
  /* No pause: with a chunked body libsoup waits by itself when the appended chunks run
   * out, and send_event unpauses it for the next one. */
}

static gboolean wants_watch(GHashTable *query)
{
  const char *w = query ? g_hash_table_lookup(query, "watch") : NULL;
  return w && (g_str_equal(w, "true") || g_str_equal(w, "1"));
}

static JsonNode *list_node(JsonArray *items)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "apiVersion", "v1");
  json_object_set_string_member(o, "kind", "List");
  json_object_set_array_member(o, "items", items);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

static gboolean peer_allowed(VmletApi *api, SoupServerMessage *msg, char **why)
{
  GSocket *sock = soup_server_message_get_socket(msg);
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (!sock || getsockopt(g_socket_get_fd(sock), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    *why = g_strdup("cannot read the peer's credentials");
    return FALSE;
  }
  if (cred.uid == 0)
    return TRUE;
  if (api->have_group) {
    if (cred.gid == api->group)
      return TRUE;
    /* Supplementary groups of the peer: from /proc, as SO_PEERCRED carries only one. */
    g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)cred.pid);
    g_autofree char *status = NULL;
    if (vmlet_read_file_bounded(path, 64 * 1024, &status, NULL, NULL)) {
      const char *groups = strstr(status, "\nGroups:");
      if (groups) {
        g_autofree char *line = g_strndup(groups + 8, strcspn(groups + 8, "\n"));
        g_auto(GStrv) ids = g_strsplit_set(line, " \t", -1);
        for (guint i = 0; ids[i]; i++)
          if (*ids[i] && (gid_t)g_ascii_strtoull(ids[i], NULL, 10) == api->group)
            return TRUE;
      }
    }
  }
  *why = g_strdup_printf("uid %u is not allowed to use vmletd: only root%s may", cred.uid,
                         api->have_group ? " and members of the API group" : "");
  return FALSE;
}

/* The request body as bytes (bounded in handle() before any route runs). */
static GBytes *request_body(SoupServerMessage *msg)
{
  return soup_message_body_flatten(soup_server_message_get_request_body(msg));
}

static void respond_vm_not_found(SoupServerMessage *msg, const char *ns, const char *name)
{
  g_autofree char *m = g_strdup_printf("virtualmachines \"%s\" not found in namespace \"%s\"",
                                       name, ns);
  respond_error(msg, 404, "NotFound", m);
}

/* The request body as a JSON object, or NULL with line:column errors named after source. */
static JsonNode *request_json(SoupServerMessage *msg, const char *source, GError **error)
{
  gsize len = 0;
  g_autoptr(GBytes) bytes = request_body(msg);
  const char *data = g_bytes_get_data(bytes, &len);
  return vmlet_json_parse(source, data ? data : "", (gssize)len, error);
}

static void get_vms(VmletApi *api, SoupServerMessage *msg, const char *ns, const char *name)
{
  if (name) {
    VmletVm *vm = vmlet_manager_lookup(api->mgr, ns, name);
    if (!vm) {
      respond_vm_not_found(msg, ns, name);
      return;
    }
    g_autoptr(JsonNode) n = vmlet_vm_to_json(vm);
    respond_json(msg, 200, n);
    return;
  }
  JsonArray *items = json_array_new();
  g_autoptr(GPtrArray) vms = vmlet_manager_list(api->mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmletVm *vm = vms->pdata[i];
    if (ns && !g_str_equal(ns, vmlet_vm_get_namespace(vm)))
      continue;
    json_array_add_element(items, vmlet_vm_to_json(vm));
  }
  g_autoptr(JsonNode) n = list_node(items);
  respond_json(msg, 200, n);
}

static char *dropin_path(VmletApi *api, const char *ns, const char *name)
{
  const VmletNode *node = vmlet_manager_get_node(api->mgr);
  g_autofree char *file = g_str_equal(ns, VMLET_DEFAULT_NAMESPACE)
                              ? g_strdup_printf("%s.json", name)
                              : g_strdup_printf("%s.%s.json", ns, name);
  return g_build_filename(node->config_dir, "vms.d", file, NULL);
}

/* Replacing a List drop-in with one VM would silently drop its other objects. */
static gboolean dropin_holds_list(const char *path)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, VMLET_MAX_DROPIN_BYTES, &data, &len, NULL))
    return FALSE;
  g_autoptr(JsonNode) root = vmlet_json_parse(path, data, (gssize)len, NULL);
  return root && json_object_has_member(json_node_get_object(root), "items");
}

/* The request's body as exactly one object of kind named ns/name, parsed as the daemon will
 * read it as a drop-in (so nothing is written that would not load); NULL after answering
 * 422 with why. */
static GPtrArray *request_object(SoupServerMessage *msg, GBytes *body, const char *ns,
                                 const char *name, VmletKind kind, const char *kind_name)
{
  gsize len = 0;
  const char *data = g_bytes_get_data(body, &len);
  g_autoptr(GError) error = NULL;
  g_autofree char *source = g_strdup_printf("%s/%s", ns, name);
  g_autoptr(GPtrArray) objs = vmlet_objects_parse(source, data ? data : "", len, NULL, &error);
  if (!objs) {
    respond_error(msg, 422, "Invalid", error->message);
    return NULL;
  }
  const VmletObject *o = objs->len == 1 ? objs->pdata[0] : NULL;
  const VmletMeta *meta = o ? vmlet_object_meta(o) : NULL;
  if (!o || o->kind != kind || !g_str_equal(meta->name, name) ||
      !g_str_equal(meta->namespace, ns)) {
    g_autofree char *m = g_strdup_printf("%s: expected one %s named \"%s\" in namespace \"%s\"",
                                         source, kind_name, name, ns);
    respond_error(msg, 422, "Invalid", m);
    return NULL;
  }
  return g_steal_pointer(&objs);
}

static void put_vm(VmletApi *api, SoupServerMessage *msg, const char *ns, const char *name)
{
  g_autoptr(GBytes) bytes = request_body(msg);
  g_autoptr(GPtrArray) objs =
      request_object(msg, bytes, ns, name, VMLET_KIND_VIRTUAL_MACHINE, "VirtualMachine");
  if (!objs)
    return;
  gsize len = 0;
  const char *data = g_bytes_get_data(bytes, &len);
  g_autoptr(GError) error = NULL;
  /* An existing VM keeps its drop-in file; a new one gets <config-dir>/vms.d/NAME.json. */
  VmletVm *existing = vmlet_manager_lookup(api->mgr, ns, name);
  g_autofree char *path = existing && vmlet_vm_get_source(existing)
                              ? g_strdup(vmlet_vm_get_source(existing))
                              : dropin_path(api, ns, name);
  if (dropin_holds_list(path)) {
    g_autofree char *m = g_strdup_printf("%s holds a List; edit that file directly", path);
    respond_error(msg, 409, "Conflict", m);
    return;
  }
  if (!vmlet_write_file_atomic(path, data, len, 0640, &error)) {
    respond_error(msg, 500, "InternalError", error->message);
    return;
  }
  vmlet_manager_reload(api->mgr);
  VmletVm *vm = vmlet_manager_lookup(api->mgr, ns, name);
  g_autoptr(JsonNode) n = vm ? vmlet_vm_to_json(vm) : json_node_init_object(json_node_alloc(), json_object_new());
  respond_json(msg, 200, n);
}

/* RFC 7386 merge patch (kubectl patch --type merge) on the VM's own drop-in: the result is
 * validated like any drop-in and written atomically; an invalid result changes nothing. */
static void patch_vm(VmletApi *api, SoupServerMessage *msg, const char *ns, const char *name)
{
  VmletVm *vm = vmlet_manager_lookup(api->mgr, ns, name);
  const char *source = vm ? vmlet_vm_get_source(vm) : NULL;
  if (!source) {
    respond_vm_not_found(msg, ns, name);
    return;
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) patch = request_json(msg, "patch", &error);
  g_autofree char *current = NULL;
  gsize clen = 0;
  g_autoptr(JsonNode) doc = NULL;
  if (patch && vmlet_read_file_bounded(source, VMLET_MAX_DROPIN_BYTES, &current, &clen, &error))
    doc = vmlet_json_parse(source, current, (gssize)clen, &error);
  if (!doc) {
    respond_error(msg, patch ? 409 : 400, patch ? "Conflict" : "BadRequest", error->message);
    return;
  }
  JsonObject *root = json_node_get_object(doc);
  if (json_object_has_member(root, "items")) {
    g_autofree char *m = g_strdup_printf("%s holds a List; edit that file directly", source);
    respond_error(msg, 409, "Conflict", m);
    return;
  }
  g_autoptr(JsonNode) merged = vmlet_merge_patch(doc, patch);
  g_autofree char *text = json_to_string(merged, TRUE);
  g_autoptr(GPtrArray) objs = vmlet_objects_parse(source, text, strlen(text), NULL, &error);
  VmletObject *o = objs && objs->len == 1 ? objs->pdata[0] : NULL;
  if (!o || o->kind != VMLET_KIND_VIRTUAL_MACHINE || !g_str_equal(o->vm->meta.name, name) ||
      !g_str_equal(o->vm->meta.namespace, ns)) {
    respond_error(msg, 422, "Invalid",
                  error ? error->message : "the patch must keep the VM's kind, name and namespace");
    return;
  }
  if (!vmlet_write_file_atomic(source, text, strlen(text), 0640, &error)) {
    respond_error(msg, 500, "InternalError", error->message);
    return;
  }
  vmlet_manager_reload(api->mgr);
  vm = vmlet_manager_lookup(api->mgr, ns, name);
  g_autoptr(JsonNode) n = vmlet_vm_to_json(vm);
  respond_json(msg, 200, n);
}

static void delete_vm(VmletApi *api, SoupServerMessage *msg, const char *ns, const char *name)
{
  g_autofree char *path = dropin_path(api, ns, name);
  if (unlink(path) < 0) {
    g_autofree char *m = errno == ENOENT
                             ? g_strdup_printf("virtualmachines \"%s\" has no drop-in %s (only "
                                               "VMs created through the API can be deleted "
                                               "through it)", name, path)
                             : g_strdup_printf("%s: %s", path, g_strerror(errno));
    respond_error(msg, errno == ENOENT ? 404 : 500, errno == ENOENT ? "NotFound" : "InternalError",
                  m);
    return;
  }
  vmlet_manager_reload(api->mgr);
  respond_error(msg, 200, "Deleted", "deletion started: the VM is Terminating");
}

/* ---- VirtualMachineBlockDeviceAttachments ---- */

static void get_attachments(VmletApi *api, SoupServerMessage *msg, const char *ns,
                            const char *name)
{
  if (name) {
    g_autoptr(JsonNode) att = vmlet_manager_attachment(api->mgr, ns, name);
    if (!att) {
      g_autofree char *m = g_strdup_printf("virtualmachineblockdeviceattachments \"%s\" not "
                                           "found in namespace \"%s\"", name, ns);
      respond_error(msg, 404, "NotFound", m);
      return;
    }
    respond_json(msg, 200, att);
    return;
  }
  JsonArray *items = json_array_new();
  g_autoptr(GPtrArray) atts = vmlet_manager_attachments(api->mgr, ns);
  for (guint i = 0; i < atts->len; i++)
    json_array_add_element(items, json_node_ref(atts->pdata[i]));
  g_autoptr(JsonNode) n = list_node(items);
  respond_json(msg, 200, n);
}

static char *attachment_dropin_path(VmletApi *api, const char *ns, const char *name)
{
  const VmletNode *node = vmlet_manager_get_node(api->mgr);
  g_autofree char *file = g_str_equal(ns, VMLET_DEFAULT_NAMESPACE)
                              ? g_strdup_printf("%s.json", name)
                              : g_strdup_printf("%s.%s.json", ns, name);
  return g_build_filename(node->config_dir, "attachments.d", file, NULL);
}

typedef struct {
  VmletManager *mgr;
  SoupServerMessage *msg;
  char *path, *ns, *name;
  GBytes *data;
} PutJob;

static void put_job_free(gpointer p)
{
  PutJob *j = p;
  g_object_unref(j->mgr);
  g_object_unref(j->msg);
  g_free(j->path);
  g_free(j->ns);
  g_free(j->name);
  g_bytes_unref(j->data);
  g_free(j);
}

static void write_dropin_thread(GTask *task, gpointer source, gpointer data, GCancellable *c)
{
  PutJob *j = data;
  GError *error = NULL;
  gsize len = 0;
  const char *bytes = g_bytes_get_data(j->data, &len);
  g_autofree char *dir = g_path_get_dirname(j->path);
  g_mkdir_with_parents(dir, 0750);
  if (vmlet_write_file_atomic(j->path, bytes, len, 0640, &error))
    g_task_return_boolean(task, TRUE);
  else
    g_task_return_error(task, error);
}

static void on_dropin_written(GObject *source, GAsyncResult *res, gpointer data)
{
  PutJob *j = g_task_get_task_data(G_TASK(res));
  g_autoptr(GError) error = NULL;
  gboolean ok = g_task_propagate_boolean(G_TASK(res), &error);
  /* Not on disk, so not wanted: it is forgotten and its device, if already plugged, is
   * detached again. */
  vmlet_manager_attachment_written(j->mgr, j->ns, j->name, ok);
  if (!ok) {
    respond_error(j->msg, 500, "InternalError", error->message);
  } else {
    g_autoptr(JsonNode) n = vmlet_manager_attachment(j->mgr, j->ns, j->name);
    if (!n)
      n = json_node_init_object(json_node_alloc(), json_object_new());
    respond_json(j->msg, 201, n);
  }
  soup_server_message_unpause(j->msg);
}

/* Create (or confirm) an attachment: validated like a drop-in and refused up front when it
 * cannot be honoured (409 with the reason). The attach starts at once, while the drop-in
 * <config-dir>/attachments.d/[NS.]NAME.json is written (and fsynced) in a worker thread:
 * the reply, usually InProgress, waits for the file, QEMU does not. */
static void put_attachment(VmletApi *api, SoupServerMessage *msg, const char *ns,
                           const char *name)
{
  g_autoptr(GBytes) bytes = request_body(msg);
  g_autoptr(GPtrArray) objs = request_object(msg, bytes, ns, name, VMLET_KIND_VMBDA,
                                             "VirtualMachineBlockDeviceAttachment");
  if (!objs)
    return;
  VmletObject *o = objs->pdata[0];
  g_autoptr(VmbdaProblem) problem = vmlet_manager_check_attachment(api->mgr, o->attachment);
  if (problem) {
    respond_error(msg, 409, "Conflict", problem->message);
    return;
  }
  if (vmlet_manager_attachment_source(api->mgr, ns, name)) {
    /* The same attachment again changes nothing (kubectl apply of an unchanged object). */
    g_autoptr(JsonNode) n = vmlet_manager_attachment(api->mgr, ns, name);
    respond_json(msg, 200, n);
    return;
  }
  PutJob *j = g_new0(PutJob, 1);
  j->mgr = g_object_ref(api->mgr);
  j->msg = g_object_ref(msg);
  j->path = attachment_dropin_path(api, ns, name);
  j->ns = g_strdup(ns);
  j->name = g_strdup(name);
  j->data = g_bytes_ref(bytes);
  vmlet_manager_add_attachment(api->mgr, o->attachment, j->path);
  soup_server_message_pause(msg);
  g_autoptr(GTask) task = g_task_new(NULL, NULL, on_dropin_written, NULL);
  g_task_set_task_data(task, j, put_job_free);
  g_task_run_in_thread(task, write_dropin_thread);
}

/* Detach: remove the drop-in; the attachment stays Terminating until QEMU has let go. */
static void delete_attachment(VmletApi *api, SoupServerMessage *msg, const char *ns,
                              const char *name)
{
  const char *source = vmlet_manager_attachment_source(api->mgr, ns, name);
  /* A drop-in that does not load has no object, only its file (listed as Failed). */
  g_autofree char *own = attachment_dropin_path(api, ns, name);
  if (!source && g_file_test(own, G_FILE_TEST_IS_REGULAR))
    source = own;
  if (!source) {
    g_autoptr(JsonNode) still = vmlet_manager_attachment(api->mgr, ns, name);
    g_autofree char *m =
        still ? g_strdup_printf("virtualmachineblockdeviceattachments \"%s\" is already being "
                                "detached", name)
              : g_strdup_printf("virtualmachineblockdeviceattachments \"%s\" not found in "
                                "namespace \"%s\"", name, ns);
    respond_error(msg, still ? 409 : 404, still ? "Conflict" : "NotFound", m);
    return;
  }
  if (dropin_holds_list(source)) {
    g_autofree char *m = g_strdup_printf("%s holds a List; edit that file directly", source);
    respond_error(msg, 409, "Conflict", m);
    return;
  }
  g_autofree char *path = g_strdup(source);
  if (unlink(path) < 0) {
    g_autofree char *m = g_strdup_printf("%s: %s", path, g_strerror(errno));
    respond_error(msg, 500, "InternalError", m);
    return;
  }
  vmlet_manager_reload(api->mgr);
  respond_error(msg, 200, "Deleted", "deletion started: the attachment is Terminating until "
                                     "the guest has released the device");
}

/* KubeVirt's pause / unpause subresources: QMP stop / cont. */
static void pause_vm(VmletApi *api, SoupServerMessage *msg, const char *ns, const char *name,
                     gboolean pause)
{
  VmletVm *vm = vmlet_manager_lookup(api->mgr, ns, name);
  if (!vm) {
    respond_vm_not_found(msg, ns, name);
    return;
  }
  g_autoptr(GError) error = NULL;
  if (!vmlet_vm_pause(vm, pause, &error)) {
    respond_error(msg, 409, "Conflict", error->message);
    return;
  }
  respond_error(msg, 202, "Accepted", pause ? "pause requested" : "unpause requested");
}

static void operations(VmletApi *api, SoupServerMessage *msg, const char *method, const char *ns)
{
  if (g_str_equal(method, "GET")) {
    JsonArray *items = json_array_new();
    g_autoptr(GPtrArray) vms = vmlet_manager_list(api->mgr);
    for (guint i = 0; i < vms->len; i++) {
      if (!g_str_equal(ns, vmlet_vm_get_namespace(vms->pdata[i])))
        continue;
      g_autoptr(JsonNode) ops = vmlet_vm_operations_json(vms->pdata[i]);
      JsonArray *arr = json_node_get_array(ops);
      for (guint j = 0; j < json_array_get_length(arr); j++)
        json_array_add_element(items, json_node_copy(json_array_get_element(arr, j)));
    }
    g_autoptr(JsonNode) n = list_node(items);
    respond_json(msg, 200, n);
    return;
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) root = request_json(msg, "request", &error);
  if (!root) {
    respond_error(msg, 400, "BadRequest", error->message);
    return;
  }
  g_autoptr(VmletDiag) d = vmlet_diag_new("VirtualMachineOperation");
  JsonObject *spec = NULL;
  const char *vm_name = NULL;
  guint type = 0;
  gboolean force = FALSE;
  static const char *const types[] = {"Start", "Stop", "Restart", NULL};
  if (jv_get_object(d, json_node_get_object(root), "", "spec", JV_REQUIRED, &spec)) {
    vmlet_get_name(d, spec, "spec", "virtualMachineName", JV_REQUIRED, &vm_name);
    jv_get_enum(d, spec, "spec", "type", JV_REQUIRED, types, &type);
    jv_get_bool(d, spec, "spec", "force", JV_OPTIONAL, &force);
  }
  if (!vmlet_diag_check(d, &error)) {
    respond_error(msg, 422, "Invalid", error->message);
    return;
  }
  VmletVm *vm = vmlet_manager_lookup(api->mgr, ns, vm_name);
  if (!vm) {
    respond_vm_not_found(msg, ns, vm_name);
    return;
  }
  /* Created even when refused: the operation says Failed and why, like DVP's. */
  g_free(vmlet_vm_operate(vm, (VmOpType)type, force)); /* it is the newest operation */
  g_autoptr(JsonNode) ops = vmlet_vm_operations_json(vm);
  JsonArray *arr = json_node_get_array(ops);
  respond_json(msg, 201, json_array_get_element(arr, json_array_get_length(arr) - 1));
}

static void handle(SoupServer *server, SoupServerMessage *msg, const char *path,
                   GHashTable *query, gpointer data)
{
  VmletApi *api = data;
  g_autofree char *why = NULL;
  if (!peer_allowed(api, msg, &why)) {
    respond_error(msg, 403, "Forbidden", why);
    return;
  }
  const char *method = soup_server_message_get_method(msg);
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  if (body->length > MAX_BODY_BYTES) {
    respond_error(msg, 413, "RequestEntityTooLarge", "request body larger than 1 MiB");
    return;
  }
  if (g_str_equal(path, "/healthz")) {
    g_autoptr(JsonNode) n = json_from_string("{\"status\": \"ok\"}", NULL);
    respond_json(msg, 200, n);
    return;
  }
  if (!g_str_has_prefix(path, API_PREFIX "/")) {
    respond_error(msg, 404, "NotFound", "unknown path");
    return;
  }
  g_auto(GStrv) parts = g_strsplit(path + strlen(API_PREFIX "/"), "/", 6);
  guint n = g_strv_length(parts);
  if (n == 1 && g_str_equal(parts[0], "virtualmachines") && g_str_equal(method, "GET")) {
    if (wants_watch(query))
      start_watch(api, msg, NULL, NULL, FALSE);
    else
      get_vms(api, msg, NULL, NULL);
    return;
  }
  if (n == 1 && g_str_equal(parts[0], "virtualmachineblockdeviceattachments") &&
      g_str_equal(method, "GET")) {
    if (wants_watch(query))
      start_watch(api, msg, NULL, NULL, TRUE);
    else
      get_attachments(api, msg, NULL, NULL);
    return;
  }
  if (n < 3 || !g_str_equal(parts[0], "namespaces") || !vmlet_is_dns1123_label(parts[1])) {
    respond_error(msg, 404, "NotFound", "unknown path");
    return;
  }
  const char *ns = parts[1], *resource = parts[2], *name = n > 3 ? parts[3] : NULL;
  if (n > 5 || (name && !vmlet_is_dns1123_label(name))) {
    respond_error(msg, 404, "NotFound", "unknown path");
    return;
  }
  if (n == 5) {
    gboolean vms = g_str_equal(resource, "virtualmachines");
    if (vms && g_str_equal(method, "PUT") &&
        (g_str_equal(parts[4], "pause") || g_str_equal(parts[4], "unpause")))
      pause_vm(api, msg, ns, name, g_str_equal(parts[4], "pause"));
    else
      respond_error(msg, 404, "NotFound", "unknown path");
    return;
  }
  if (g_str_equal(resource, "virtualmachineblockdeviceattachments")) {
    if (g_str_equal(method, "GET") && wants_watch(query))
      start_watch(api, msg, ns, name, TRUE);
    else if (g_str_equal(method, "GET"))
      get_attachments(api, msg, ns, name);
    else if (g_str_equal(method, "PUT") && name)
      put_attachment(api, msg, ns, name);
    else if (g_str_equal(method, "DELETE") && name)
      delete_attachment(api, msg, ns, name);
    else
      respond_error(msg, 405, "MethodNotAllowed", "use GET, PUT or DELETE");
    return;
  }
  if (g_str_equal(resource, "virtualmachines")) {
    if (g_str_equal(method, "GET") && wants_watch(query))
      start_watch(api, msg, ns, name, FALSE);
    else if (g_str_equal(method, "GET"))
      get_vms(api, msg, ns, name);
    else if (g_str_equal(method, "PUT") && name)
      put_vm(api, msg, ns, name);
    else if (g_str_equal(method, "DELETE") && name)
      delete_vm(api, msg, ns, name);
    else if (g_str_equal(method, "PATCH") && name)
      patch_vm(api, msg, ns, name);
    else
      respond_error(msg, 405, "MethodNotAllowed", "use GET, PUT, PATCH or DELETE");
    return;
  }
  if (g_str_equal(resource, "virtualmachineoperations") && !name &&
      (g_str_equal(method, "GET") || g_str_equal(method, "POST"))) {
    operations(api, msg, method, ns);
    return;
  }
  respond_error(msg, 404, "NotFound", "unknown path");
}

static gboolean on_trim(gpointer data)
{
  VmletApi *api = data;
  api->trim_source = 0;
  malloc_trim(0);
  return G_SOURCE_REMOVE;
}

/* A list of many VMs is built as a JSON tree and a string and then freed; without a trim
 * the freed pages stay in the daemon's RSS (100 VMs polled: +0.8 MiB). Once per second at
 * most, after the requests of that second. */
static void on_request_finished(SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  VmletApi *api = data;
  if (!api->trim_source)
    api->trim_source = g_timeout_add(1000, on_trim, api);
}

VmletApi *vmlet_api_new(VmletManager *mgr, const char *socket_path, const char *group,
                        GError **error)
{
  g_autoptr(VmletApi) api = g_new0(VmletApi, 1);
  api->mgr = g_object_ref(mgr);
  api->socket_path = g_strdup(socket_path);
  api->watchers = g_ptr_array_new_with_free_func(watcher_free);
  api->changed_id = g_signal_connect(mgr, "vm-changed", G_CALLBACK(on_vm_changed), api);
  api->removed_id = g_signal_connect(mgr, "vm-removed", G_CALLBACK(on_vm_removed), api);
  api->att_changed_id =
      g_signal_connect(mgr, "attachment-changed", G_CALLBACK(on_attachment_changed), api);
  api->att_removed_id =
      g_signal_connect(mgr, "attachment-removed", G_CALLBACK(on_attachment_removed), api);
  if (group) {
    struct group *gr = getgrnam(group);
    if (gr) {
      api->group = gr->gr_gid;
      api->have_group = TRUE;
    }
  }
  g_autofree char *dir = g_path_get_dirname(socket_path);
  if (g_mkdir_with_parents(dir, 0750) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return NULL;
  }
  /* A socket left by a previous (killed) vmletd would make bind fail. */
  unlink(socket_path);
  g_autoptr(GSocket) sock = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM,
                                         G_SOCKET_PROTOCOL_DEFAULT, error);
  if (!sock)
    return NULL;
  g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(socket_path);
  /* Bind with a umask that leaves no window where others could connect. */
  mode_t old = umask(0117);
  gboolean bound = g_socket_bind(sock, addr, TRUE, error);
  umask(old);
  if (!bound || !g_socket_listen(sock, error)) {
    g_prefix_error(error, "%s: ", socket_path);
    return NULL;
  }
  if (api->have_group && chown(socket_path, 0, api->group) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: chown: %s", socket_path,
                g_strerror(errno));
    return NULL;
  }
  chmod(socket_path, 0660);
  api->server = soup_server_new("server-header", "vmletd", NULL);
  soup_server_add_handler(api->server, NULL, handle, api, NULL);
  g_signal_connect(api->server, "request-finished", G_CALLBACK(on_request_finished), api);
  if (!soup_server_listen_socket(api->server, sock, 0, error)) {
    g_prefix_error(error, "%s: ", socket_path);
    return NULL;
  }
  return g_steal_pointer(&api);
}

void vmlet_api_free(VmletApi *api)
{
  if (!api)
    return;
  if (api->mgr) {
    g_clear_signal_handler(&api->changed_id, api->mgr);
    g_clear_signal_handler(&api->removed_id, api->mgr);
    g_clear_signal_handler(&api->att_changed_id, api->mgr);
    g_clear_signal_handler(&api->att_removed_id, api->mgr);
  }
  g_clear_handle_id(&api->trim_source, g_source_remove);
  if (api->server) {
    g_signal_handlers_disconnect_by_data(api->server, api);
    soup_server_disconnect(api->server);
    g_object_unref(api->server);
  }
  if (api->watchers)
    g_ptr_array_unref(api->watchers);
  if (api->socket_path)
    unlink(api->socket_path);
  g_free(api->socket_path);
  g_clear_object(&api->mgr);
  g_free(api);
}
