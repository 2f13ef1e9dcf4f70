/* The typed QMP monitor (monitor.c) against the scripted fake peer (fake-qmp.h): QEMU's
 * events as typed signals, replies turned into values, and replies of the wrong shape
 * turned into errors, never crashes. */
#include <string.h>

#include <glib/gstdio.h>

#include "fake-qmp.h"
#include "monitor.h"

typedef struct {
  char *dir;
  FakeQmp *fq;
  VmletMonitor *mon;
  GPtrArray *seen; /* char *: one line per signal, in order */
} Fixture;

static gboolean on_deadline(gpointer data)
{
  *(gboolean *)data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Spins until *done (a pointer that becomes non-NULL) or 10 s. */
static void spin_for(gpointer *done)
{
  gboolean late = FALSE;
  guint t = g_timeout_add_seconds(10, on_deadline, &late);
  while (!*done && !late)
    g_main_context_iteration(NULL, TRUE);
  g_assert_false(late);
  g_source_remove(t);
}

static void on_result(GObject *src, GAsyncResult *res, gpointer data)
{
  *(GAsyncResult **)data = g_object_ref(res);
}

static void on_shutdown(VmletMonitor *m, gboolean guest, const char *reason, Fixture *f)
{
  g_ptr_array_add(f->seen, g_strdup_printf("shutdown guest=%d reason=%s", guest, reason));
}

static void on_stop(VmletMonitor *m, Fixture *f)
{
  g_ptr_array_add(f->seen, g_strdup("stop"));
}

static void on_resume(VmletMonitor *m, Fixture *f)
{
  g_ptr_array_add(f->seen, g_strdup("resume"));
}

static void on_device_deleted(VmletMonitor *m, const char *device, const char *path, Fixture *f)
{
  g_ptr_array_add(f->seen, g_strdup_printf("deleted device=%s path=%s",
                                           device ? device : "NULL", path));
}

static void on_migration(VmletMonitor *m, gint status, Fixture *f)
{
  g_ptr_array_add(f->seen, g_strdup_printf("migration %s",
                                           vmlet_migration_status_name(status)));
}

static void on_closed(VmletMonitor *m, const GError *error, Fixture *f)
{
  g_ptr_array_add(f->seen, g_strdup_printf("closed %s", error->message));
}

static void setup(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  f->dir = g_dir_make_tmp("vmlet-mon-XXXXXX", &error);
  g_assert_no_error(error);
  g_autofree char *sock = g_build_filename(f->dir, "qmp.sock", NULL);
  f->fq = fake_qmp_new(sock, &error);
  g_assert_no_error(error);
  GAsyncResult *res = NULL;
  vmlet_monitor_connect_async(sock, NULL, on_result, &res);
  spin_for((gpointer *)&res);
  f->mon = vmlet_monitor_connect_finish(res, &error);
  g_object_unref(res);
  g_assert_no_error(error);
  f->seen = g_ptr_array_new_with_free_func(g_free);
  g_signal_connect(f->mon, "shutdown", G_CALLBACK(on_shutdown), f);
  g_signal_connect(f->mon, "stop", G_CALLBACK(on_stop), f);
  g_signal_connect(f->mon, "resume", G_CALLBACK(on_resume), f);
  g_signal_connect(f->mon, "device-deleted", G_CALLBACK(on_device_deleted), f);
  g_signal_connect(f->mon, "migration", G_CALLBACK(on_migration), f);
  g_signal_connect(f->mon, "closed", G_CALLBACK(on_closed), f);
}

static void teardown(Fixture *f, gconstpointer data)
{
  g_signal_handlers_disconnect_by_data(f->mon, f);
  vmlet_monitor_close(f->mon);
  g_clear_object(&f->mon);
  fake_qmp_free(f->fq);
  /* Cancelled reads finish in the loop. */
  for (int i = 0; i < 10; i++)
    g_main_context_iteration(NULL, FALSE);
  g_rmdir(f->dir);
  g_free(f->dir);
  g_ptr_array_unref(f->seen);
}

static void wait_seen(Fixture *f, guint n)
{
  gboolean late = FALSE;
  guint t = g_timeout_add_seconds(10, on_deadline, &late);
  while (f->seen->len < n && !late)
    g_main_context_iteration(NULL, TRUE);
  g_assert_false(late);
  g_source_remove(t);
}

static char *joined(Fixture *f)
{
  g_ptr_array_add(f->seen, NULL);
  char *s = g_strjoinv("\n", (char **)f->seen->pdata);
  g_ptr_array_remove_index(f->seen, f->seen->len - 1);
  return s;
}

static void test_handshake(Fixture *f, gconstpointer data)
{
  g_assert_cmpstr(vmlet_monitor_get_version(f->mon), ==, "7.2.0");
  g_autofree char *seq = fake_qmp_sequence(f->fq, NULL);
  g_assert_cmpstr(seq, ==, "qmp_capabilities");
}

/* Every event vmlet acts on, in the order QEMU sent them, and one it does not know. */
static void test_events(Fixture *f, gconstpointer data)
{
  const char *const events[][2] = {
      {"SHUTDOWN", "{\"guest\": true, \"reason\": \"guest-shutdown\"}"},
      {"SHUTDOWN", "{\"guest\": false, \"reason\": \"host-qmp-quit\"}"},
      {"STOP", NULL},
      {"BALLOON_CHANGE", "{\"actual\": 67108864}"}, /* unknown to vmlet: no signal */
      {"RESUME", NULL},
      /* The virtio backend's event first, without "device"; then the device's own. */
      {"DEVICE_DELETED", "{\"path\": \"/machine/peripheral/vd-x/virtio-backend\"}"},
      {"DEVICE_DELETED", "{\"device\": \"vd-x\", \"path\": \"/machine/peripheral/vd-x\"}"},
      {"MIGRATION", "{\"status\": \"setup\"}"},
      {"MIGRATION", "{\"status\": \"pre-switchover\"}"},
      {"MIGRATION", "{\"status\": \"completed\"}"},
      {"MIGRATION", "{\"status\": \"postcopy-active\"}"}, /* not used by vmlet: OTHER */
      {"MIGRATION", "{}"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(events); i++)
    g_assert_true(fake_qmp_emit(f->fq, events[i][0], events[i][1]));
  wait_seen(f, G_N_ELEMENTS(events) - 1);
  g_autofree char *got = joined(f);
  g_assert_cmpstr(got, ==,
                  "shutdown guest=1 reason=guest-shutdown\n"
                  "shutdown guest=0 reason=host-qmp-quit\n"
                  "stop\n"
                  "resume\n"
                  "deleted device=NULL path=/machine/peripheral/vd-x/virtio-backend\n"
                  "deleted device=vd-x path=/machine/peripheral/vd-x\n"
                  "migration setup\n"
                  "migration pre-switchover\n"
                  "migration completed\n"
                  "migration other\n"
                  "migration other");
}

static void query_status(Fixture *f, VmletRunStatus *st, GError **error, gboolean *ok)
{
  GAsyncResult *res = NULL;
  vmlet_monitor_query_status(f->mon, NULL, on_result, &res);
  spin_for((gpointer *)&res);
  *ok = vmlet_monitor_query_status_finish(f->mon, res, st, error);
  g_object_unref(res);
}

static void test_query_status(Fixture *f, gconstpointer data)
{
  static const struct {
    const char *status;
    gboolean running;
    VmletRunState want;
  } cases[] = {
      {"prelaunch", FALSE, VMLET_RUN_STATE_PRELAUNCH},
      {"running", TRUE, VMLET_RUN_STATE_RUNNING},
      {"paused", FALSE, VMLET_RUN_STATE_PAUSED},
      {"shutdown", FALSE, VMLET_RUN_STATE_SHUTDOWN},
      {"inmigrate", FALSE, VMLET_RUN_STATE_INMIGRATE},
      {"postmigrate", FALSE, VMLET_RUN_STATE_POSTMIGRATE},
      {"finish-migrate", FALSE, VMLET_RUN_STATE_FINISH_MIGRATE},
      {"io-error", FALSE, VMLET_RUN_STATE_OTHER},
      {"colo-someday", TRUE, VMLET_RUN_STATE_OTHER}, /* a state a newer QEMU may add */
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *reply = g_strdup_printf(
        "{\"return\": {\"status\": \"%s\", \"singlestep\": false, \"running\": %s}}",
        cases[i].status, cases[i].running ? "true" : "false");
    fake_qmp_reply(f->fq, "query-status", NULL, reply);
    VmletRunStatus st = {-1, -1};
    g_autoptr(GError) error = NULL;
    gboolean ok = FALSE;
    query_status(f, &st, &error, &ok);
    g_assert_no_error(error);
    g_assert_true(ok);
    g_assert_cmpint(st.state, ==, cases[i].want);
    g_assert_cmpint(st.running, ==, cases[i].running);
  }
}

typedef enum { Q_STATUS, Q_MACHINE, Q_QOM_LIST, Q_QOM_INT, Q_BLOCK_NODES, Q_CONT } Query;

/* Runs one query; the error it ends with, NULL when it succeeded (*value: its text). */
static GError *run_query(Fixture *f, Query q, char **value)
{
  GAsyncResult *res = NULL;
  GError *error = NULL;
  *value = NULL;
  switch (q) {
  case Q_STATUS: {
    VmletRunStatus st;
    gboolean ok = FALSE;
    query_status(f, &st, &error, &ok);
    if (ok)
      *value = g_strdup(vmlet_run_state_name(st.state));
    return error;
  }
  case Q_MACHINE:
    vmlet_monitor_query_machine(f->mon, NULL, on_result, &res);
    break;
  case Q_QOM_LIST:
    vmlet_monitor_qom_list(f->mon, "/machine/peripheral", NULL, on_result, &res);
    break;
  case Q_QOM_INT:
    vmlet_monitor_qom_get(f->mon, "/machine/peripheral/cd", "scsi-id", NULL, on_result, &res);
    break;
  case Q_BLOCK_NODES:
    vmlet_monitor_query_block_nodes(f->mon, NULL, on_result, &res);
    break;
  case Q_CONT:
    vmlet_monitor_cont(f->mon, NULL, on_result, &res);
    break;
  }
  spin_for((gpointer *)&res);
  switch (q) {
  case Q_MACHINE:
    *value = vmlet_monitor_query_machine_finish(f->mon, res, &error);
    break;
  case Q_QOM_LIST:
  case Q_BLOCK_NODES: {
    GHashTable *t = q == Q_QOM_LIST ? vmlet_monitor_qom_list_finish(f->mon, res, &error)
                                    : vmlet_monitor_query_block_nodes_finish(f->mon, res, &error);
    if (t) {
      *value = g_strdup_printf("%u", g_hash_table_size(t));
      g_hash_table_unref(t);
    }
    break;
  }
  case Q_QOM_INT: {
    gint64 v = 0;
    if (vmlet_monitor_qom_get_int_finish(f->mon, res, &v, &error))
      *value = g_strdup_printf("%" G_GINT64_FORMAT, v);
    break;
  }
  case Q_CONT:
    if (vmlet_monitor_finish(f->mon, res, &error))
      *value = g_strdup("ok");
    break;
  case Q_STATUS:
    break;
  }
  g_object_unref(res);
  return error;
}

/* Each query with a good reply gives its value; with a reply of the wrong shape, a protocol
 * error; QEMU's own errors keep their class. The connection stays usable throughout. */
static void test_reply_shapes(Fixture *f, gconstpointer data)
{
  static const struct {
    Query q;
    const char *command, *reply;
    const char *value; /* NULL: an error is expected */
    gint code;
  } cases[] = {
      {Q_MACHINE, "qom-get", "{\"return\": \"pc-q35-7.2-machine\"}", "pc-q35-7.2", 0},
      {Q_MACHINE, "qom-get", "{\"return\": \"pc-i440fx-7.2-machine\"}", "pc-i440fx-7.2", 0},
      {Q_MACHINE, "qom-get", "{\"return\": \"q35\"}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_MACHINE, "qom-get", "{\"return\": 35}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_MACHINE, "qom-get", "{\"return\": {\"type\": \"q35\"}}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_STATUS, "query-status", "{\"return\": \"running\"}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_STATUS, "query-status", "{\"return\": {\"running\": true}}", NULL,
       VMLET_QMP_ERROR_PROTOCOL},
      {Q_STATUS, "query-status", "{\"return\": {\"status\": 7}}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_STATUS, "query-status", "{\"neither\": 1}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_QOM_LIST, "qom-list",
       "{\"return\": [{\"name\": \"pci.1\", \"type\": \"child<pcie-root-port>\"}, "
       "{\"name\": 3}, 7, {\"name\": \"type\", \"type\": \"string\"}]}",
       "2", 0}, /* malformed entries are skipped */
      {Q_QOM_LIST, "qom-list", "{\"return\": {}}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_BLOCK_NODES, "query-named-block-nodes",
       "{\"return\": [{\"node-name\": \"vd-x-fmt\"}, {\"node-name\": \"vd-x-file\"}]}", "2", 0},
      {Q_BLOCK_NODES, "query-named-block-nodes", "{\"return\": null}", NULL,
       VMLET_QMP_ERROR_PROTOCOL},
      {Q_QOM_INT, "qom-get", "{\"return\": 3}", "3", 0},
      {Q_QOM_INT, "qom-get", "{\"return\": \"3\"}", NULL, VMLET_QMP_ERROR_PROTOCOL},
      {Q_CONT, "cont", "{\"return\": {}}", "ok", 0},
      {Q_CONT, "cont", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}", NULL,
       VMLET_QMP_ERROR_COMMAND},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    fake_qmp_reply(f->fq, cases[i].command, NULL, cases[i].reply);
    g_autofree char *value = NULL;
    g_autoptr(GError) error = run_query(f, cases[i].q, &value);
    g_test_message("case %zu: %s -> %s / %s", i, cases[i].reply, value,
                   error ? error->message : "no error");
    if (cases[i].value) {
      g_assert_no_error(error);
      g_assert_cmpstr(value, ==, cases[i].value);
    } else {
      g_assert_error(error, VMLET_QMP_ERROR, cases[i].code);
      g_assert_null(value);
    }
    g_assert_false(vmlet_monitor_is_closed(f->mon));
  }
}

static void test_error_classes(Fixture *f, gconstpointer data)
{
  /* QEMU 7.2's words for a device and a node that are not there. */
  fake_qmp_reply_error(f->fq, "device_del", NULL, "DeviceNotFound", "Device 'vd-x' not found");
  fake_qmp_reply_error(f->fq, "blockdev-del", NULL, "GenericError",
                       "Failed to find node with node-name='vd-x-fmt'");
  GAsyncResult *res = NULL;
  vmlet_monitor_device_del(f->mon, "vd-x", NULL, on_result, &res);
  spin_for((gpointer *)&res);
  g_autoptr(GError) error = NULL;
  g_assert_false(vmlet_monitor_finish(f->mon, res, &error));
  g_clear_object(&res);
  g_assert_true(vmlet_monitor_error_is_device_not_found(error));
  g_assert_false(vmlet_monitor_error_is_node_not_found(error));
  g_assert_cmpstr(error->message, ==, "device_del: DeviceNotFound: Device 'vd-x' not found");
  g_clear_error(&error);
  vmlet_monitor_blockdev_del(f->mon, "vd-x-fmt", NULL, on_result, &res);
  spin_for((gpointer *)&res);
  g_assert_false(vmlet_monitor_finish(f->mon, res, &error));
  g_clear_object(&res);
  g_assert_true(vmlet_monitor_error_is_node_not_found(error));
  g_assert_false(vmlet_monitor_error_is_device_not_found(error));
  /* The arguments as QEMU's schema names them. */
  GPtrArray *log = fake_qmp_log(f->fq);
  g_assert_cmpuint(log->len, ==, 3);
  FakeQmpCommand *del = log->pdata[1], *bdel = log->pdata[2];
  g_assert_cmpstr(del->arguments, ==, "{\"id\":\"vd-x\"}");
  g_assert_cmpstr(bdel->arguments, ==, "{\"node-name\":\"vd-x-fmt\"}");
}

/* QEMU hangs up with a command unanswered: the command fails as closed, "closed" once. */
static void test_hang_up(Fixture *f, gconstpointer data)
{
  fake_qmp_withhold(f->fq, "cont", NULL);
  GAsyncResult *res = NULL;
  vmlet_monitor_cont(f->mon, NULL, on_result, &res);
  g_assert_true(fake_qmp_emit(f->fq, "STOP", NULL));
  wait_seen(f, 1);
  g_assert_cmpuint(fake_qmp_count(f->fq, "cont"), ==, 1);
  fake_qmp_disconnect(f->fq);
  spin_for((gpointer *)&res);
  g_autoptr(GError) error = NULL;
  g_assert_false(vmlet_monitor_finish(f->mon, res, &error));
  g_clear_object(&res);
  g_assert_error(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED);
  wait_seen(f, 2);
  g_assert_cmpstr(f->seen->pdata[1], ==, "closed QEMU closed the QMP connection");
  g_assert_true(vmlet_monitor_is_closed(f->mon));
  g_assert_cmpuint(f->seen->len, ==, 2);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add("/monitor/handshake", Fixture, NULL, setup, test_handshake, teardown);
  g_test_add("/monitor/events", Fixture, NULL, setup, test_events, teardown);
  g_test_add("/monitor/query-status", Fixture, NULL, setup, test_query_status, teardown);
  g_test_add("/monitor/reply-shapes", Fixture, NULL, setup, test_reply_shapes, teardown);
  g_test_add("/monitor/error-classes", Fixture, NULL, setup, test_error_classes, teardown);
  g_test_add("/monitor/hang-up", Fixture, NULL, setup, test_hang_up, teardown);
  return g_test_run();
}
