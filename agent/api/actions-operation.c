/* VirtualMachineOperations through the API: the request checked, the operation's name as
 * a Kubernetes API server gives it (metadata.name, or metadata.generateName and five
 * random characters; else DVP's "<type>-<vm>-<uid>"), then the VM records and acts on it. */
#include "actions.h"

#include <string.h>

#include "actions-internal.h"
#include "errors.h"
#include "jsonval.h"
#include "meta.h"

/* apiserver's names.SimpleNameGenerator: 5 characters without vowels (no words), the
 * prefix cut to 58 so that the name fits the 63 of a label. */
#define GENERATED_SUFFIX_LEN 5
#define GENERATED_PREFIX_MAX (63 - GENERATED_SUFFIX_LEN)
static const char suffix_alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
/* A collision among 27^5 names is rare; the API server retries as often. */
#define GENERATE_ATTEMPTS 8

static char *generate_name(const char *prefix)
{
  GString *name = g_string_new_len(prefix, (gssize)MIN(strlen(prefix), GENERATED_PREFIX_MAX));
  for (int i = 0; i < GENERATED_SUFFIX_LEN; i++)
    g_string_append_c(name, suffix_alphabet[g_random_int_range(0, sizeof(suffix_alphabet) - 1)]);
  return g_string_free(name, FALSE);
}

static gboolean taken(VmletManager *mgr, const char *ns, const char *name)
{
  g_autoptr(JsonNode) op = vmlet_manager_operation(mgr, ns, name);
  return op != NULL;
}

/* The name metadata asks for (NULL: none, the VM names it); its problems go to d. As in
 * Kubernetes a name given wins over generateName; a generated one is drawn again while it
 * is taken. The name must be a DNS-1123 label: the API's paths reach nothing else. */
static char *requested_name(VmletDiag *d, VmletManager *mgr, const char *ns, JsonObject *root)
{
  JsonObject *md = NULL;
  const char *name = NULL, *prefix = NULL, *md_ns = NULL;
  if (!jv_get_object(d, root, "", "metadata", JV_OPTIONAL, &md))
    return NULL;
  jv_get_string(d, md, "metadata", "name", JV_OPTIONAL, 253, &name);
  jv_get_string(d, md, "metadata", "generateName", JV_OPTIONAL, 253, &prefix);
  if (jv_get_string(d, md, "metadata", "namespace", JV_OPTIONAL, 253, &md_ns) &&
      !g_str_equal(md_ns, ns))
    vmlet_diag_error(d, "metadata.namespace", "\"%s\" is not the request's namespace \"%s\"",
                     md_ns, ns);
  g_autofree char *chosen = name ? g_strdup(name) : prefix ? generate_name(prefix) : NULL;
  for (int i = 1; !name && chosen && i < GENERATE_ATTEMPTS && taken(mgr, ns, chosen); i++) {
    g_free(chosen);
    chosen = generate_name(prefix);
  }
  if (chosen && !vmlet_is_dns1123_label(chosen))
    vmlet_diag_error(d, name ? "metadata.name" : "metadata.generateName",
                     "\"%s\" does not make a DNS-1123 label (lower-case letters, digits and "
                     "'-', at most 63)", chosen);
  return g_steal_pointer(&chosen);
}

typedef struct {
  const char *vm_name;
  guint type;
  gboolean force;
  GHashTable *selector;
} OpSpec;

static void parse_spec(VmletDiag *d, JsonObject *root, OpSpec *s)
{
  JsonObject *spec = NULL, *migrate = NULL;
  /* VmOpType's order. */
  static const char *const types[] = {"Start", "Stop", "Restart", "Evict", "Migrate", NULL};
  if (!jv_get_object(d, root, "", "spec", JV_REQUIRED, &spec))
    return;
  vmlet_get_name(d, spec, "spec", "virtualMachineName", JV_REQUIRED, &s->vm_name);
  jv_get_enum(d, spec, "spec", "type", JV_REQUIRED, types, &s->type);
  jv_get_bool(d, spec, "spec", "force", JV_OPTIONAL, &s->force);
  /* DVP's Migrate: spec.migrate.nodeSelector (kubernetes.io/hostname names a node). */
  if (jv_get_object(d, spec, "spec", "migrate", JV_OPTIONAL, &migrate))
    jv_get_string_map(d, migrate, "spec.migrate", "nodeSelector", 64, 253, &s->selector);
}

JsonNode *vmlet_action_create_operation(VmletManager *mgr, const char *ns, GBytes *body,
                                        GError **error)
{
  g_autoptr(JsonNode) root = vmlet_action_parse_json("request", body, error);
  if (!root)
    return NULL;
  g_autoptr(VmletDiag) d = vmlet_diag_new("VirtualMachineOperation");
  OpSpec s = {0};
  parse_spec(d, json_node_get_object(root), &s);
  g_autoptr(GHashTable) selector = s.selector;
  g_autofree char *name = requested_name(d, mgr, ns, json_node_get_object(root));
  g_autoptr(GError) local = NULL;
  if (!vmlet_diag_check(d, &local)) {
    vmlet_action_fail(error, VMLET_ERROR_INVALID, local);
    return NULL;
  }
  /* A create of a name in use, as a Kubernetes API server answers it. */
  if (name && taken(mgr, ns, name)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_EXISTS,
                "%s \"%s\" already exists in namespace \"%s\"", VMLET_RESOURCE_OPERATIONS, name,
                ns);
    return NULL;
  }
  VmletVm *vm = vmlet_manager_lookup(mgr, ns, s.vm_name);
  if (!vm) {
    vmlet_api_set_not_found(error, VMLET_RESOURCE_VMS, ns, s.vm_name);
    return NULL;
  }
  /* Created even when refused: the operation says Failed and why, like DVP's. */
  g_autofree char *uid = s.type == VM_OP_EVICT || s.type == VM_OP_MIGRATE
                             ? vmlet_vm_migrate(vm, (VmOpType)s.type, selector, s.force)
                             : vmlet_vm_operate(vm, (VmOpType)s.type, s.force);
  if (name)
    vmlet_vm_name_operation(vm, uid, name);
  /* It is the newest operation of the VM. */
  g_autoptr(JsonNode) ops = vmlet_vm_operations_json(vm);
  JsonArray *arr = json_node_get_array(ops);
  return json_node_copy(json_array_get_element(arr, json_array_get_length(arr) - 1));
}

gboolean vmlet_action_delete_operation(VmletManager *mgr, const char *ns, const char *name,
                                       GError **error)
{
  if (vmlet_manager_delete_operation(mgr, ns, name))
    return TRUE;
  vmlet_api_set_not_found(error, VMLET_RESOURCE_OPERATIONS, ns, name);
  return FALSE;
}
