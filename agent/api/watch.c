#include "watch.h"

#include <string.h>

#include "attachment.h"
#include "handlers.h"
#include "jsonval.h"
#include "respond.h"
#include "vmlet-error.h"

#define MAX_WATCHERS 64
/* A client that stops reading would make its unwritten events grow without end; past this
 * its watch is ended, as a Kubernetes API server ends watches, and the client re-lists. */
#define MAX_WATCH_BACKLOG (1024 * 1024)

/* A client of GET ...?watch=true: one JSON event per line, chunked, until it goes away. */
typedef struct {
  VmletWatchHub *hub;
  SoupServerMessage *msg;
  char *namespace; /* NULL: all */
  VmletWatchKind kind;
  gsize queued; /* bytes appended but not yet written to the client */
  gboolean ended;
} Watcher;

struct _VmletWatchHub {
  VmletManager *mgr;
  GPtrArray *watchers; /* Watcher * */
  gulong changed_id, removed_id, att_changed_id, att_removed_id;
};

static void watcher_free(gpointer p)
{
  Watcher *w = p;
  g_free(w->namespace);
  g_free(w);
}

static gboolean watcher_wants(const Watcher *w, VmletWatchKind kind, const char *ns)
{
  return w->kind == kind && (!w->namespace || g_str_equal(w->namespace, ns));
}

/* Takes object. */
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
  g_ptr_array_remove(w->hub->watchers, w);
}

/* What a DELETED event carries: the object is gone, its kind and name are all there is. */
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

static void on_vm_changed(VmletManager *mgr, VmletVm *vm, gpointer data)
{
  VmletWatchHub *hub = data;
  for (guint i = 0; i < hub->watchers->len; i++) {
    Watcher *w = hub->watchers->pdata[i];
    if (watcher_wants(w, VMLET_WATCH_VMS, vmlet_vm_get_namespace(vm)))
      send_event(w, "MODIFIED", vmlet_vm_to_json(vm));
  }
}

static void on_vm_removed(VmletManager *mgr, const char *ns, const char *name, gpointer data)
{
  VmletWatchHub *hub = data;
  for (guint i = 0; i < hub->watchers->len; i++) {
    Watcher *w = hub->watchers->pdata[i];
    if (watcher_wants(w, VMLET_WATCH_VMS, ns))
      send_event(w, "DELETED", deleted_stub("VirtualMachine", ns, name));
  }
}

static void on_attachment_changed(VmletManager *mgr, JsonNode *att, gpointer data)
{
  VmletWatchHub *hub = data;
  const char *ns = jv_string_path(json_node_get_object(att), "metadata.namespace");
  for (guint i = 0; i < hub->watchers->len; i++) {
    Watcher *w = hub->watchers->pdata[i];
    if (watcher_wants(w, VMLET_WATCH_ATTACHMENTS, ns))
      send_event(w, "MODIFIED", json_node_copy(att));
  }
}

static void on_attachment_removed(VmletManager *mgr, const char *ns, const char *name,
                                  gpointer data)
{
  VmletWatchHub *hub = data;
  for (guint i = 0; i < hub->watchers->len; i++) {
    Watcher *w = hub->watchers->pdata[i];
    if (watcher_wants(w, VMLET_WATCH_ATTACHMENTS, ns))
      send_event(w, "DELETED", deleted_stub(VMLET_KIND_NAME_VMBDA, ns, name));
  }
}

VmletWatchHub *vmlet_watch_hub_new(VmletManager *mgr)
{
  VmletWatchHub *hub = g_new0(VmletWatchHub, 1);
  hub->mgr = g_object_ref(mgr);
  hub->watchers = g_ptr_array_new_with_free_func(watcher_free);
  hub->changed_id = g_signal_connect(mgr, "vm-changed", G_CALLBACK(on_vm_changed), hub);
  hub->removed_id = g_signal_connect(mgr, "vm-removed", G_CALLBACK(on_vm_removed), hub);
  hub->att_changed_id =
      g_signal_connect(mgr, "attachment-changed", G_CALLBACK(on_attachment_changed), hub);
  hub->att_removed_id =
      g_signal_connect(mgr, "attachment-removed", G_CALLBACK(on_attachment_removed), hub);
  return hub;
}

void vmlet_watch_hub_free(VmletWatchHub *hub)
{
  if (!hub)
    return;
  g_clear_signal_handler(&hub->changed_id, hub->mgr);
  g_clear_signal_handler(&hub->removed_id, hub->mgr);
  g_clear_signal_handler(&hub->att_changed_id, hub->mgr);
  g_clear_signal_handler(&hub->att_removed_id, hub->mgr);
  g_ptr_array_unref(hub->watchers);
  g_object_unref(hub->mgr);
  g_free(hub);
}

static void send_current(Watcher *w, VmletManager *mgr, const char *ns)
{
  switch (w->kind) {
  case VMLET_WATCH_ATTACHMENTS: {
    g_autoptr(GPtrArray) atts = vmlet_manager_attachments(mgr, ns);
    for (guint i = 0; i < atts->len; i++)
      send_event(w, "ADDED", json_node_ref(atts->pdata[i]));
    break;
  }
  case VMLET_WATCH_VMS: {
    g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
    for (guint i = 0; i < vms->len; i++)
      if (!ns || g_str_equal(ns, vmlet_vm_get_namespace(vms->pdata[i])))
        send_event(w, "ADDED", vmlet_vm_to_json(vms->pdata[i]));
    break;
  }
  }
}

gboolean vmlet_watch_start(VmletWatchHub *hub, SoupServerMessage *msg, VmletWatchKind kind,
                           const char *ns, GError **error)
{
  if (hub->watchers->len >= MAX_WATCHERS) {
    g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_UNAVAILABLE, "too many watchers");
    return FALSE;
  }
  Watcher *w = g_new0(Watcher, 1);
  w->hub = hub;
  w->msg = msg;
  w->namespace = g_strdup(ns);
  w->kind = kind;
  g_ptr_array_add(hub->watchers, w);
  soup_server_message_set_status(msg, 200, NULL);
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_set_encoding(h, SOUP_ENCODING_CHUNKED);
  soup_message_headers_set_content_type(h, "application/json", NULL);
  /* Written chunks are dropped, or a long watch would keep every event it ever sent. */
  soup_message_body_set_accumulate(soup_server_message_get_response_body(msg), FALSE);
  g_signal_connect(msg, "wrote-body-data", G_CALLBACK(on_watch_wrote), w);
  g_signal_connect(msg, "finished", G_CALLBACK(on_watch_finished), w);
  send_current(w, hub->mgr, ns);
  /* No pause: with a chunked body libsoup waits by itself when the appended chunks run
   * out, and send_event unpauses it for the next one. */
  return TRUE;
}

static void watch(VmletCall *call, VmletWatchKind kind)
{
  g_autoptr(GError) error = NULL;
  if (!vmlet_watch_start(call->watch, call->msg, kind, call->args->ns, &error))
    vmlet_respond_error(call->msg, error);
}

void vmlet_handle_watch_vms(VmletCall *call)
{
  watch(call, VMLET_WATCH_VMS);
}

void vmlet_handle_watch_attachments(VmletCall *call)
{
  watch(call, VMLET_WATCH_ATTACHMENTS);
}

void vmlet_handle_watch_one(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  g_set_error_literal(&error, VMLET_ERROR, VMLET_ERROR_MALFORMED,
                      "watch a collection, not one object");
  vmlet_respond_error(call->msg, error);
}
