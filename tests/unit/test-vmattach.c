/* Hotplug in process (runtime-harness.h): VirtualMachineBlockDeviceAttachment drop-ins
 * against a fake QEMU whose QOM and block nodes change with what it is sent, as QEMU's do:
 * the attach sequence and its rollback, the detach and its two DEVICE_DELETED, and what a
 * restarted vmletd finds in QEMU (nothing plugged twice, nothing half-done left). */
#include <string.h>

#include "hotplug.h"
#include "objects.h"
#include "qemu-devices.h"
#include "runtime-harness.h"

/* ---- a QEMU's peripherals and block nodes, kept by the fake's hooks ---- */

typedef struct {
  FakeQmp *fq;
  GHashTable *parents; /* qdev id -> "child<type>" */
  GHashTable *buses;   /* qdev id -> parent_bus */
  GHashTable *nodes;   /* node names */
  gboolean refuse_device_add;
} Qom;

/* What qom-list, qom-get parent_bus and query-named-block-nodes answer now. */
static void qom_publish(Qom *q)
{
  g_autoptr(GString) list = g_string_new("{\"return\": [{\"name\": \"type\", \"type\": \"string\"}");
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, q->parents);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    g_string_append_printf(list, ", {\"name\": \"%s\", \"type\": \"%s\"}", (char *)k, (char *)v);
    const char *bus = g_hash_table_lookup(q->buses, k);
    g_autofree char *match = g_strdup_printf(
        "{\"path\": \"/machine/peripheral/%s\", \"property\": \"parent_bus\"}", (char *)k);
    g_autofree char *reply = g_strdup_printf("{\"return\": \"%s\"}", bus);
    fake_qmp_reply(q->fq, "qom-get", match, reply);
  }
  g_string_append(list, "]}");
  fake_qmp_reply(q->fq, "qom-list", "{\"path\": \"/machine/peripheral\"}", list->str);
  g_autoptr(GString) nodes = g_string_new("{\"return\": [");
  g_hash_table_iter_init(&it, q->nodes);
  for (gboolean first = TRUE; g_hash_table_iter_next(&it, &k, NULL); first = FALSE)
    g_string_append_printf(nodes, "%s{\"node-name\": \"%s\"}", first ? "" : ", ", (char *)k);
  g_string_append(nodes, "]}");
  fake_qmp_reply(q->fq, "query-named-block-nodes", NULL, nodes->str);
}

static void qom_add(Qom *q, const char *id, const char *type, const char *bus)
{
  g_hash_table_replace(q->parents, g_strdup(id), g_strdup_printf("child<%s>", type));
  g_hash_table_replace(q->buses, g_strdup(id), g_strdup(bus));
}

static void on_command(FakeQmp *fq, const char *command, JsonObject *args, gpointer data)
{
  Qom *q = data;
  if (g_str_equal(command, "blockdev-add")) {
    g_hash_table_add(q->nodes, g_strdup(json_object_get_string_member(args, "node-name")));
  } else if (g_str_equal(command, "blockdev-del")) {
    g_hash_table_remove(q->nodes, json_object_get_string_member(args, "node-name"));
  } else if (g_str_equal(command, "device_add") && !q->refuse_device_add) {
    const char *bus = json_object_get_string_member(args, "bus");
    g_autofree char *parent = g_strdup_printf("/machine/peripheral/%s/%s", bus, bus);
    qom_add(q, json_object_get_string_member(args, "id"),
            json_object_get_string_member(args, "driver"), parent);
  }
  qom_publish(q);
}

/* The guest has let go of a device: gone from QOM, and QEMU's event for the device. */
static void qom_unplug(Qom *q, const char *id)
{
  g_hash_table_remove(q->parents, id);
  g_hash_table_remove(q->buses, id);
  qom_publish(q);
  g_autofree char *device =
      g_strdup_printf("{\"device\": \"%s\", \"path\": \"/machine/peripheral/%s\"}", id, id);
  g_assert_true(fake_qmp_emit(q->fq, "DEVICE_DELETED", device));
}

static void qom_free(Qom *q)
{
  g_hash_table_unref(q->parents);
  g_hash_table_unref(q->buses);
  g_hash_table_unref(q->nodes);
  g_free(q);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Qom, qom_free)

/* VM "a" as its argv builds it: 20 root ports, the boot disk on pci.1, controllers on
 * pci.2-5 (so pci.6 is the first free one), devices elsewhere. */
static Qom *qom_new(FakeQmp *fq)
{
  Qom *q = g_new0(Qom, 1);
  q->fq = fq;
  q->parents = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  q->buses = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  q->nodes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 1; i <= 20; i++) {
    g_autofree char *id = g_strdup_printf("pci.%u", i);
    qom_add(q, id, "pcie-root-port", "/machine/q35/pcie.0");
  }
  const char *const on_ports[][2] = {{"vd-a-root", "virtio-blk-pci"},
                                     {"scsi0", "virtio-scsi-pci"},
                                     {"virtio-serial0", "virtio-serial-pci"},
                                     {"usb", "qemu-xhci"},
                                     {"balloon0", "virtio-balloon-pci"}};
  for (guint i = 0; i < G_N_ELEMENTS(on_ports); i++) {
    g_autofree char *bus = g_strdup_printf("/machine/peripheral/pci.%u/pci.%u", i + 1, i + 1);
    qom_add(q, on_ports[i][0], on_ports[i][1], bus);
  }
  qom_add(q, "video0", "VGA", "/machine/q35/pcie.0");
  qom_add(q, "input0", "usb-tablet", "/machine/peripheral/usb/usb-bus.0");
  g_hash_table_add(q->nodes, g_strdup("vd-a-root-file"));
  g_hash_table_add(q->nodes, g_strdup("vd-a-root-fmt"));
  qom_publish(q);
  fake_qmp_on_command(fq, NULL, on_command, q);
  return q;
}

/* ---- the node ---- */

static RtNode *node_with_vm(Qom **qom)
{
  RtNode *n = rt_node_new();
  rt_write_vm(n, "a", NULL);
  rt_write_disk(n, "data");
  *qom = qom_new(rt_fake(n, "a"));
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  g_assert_true(rt_wait_command(rt_fake(n, "a"), "query-named-block-nodes", 1));
  rt_spin(20);
  return n;
}

typedef struct {
  RtNode *node;
  const char *phase; /* NULL: gone */
} AttWait;

static char *att_phase(RtNode *n, char **reason, char **message)
{
  g_autoptr(JsonNode) att = vmlet_manager_attachment(rt_manager(n), "default", "att-data");
  if (!att)
    return NULL;
  JsonObject *st = json_object_get_object_member(json_node_get_object(att), "status");
  JsonObject *cond = json_array_get_object_element(json_object_get_array_member(st, "conditions"),
                                                   0);
  if (reason)
    *reason = g_strdup(json_object_get_string_member(cond, "reason"));
  if (message)
    *message = json_object_has_member(cond, "message")
                   ? g_strdup(json_object_get_string_member(cond, "message")) : NULL;
  return g_strdup(json_object_get_string_member(st, "phase"));
}

static gboolean att_reached(gpointer data)
{
  AttWait *w = data;
  g_autofree char *phase = att_phase(w->node, NULL, NULL);
  return g_strcmp0(phase, w->phase) == 0;
}

static gboolean wait_att(RtNode *n, const char *phase)
{
  AttWait w = {n, phase};
  return rt_spin_until(att_reached, &w);
}

/* The hotplug commands in the log, with their arguments. */
static GPtrArray *hotplug_commands(FakeQmp *fq)
{
  static const char *const kinds[] = {"blockdev-add", "blockdev-del", "device_add",
                                      "device_del", NULL};
  GPtrArray *out = g_ptr_array_new();
  GPtrArray *log = fake_qmp_log(fq);
  for (guint i = 0; i < log->len; i++) {
    FakeQmpCommand *c = log->pdata[i];
    if (g_strv_contains(kinds, c->command))
      g_ptr_array_add(out, c);
  }
  return out;
}

static void assert_json_equal(const char *got, JsonObject *want)
{
  g_autofree char *want_text = qdev_to_string(want);
  g_autoptr(JsonNode) a = json_from_string(got, NULL), b = json_from_string(want_text, NULL);
  g_test_message("sent %s", got);
  if (!json_node_equal(a, b))
    g_assert_cmpstr(got, ==, want_text);
}

/* The disk att-data plugs, as plan.c and qemu-devices.c build it for a boot. */
static VmPlanDisk *expected_disk(RtNode *n, guint slot)
{
  g_autofree char *path = g_build_filename(rt_root(n), "etc", "disks.d", "data.json", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_load_file(path, FALSE, NULL, &error);
  g_assert_no_error(error);
  VmletObject *o = objs->pdata[0];
  VmPlanDisk *disk = vm_plan_attachment_disk(vmlet_manager_get_node(rt_manager(n)), o->block,
                                             "att-data");
  disk->slot = slot;
  return disk;
}

static void attach(RtNode *n)
{
  rt_write_attachment(n, "att-data", "a", "data");
  rt_reload(n);
  g_assert_true(wait_att(n, "Attached"));
}

/* blockdev-add (storage), blockdev-add (format), device_add, with the boot-time builders'
 * properties, on the first free root port; Attached, shown on the VM and kept in its
 * record. */
static void test_attach(void)
{
  g_autoptr(Qom) q = NULL;
  g_autoptr(RtNode) n = node_with_vm(&q);
  FakeQmp *fq = rt_fake(n, "a");
  fake_qmp_clear_log(fq);
  attach(n);
  g_autoptr(GPtrArray) sent = hotplug_commands(fq);
  g_assert_cmpuint(sent->len, ==, 3);
  g_autoptr(VmPlanDisk) disk = expected_disk(n, 6);
  g_autofree char *bus = vm_plan_disk_bus(disk);
  g_assert_cmpstr(bus, ==, "pci.6");
  g_autoptr(JsonObject) storage = qdev_blockdev_storage(disk);
  g_autoptr(JsonObject) format = qdev_blockdev_format(disk);
  g_autoptr(JsonObject) device = qdev_disk_device(disk, bus);
  const char *const names[] = {"blockdev-add", "blockdev-add", "device_add"};
  JsonObject *const props[] = {storage, format, device};
  for (guint i = 0; i < 3; i++) {
    FakeQmpCommand *c = sent->pdata[i];
    g_assert_cmpstr(c->command, ==, names[i]);
    assert_json_equal(c->arguments, props[i]);
  }
  /* What the builders make of it, said plainly once: never in the boot order. */
  g_assert_cmpstr(json_object_get_string_member(device, "driver"), ==, "virtio-blk-pci");
  g_assert_cmpstr(json_object_get_string_member(device, "id"), ==, "vd-data");
  g_assert_false(json_object_has_member(device, "bootindex"));
  g_autofree char *reason = NULL, *message = NULL;
  g_autofree char *phase = att_phase(n, &reason, &message);
  g_assert_cmpstr(phase, ==, "Attached");
  g_assert_cmpstr(reason, ==, "Attached");
  g_autoptr(JsonNode) vm = vmlet_vm_to_json(rt_vm(n, "a"));
  g_autofree char *text = json_to_string(vm, FALSE);
  g_assert_nonnull(strstr(text, "\"virtualMachineBlockDeviceAttachmentName\":\"att-data\""));
  rt_spin(50); /* the record is written just after the change is reported */
  g_autofree char *path = g_build_filename(rt_state_dir(n), "vms", "default.a.json", NULL);
  g_autofree char *record = NULL;
  g_assert_true(g_file_get_contents(path, &record, NULL, NULL));
  g_assert_nonnull(strstr(record, "\"attachment\" : \"att-data\""));
}

/* QEMU refuses device_add: both nodes are deleted again (format first), the attachment is
 * Failed with QEMU's words, and tried again at the next reload. */
static void test_attach_refused(void)
{
  g_autoptr(Qom) q = NULL;
  g_autoptr(RtNode) n = node_with_vm(&q);
  FakeQmp *fq = rt_fake(n, "a");
  q->refuse_device_add = TRUE;
  fake_qmp_reply_error(fq, "device_add", NULL, "GenericError",
                       "Bus 'pci.6' does not support hotplugging");
  fake_qmp_clear_log(fq);
  rt_write_attachment(n, "att-data", "a", "data");
  rt_reload(n);
  g_assert_true(wait_att(n, "Failed"));
  g_autoptr(GPtrArray) sent = hotplug_commands(fq);
  g_autofree char *seq = NULL;
  {
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < sent->len; i++) {
      FakeQmpCommand *c = sent->pdata[i];
      g_string_append_printf(s, "%s %s\n", c->command,
                             g_str_has_prefix(c->command, "blockdev-del") ? c->arguments : "");
    }
    seq = g_string_free(s, FALSE);
  }
  g_assert_cmpstr(seq, ==,
                  "blockdev-add \nblockdev-add \ndevice_add \n"
                  "blockdev-del {\"node-name\":\"vd-data-fmt\"}\n"
                  "blockdev-del {\"node-name\":\"vd-data-file\"}\n");
  g_autofree char *reason = NULL, *message = NULL;
  g_autofree char *phase = att_phase(n, &reason, &message);
  g_assert_cmpstr(phase, ==, "Failed");
  g_assert_cmpstr(reason, ==, "HotplugFailed");
  g_assert_cmpstr(message, ==, "QEMU refused the device (rolled back): device_add: "
                               "GenericError: Bus 'pci.6' does not support hotplugging");
  g_assert_false(g_hash_table_contains(q->nodes, "vd-data-fmt"));
  g_assert_false(g_hash_table_contains(q->nodes, "vd-data-file"));
  g_assert_false(g_hash_table_contains(q->parents, "vd-data"));
  /* A changed drop-in (any reload) is a fresh chance; this time QEMU takes it. */
  q->refuse_device_add = FALSE;
  fake_qmp_reply(fq, "device_add", NULL, "{\"return\": {}}");
  rt_reload(n);
  g_assert_true(wait_att(n, "Attached"));
  g_assert_cmpuint(fake_qmp_count(fq, "device_add"), ==, 2);
}

/* device_del, Terminating until QEMU's DEVICE_DELETED for the device itself (not the one
 * for its virtio backend), then blockdev-del of the format node and of the storage node. */
static void test_detach(void)
{
  g_autoptr(Qom) q = NULL;
  g_autoptr(RtNode) n = node_with_vm(&q);
  FakeQmp *fq = rt_fake(n, "a");
  attach(n);
  fake_qmp_clear_log(fq);
  rt_remove_attachment(n, "att-data");
  rt_reload(n);
  g_assert_true(rt_wait_command(fq, "device_del", 1));
  g_assert_true(wait_att(n, "Terminating"));
  g_assert_cmpstr(((FakeQmpCommand *)fake_qmp_log(fq)->pdata[0])->arguments, ==,
                  "{\"id\":\"vd-data\"}");
  g_assert_true(fake_qmp_emit(fq, "DEVICE_DELETED",
                              "{\"path\": \"/machine/peripheral/vd-data/virtio-backend\"}"));
  rt_spin(50);
  g_autofree char *phase = att_phase(n, NULL, NULL);
  g_assert_cmpstr(phase, ==, "Terminating");
  g_assert_cmpuint(fake_qmp_count(fq, "blockdev-del"), ==, 0);
  qom_unplug(q, "vd-data");
  g_assert_true(wait_att(n, NULL));
  g_autoptr(GPtrArray) sent = hotplug_commands(fq);
  g_assert_cmpuint(sent->len, ==, 3);
  g_assert_cmpstr(((FakeQmpCommand *)sent->pdata[1])->arguments, ==,
                  "{\"node-name\":\"vd-data-fmt\"}");
  g_assert_cmpstr(((FakeQmpCommand *)sent->pdata[2])->arguments, ==,
                  "{\"node-name\":\"vd-data-file\"}");
  g_assert_cmpuint(g_hash_table_size(q->nodes), ==, 2); /* the boot disk's */
}

typedef enum {
  READOPT_RECORDED,   /* the record has the device */
  READOPT_UNRECORDED, /* vmletd died between device_add and writing its record */
  READOPT_NODES_ONLY, /* it died between blockdev-add and device_add */
} Readopt;

/* A restarted vmletd reads QEMU's devices and nodes before it acts. */
static void test_readopt(gconstpointer data)
{
  Readopt how = GPOINTER_TO_INT(data);
  g_autoptr(Qom) q = NULL;
  g_autoptr(RtNode) n = node_with_vm(&q);
  FakeQmp *fq = rt_fake(n, "a");
  attach(n);
  rt_spin(50);
  rt_stop_manager(n);
  g_autofree char *path = g_build_filename(rt_state_dir(n), "vms", "default.a.json", NULL);
  if (how != READOPT_RECORDED) {
    g_autoptr(JsonParser) p = json_parser_new();
    g_assert_true(json_parser_load_from_file(p, path, NULL));
    json_object_remove_member(json_node_get_object(json_parser_get_root(p)), "hotplugged");
    g_autofree char *text = json_to_string(json_parser_get_root(p), TRUE);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
  }
  if (how == READOPT_NODES_ONLY) {
    g_hash_table_remove(q->parents, "vd-data");
    qom_publish(q);
  }
  fake_qmp_clear_log(fq);
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  g_assert_true(wait_att(n, "Attached"));
  rt_spin(50);
  g_autoptr(GPtrArray) sent = hotplug_commands(fq);
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < sent->len; i++)
    g_string_append_printf(s, "%s%s", i ? "," : "", ((FakeQmpCommand *)sent->pdata[i])->command);
  g_autofree char *seq = g_string_free(s, FALSE);
  /* Nothing plugged twice; the nodes left alone first removed, then the attach done. */
  g_assert_cmpstr(seq, ==, how == READOPT_NODES_ONLY
                               ? "blockdev-del,blockdev-del,blockdev-add,blockdev-add,device_add"
                               : "");
  /* Where the device sits: asked by the probe, and again by the adoption of a device the
   * record lacks. */
  guint located = 0;
  GPtrArray *log = fake_qmp_log(fq);
  for (guint i = 0; i < log->len; i++) {
    FakeQmpCommand *c = log->pdata[i];
    located += g_str_equal(c->command, "qom-get") &&
               g_str_equal(c->arguments, "{\"path\":\"/machine/peripheral/vd-data\","
                                         "\"property\":\"parent_bus\"}");
  }
  g_assert_cmpuint(located, ==, how == READOPT_UNRECORDED ? 2 : how == READOPT_RECORDED);
  g_assert_true(g_hash_table_contains(q->parents, "vd-data"));
  g_assert_cmpuint(g_hash_table_size(q->nodes), ==, 4);
  g_assert_cmpuint(rt_standins(n), ==, 1);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/vmattach/attach", test_attach);
  g_test_add_func("/vmattach/attach-refused", test_attach_refused);
  g_test_add_func("/vmattach/detach", test_detach);
  g_test_add_data_func("/vmattach/readopt/recorded", GINT_TO_POINTER(READOPT_RECORDED),
                       test_readopt);
  g_test_add_data_func("/vmattach/readopt/unrecorded", GINT_TO_POINTER(READOPT_UNRECORDED),
                       test_readopt);
  g_test_add_data_func("/vmattach/readopt/nodes-only", GINT_TO_POINTER(READOPT_NODES_ONLY),
                       test_readopt);
  return g_test_run();
}
