/* vmlet apply, create, delete, patch, edit: the commands that change objects in vmletd. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "commands.h"
#include "fileio.h"
#include "jsonval.h"
#include "manifest.h"
#include "meta.h"
#include "remote.h"
#include "resource.h"
#include "yamljson.h"

/* apply and create: the file's objects checked together, then sent one by one (a failure
 * of one does not keep the others from being sent, as with kubectl). */
static int send_manifest(const char *cmd, int argc, char **argv, VmletSendMode mode)
{
  g_auto(RemoteOptions) o = {0};
  g_autofree char *file = NULL;
  GOptionEntry extra[] = {
      {"filename", 'f', 0, G_OPTION_ARG_FILENAME, &file,
       "YAML or JSON, one object or a List (- for stdin)", "FILE"},
      {NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new(
      mode == VMLET_SEND_CREATE ? "-f FILE - create objects through vmletd"
                                : "-f FILE - create or update objects through vmletd");
  g_option_context_set_summary(
      ctx, mode == VMLET_SEND_CREATE
               ? "VirtualMachines, VirtualMachineBlockDeviceAttachments and\n"
                 "VirtualMachineOperations (metadata.name or generateName); one that exists\n"
                 "already is an error. Other kinds are drop-ins. An object without\n"
                 "metadata.namespace goes to -n's namespace."
               : "VirtualMachines and VirtualMachineBlockDeviceAttachments are created or\n"
                 "replaced, VirtualMachineOperations created. Other kinds are drop-ins. An\n"
                 "object without metadata.namespace goes to -n's namespace.");
  remote_add_entries(ctx, &o, extra);
  if (!remote_parse(ctx, cmd, &argc, &argv, 0, 0))
    return EXIT_USAGE;
  if (!file) {
    fprintf(stderr, "vmlet %s: -f FILE is required\n", cmd);
    return EXIT_USAGE;
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) items = vmlet_manifest_load(
      file, o.namespace ? o.namespace : VMLET_DEFAULT_NAMESPACE, &error);
  if (!items) {
    fprintf(stderr, "%s\n", error->message);
    return 1;
  }
  g_autoptr(VmletClient) c = remote_open(cmd, &o);
  if (!c)
    return 1;
  int rc = 0;
  for (guint i = 0; i < items->len; i++)
    if (vmlet_manifest_send(cmd, c, items->pdata[i], mode))
      rc = 1;
  return rc;
}

int vmlet_cmd_apply(int argc, char **argv)
{
  return send_manifest("apply", argc, argv, VMLET_SEND_APPLY);
}

int vmlet_cmd_create(int argc, char **argv)
{
  return send_manifest("create", argc, argv, VMLET_SEND_CREATE);
}

/* kubectl delete TYPE NAME, or a bare NAME for a VM. Deleting a VM stops it, an attachment
 * detaches, an operation of a migration under way cancels the migration (DVP). */
int vmlet_cmd_delete(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("[vm|vmbda|vmop] NAME - delete an object");
  g_option_context_set_summary(ctx, "A VM (one made through vmletd) stops and goes, an attachment "
                                    "is detached, and\nan operation of a migration under way "
                                    "cancels the migration. A bare NAME is a VM.");
  remote_add_entries(ctx, &o, NULL);
  if (!remote_parse(ctx, "delete", &argc, &argv, 1, 2))
    return EXIT_USAGE;
  const VmletResource *r = argc == 3 ? vmlet_resource_lookup(argv[1])
                                     : vmlet_resource_of_kind("VirtualMachine");
  if (!r) {
    fprintf(stderr, "vmlet delete: unknown resource type \"%s\": expected vm, vmbda or vmop\n",
            argv[1]);
    return EXIT_USAGE;
  }
  const char *name = argv[argc - 1];
  g_autoptr(VmletClient) c = remote_open("delete", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/%s/%s", o.namespace, r->plural,
                                          name);
  int rc = remote_call("delete", c, "DELETE", path, NULL, 200, NULL);
  if (rc == 0)
    printf("%s" VMLET_API_GROUP_SUFFIX " \"%s\" deleted\n", r->singular, name);
  return rc;
}

int vmlet_cmd_patch(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autofree char *type = NULL, *patch = NULL;
  GOptionEntry extra[] = {
      {"type", 0, 0, G_OPTION_ARG_STRING, &type, "merge (RFC 7386; the only type)", "TYPE"},
      {"patch", 'p', 0, G_OPTION_ARG_STRING, &patch, "the patch, as JSON", "JSON"},
      {NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("NAME --type merge -p JSON - change a VM");
  remote_add_entries(ctx, &o, extra);
  if (!remote_parse(ctx, "patch", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  if (type && !g_str_equal(type, "merge")) {
    fprintf(stderr, "vmlet patch: --type: expected merge, found \"%s\"\n", type);
    return EXIT_USAGE;
  }
  if (!patch) {
    fprintf(stderr, "vmlet patch: -p JSON is required\n");
    return EXIT_USAGE;
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) check = vmlet_json_parse("-p", patch, -1, &error);
  if (!check) {
    fprintf(stderr, "vmlet patch: %s\n", error->message);
    return 1;
  }
  g_autoptr(VmletClient) c = remote_open("patch", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", o.namespace,
                                          argv[1]);
  g_autoptr(JsonNode) patched = NULL;
  int rc = remote_call("patch", c, "PATCH", path, patch, 200, &patched);
  if (rc)
    return rc;
  printf("virtualmachine.virtualization.deckhouse.io/%s patched\n", argv[1]);
  remote_print_warnings(patched);
  return 0;
}

/* kubectl edit: the VM (metadata and spec, defaults filled in) in $EDITOR; on save it is
 * validated by vmletd and written only when valid. An unchanged file changes nothing. */
int vmlet_cmd_edit(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("NAME - edit a VM in $EDITOR");
  remote_add_entries(ctx, &o, NULL);
  if (!remote_parse(ctx, "edit", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletClient) c = remote_open("edit", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", o.namespace,
                                          argv[1]);
  g_autoptr(JsonNode) vm = NULL;
  int rc = remote_call("edit", c, "GET", path, NULL, 200, &vm);
  if (rc)
    return rc;
  /* What a person edits: the object without its status. */
  JsonObject *obj = json_node_get_object(vm);
  if (json_object_has_member(obj, "status"))
    json_object_remove_member(obj, "status");
  JsonObject *md = json_object_get_object_member(obj, "metadata");
  if (md && json_object_has_member(md, "creationTimestamp"))
    json_object_remove_member(md, "creationTimestamp");
  g_autofree char *before = json_to_string(vm, TRUE);
  g_autofree char *tmp = NULL;
  int fd = g_file_open_tmp("vmlet-edit-XXXXXX.json", &tmp, &error);
  if (fd < 0) {
    fprintf(stderr, "vmlet edit: %s\n", error->message);
    return 1;
  }
  close(fd);
  if (!g_file_set_contents(tmp, before, -1, &error)) {
    fprintf(stderr, "vmlet edit: %s\n", error->message);
    g_unlink(tmp);
    return 1;
  }
  const char *editor = g_getenv("VISUAL") ? g_getenv("VISUAL") : g_getenv("EDITOR");
  g_autofree char *cmd = g_strdup_printf("%s '%s'", editor ? editor : "vi", tmp);
  int editor_rc = system(cmd);
  g_autofree char *after = NULL;
  gsize len = 0;
  gboolean read_ok = editor_rc == 0 && vmlet_read_file_bounded(tmp, VMLET_MAX_DROPIN_BYTES, &after, &len,
                                                        &error);
  g_unlink(tmp);
  if (!read_ok) {
    fprintf(stderr, "vmlet edit: %s\n", error ? error->message : "the editor failed; nothing changed");
    return 1;
  }
  if (g_str_equal(g_strstrip(after), g_strstrip(before))) {
    printf("Edit cancelled, no changes made.\n");
    return 0;
  }
  g_autoptr(JsonNode) edited = NULL;
  if (remote_call("edit", c, "PUT", path, after, 200, &edited)) {
    fprintf(stderr, "vmlet edit: the edit was refused; the VM is unchanged\n");
    return 1;
  }
  printf("virtualmachine.virtualization.deckhouse.io/%s edited\n", argv[1]);
  remote_print_warnings(edited);
  return 0;
}
