/* vmlet attach and detach: hot-plug through a VirtualMachineBlockDeviceAttachment, and
 * --wait, which follows the attachments' watch stream like `kubectl wait --for`. */
#include <stdio.h>
#include <string.h>

#include "attachment.h"
#include "commands.h"
#include "meta.h"
#include "remote.h"

typedef struct {
  const char *name;
  gboolean gone_is_done; /* detach: the object disappearing is success */
  gint64 deadline_us;
  int rc;
  char *why;
} WaitFor;

static const char *attached_message(JsonObject *obj)
{
  JsonObject *st = json_object_has_member(obj, "status") ? json_object_get_object_member(obj, "status")
                                                         : NULL;
  JsonArray *conds = st && json_object_has_member(st, "conditions")
                         ? json_object_get_array_member(st, "conditions")
                         : NULL;
  for (guint i = 0; conds && i < json_array_get_length(conds); i++) {
    JsonObject *c = json_array_get_object_element(conds, i);
    if (g_strcmp0(remote_str(c, "type", NULL), "Attached") == 0)
      return remote_str(c, "message", NULL);
  }
  return NULL;
}

/* kubectl wait --for: Attached, or Failed with its reason. */
static gboolean wait_event(JsonObject *event, gpointer data)
{
  WaitFor *w = data;
  if (g_get_monotonic_time() > w->deadline_us) {
    w->why = g_strdup("timed out");
    return FALSE;
  }
  JsonNode *n = json_object_get_member(event, "object");
  if (!n || !JSON_NODE_HOLDS_OBJECT(n))
    return TRUE;
  JsonObject *obj = json_node_get_object(n);
  if (g_strcmp0(remote_str(obj, "metadata", "name"), w->name) != 0)
    return TRUE;
  const char *type = json_object_get_string_member_with_default(event, "type", "");
  const char *phase = remote_str(obj, "status", "phase");
  if (g_str_equal(type, "DELETED")) {
    w->rc = w->gone_is_done ? 0 : 1;
    if (!w->gone_is_done)
      w->why = g_strdup("the attachment was deleted");
    return FALSE;
  }
  if (!w->gone_is_done && g_strcmp0(phase, "Attached") == 0) {
    w->rc = 0;
    return FALSE;
  }
  if (!w->gone_is_done && g_strcmp0(phase, "Failed") == 0) {
    const char *m = attached_message(obj);
    w->why = g_strdup_printf("Failed: %s", m ? m : "no reason given");
    return FALSE;
  }
  return TRUE;
}

static int wait_for(const char *cmd, VmletClient *c, const char *ns, const char *name,
                    gboolean gone, guint timeout_s)
{
  WaitFor w = {.name = name, .gone_is_done = gone, .rc = 1,
               .deadline_us = g_get_monotonic_time() + (gint64)timeout_s * G_USEC_PER_SEC};
  g_autofree char *path = g_strdup_printf(
      API "/namespaces/%s/virtualmachineblockdeviceattachments?watch=true", ns);
  g_autoptr(GError) error = NULL;
  if (gone) {
    /* Already gone: the watch would never mention it. */
    g_autofree char *one = g_strdup_printf(
        API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", ns, name);
    guint status = 0;
    g_autoptr(JsonNode) r = vmlet_client_request(c, "GET", one, NULL, 0, &status, NULL);
    if (r && status == 404)
      return 0;
  }
  if (!vmlet_client_watch_timeout(c, path, timeout_s, wait_event, &w, &error)) {
    fprintf(stderr, "vmlet %s: %s: %s\n", cmd, name,
            g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) ? "timed out"
                                                                    : error->message);
    return 1;
  }
  if (w.rc != 0)
    fprintf(stderr, "vmlet %s: %s: %s\n", cmd, name, w.why ? w.why : "the watch ended");
  g_free(w.why);
  return w.rc;
}

typedef struct {
  char *disk, *image, *cluster_image, *name;
  gboolean wait;
  gint timeout;
} AttachOptions;

static void attach_options_clear(AttachOptions *a)
{
  g_free(a->disk);
  g_free(a->image);
  g_free(a->cluster_image);
  g_free(a->name);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(AttachOptions, attach_options_clear)

static GOptionEntry *attach_entries(AttachOptions *a, gboolean detach)
{
  static GOptionEntry entries[7];
  GOptionEntry e[] = {
      {"disk", 0, 0, G_OPTION_ARG_STRING, &a->disk, "a VirtualDisk (read-write)", "NAME"},
      {"image", 0, 0, G_OPTION_ARG_STRING, &a->image, "a VirtualImage (read-only; ISO: CD-ROM)",
       "NAME"},
      {"cluster-image", 0, 0, G_OPTION_ARG_STRING, &a->cluster_image,
       "a ClusterVirtualImage (read-only; ISO: CD-ROM)", "NAME"},
      {"name", 0, 0, G_OPTION_ARG_STRING, &a->name,
       detach ? "the attachment's name (instead of VM and device)"
              : "the attachment's name (default VM-NAME)",
       "N"},
      {"wait", 0, 0, G_OPTION_ARG_NONE, &a->wait,
       detach ? "wait until the device is gone" : "wait until Attached (exit 1 if Failed)", NULL},
      {"timeout", 0, 0, G_OPTION_ARG_INT, &a->timeout, "seconds --wait waits (default 60)", "S"},
      {NULL},
  };
  memcpy(entries, e, sizeof(e));
  return entries;
}

/* The device named by --disk / --image / --cluster-image; exactly one. */
static gboolean device_of(const AttachOptions *a, const char *cmd, VmBlockKind *kind,
                          const char **name)
{
  int n = (a->disk != NULL) + (a->image != NULL) + (a->cluster_image != NULL);
  if (n != 1) {
    fprintf(stderr, "vmlet %s: give exactly one of --disk, --image, --cluster-image\n", cmd);
    return FALSE;
  }
  *kind = a->disk ? VM_BLOCK_VIRTUAL_DISK
                  : a->image ? VM_BLOCK_VIRTUAL_IMAGE : VM_BLOCK_CLUSTER_VIRTUAL_IMAGE;
  *name = a->disk ? a->disk : a->image ? a->image : a->cluster_image;
  return TRUE;
}

int vmlet_cmd_attach(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_auto(AttachOptions) a = {.timeout = 60};
  g_autoptr(GOptionContext) ctx = g_option_context_new(
      "VM --disk NAME|--image NAME|--cluster-image NAME - hot-plug a disk or image (vmbda)");
  remote_add_entries(ctx, &o, attach_entries(&a, FALSE));
  if (!remote_parse(ctx, "attach", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  VmBlockKind kind;
  const char *block = NULL;
  if (!device_of(&a, "attach", &kind, &block) || a.timeout <= 0)
    return EXIT_USAGE;
  g_autofree char *name = a.name ? g_strdup(a.name) : g_strdup_printf("%s-%s", argv[1], block);
  if (!vmlet_is_dns1123_label(name) || !vmlet_is_dns1123_label(block) ||
      !vmlet_is_dns1123_label(argv[1])) {
    fprintf(stderr, "vmlet attach: \"%s\" is not a valid name (DNS-1123 label, at most 63 "
                    "characters)%s\n", name, a.name ? "" : "; give one with --name");
    return EXIT_USAGE;
  }
  g_autoptr(VmletClient) c = remote_open("attach", &o);
  if (!c)
    return 1;
  g_autoptr(VmletAttachment) att = vmlet_attachment_new(o.namespace, name, argv[1], kind, block);
  g_autoptr(JsonNode) manifest = vmlet_attachment_manifest(att);
  g_autofree char *body = json_to_string(manifest, FALSE);
  int rc = remote_put_vmbda("attach", c, o.namespace, name, body);
  if (rc)
    return rc;
  return a.wait ? wait_for("attach", c, o.namespace, name, FALSE, (guint)a.timeout) : 0;
}

/* The attachment of vm that plugs kind/block, found in the list. */
static char *find_attachment(VmletClient *c, const char *ns, const char *vm, VmBlockKind kind,
                             const char *block, int *rc)
{
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachineblockdeviceattachments",
                                          ns);
  g_autoptr(JsonNode) list = NULL;
  *rc = remote_call("detach", c, "GET", path, NULL, 200, &list);
  if (*rc)
    return NULL;
  JsonObject *lo = json_node_get_object(list);
  JsonArray *items = json_object_has_member(lo, "items") ? json_object_get_array_member(lo, "items")
                                                         : NULL;
  for (guint i = 0; items && i < json_array_get_length(items); i++) {
    JsonObject *it = json_array_get_object_element(items, i);
    JsonObject *spec = json_object_get_object_member(it, "spec");
    if (g_strcmp0(remote_str(spec, "virtualMachineName", NULL), vm) == 0 &&
        g_strcmp0(remote_str(spec, "blockDeviceRef", "kind"), vm_block_kind_name(kind)) == 0 &&
        g_strcmp0(remote_str(spec, "blockDeviceRef", "name"), block) == 0)
      return g_strdup(remote_str(it, "metadata", "name"));
  }
  fprintf(stderr, "vmlet detach: no VirtualMachineBlockDeviceAttachment attaches %s \"%s\" to "
                  "VirtualMachine \"%s\" in namespace \"%s\"\n",
          vm_block_kind_name(kind), block, vm, ns);
  *rc = 1;
  return NULL;
}

int vmlet_cmd_detach(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_auto(AttachOptions) a = {.timeout = 60};
  g_autoptr(GOptionContext) ctx = g_option_context_new(
      "VM --disk NAME|--image NAME|--cluster-image NAME, or --name N - detach (delete the vmbda)");
  remote_add_entries(ctx, &o, attach_entries(&a, TRUE));
  if (!remote_parse(ctx, "detach", &argc, &argv, a.name ? 0 : 0, 1))
    return EXIT_USAGE;
  if (a.timeout <= 0)
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = remote_open("detach", &o);
  if (!c)
    return 1;
  g_autofree char *name = NULL;
  if (a.name) {
    if (argc > 1 || a.disk || a.image || a.cluster_image) {
      fprintf(stderr, "vmlet detach: --name N names the attachment; give no VM or device\n");
      return EXIT_USAGE;
    }
    name = g_strdup(a.name);
  } else {
    VmBlockKind kind;
    const char *block = NULL;
    if (argc != 2) {
      fprintf(stderr, "vmlet detach: expected a VM name (or --name N)\n");
      return EXIT_USAGE;
    }
    if (!device_of(&a, "detach", &kind, &block))
      return EXIT_USAGE;
    int rc = 0;
    name = find_attachment(c, o.namespace, argv[1], kind, block, &rc);
    if (!name)
      return rc;
  }
  g_autofree char *path = g_strdup_printf(
      API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", o.namespace, name);
  int rc = remote_call("detach", c, "DELETE", path, NULL, 200, NULL);
  if (rc)
    return rc;
  printf("virtualmachineblockdeviceattachment.virtualization.deckhouse.io \"%s\" deleted\n", name);
  fflush(stdout);
  return a.wait ? wait_for("detach", c, o.namespace, name, TRUE, (guint)a.timeout) : 0;
}
