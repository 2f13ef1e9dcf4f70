/* The QMP client against real QEMU (paused, TCG) and against hostile socket peers. */
#include <signal.h>
#include <sys/prctl.h>
#include <string.h>

#include <glib/gstdio.h>

#include "qmp.h"

typedef struct {
  GMainLoop *loop;
  GPtrArray *events; /* event names in arrival order */
  GError *closed_error;
  gboolean closed;
  int replies;
} Ctx;

static gboolean on_timeout(gpointer data)
{
  g_error("test timed out");
  return G_SOURCE_REMOVE;
}

static void spin_until(gboolean *flag)
{
  guint t = g_timeout_add_seconds(30, on_timeout, NULL);
  while (!*flag)
    g_main_context_iteration(NULL, TRUE);
  g_source_remove(t);
}

static void on_connect(GObject *src, GAsyncResult *res, gpointer data)
{
  gpointer *out = data;
  GError *error = NULL;
  out[0] = vmlet_qmp_connect_finish(res, &error);
  out[1] = error;
  out[2] = GINT_TO_POINTER(1);
}

static VmletQmp *connect_once(const char *path, GError **error)
{
  gpointer out[3] = {NULL, NULL, NULL};
  vmlet_qmp_connect_async(path, NULL, on_connect, out);
  while (!out[2])
    g_main_context_iteration(NULL, TRUE);
  if (out[1])
    g_propagate_error(error, out[1]);
  return out[0];
}

/* QEMU creates its socket file at bind() and accepts only after listen(): a connect in
 * between is refused. Retry briefly, as vmletd does (vm.c). */
static VmletQmp *connect_qemu(const char *path, GError **error)
{
  for (int attempt = 0;; attempt++) {
    g_autoptr(GError) local = NULL;
    VmletQmp *qmp = connect_once(path, &local);
    if (qmp || attempt == 500 ||
        !g_error_matches(local, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED)) {
      if (local)
        g_propagate_error(error, g_steal_pointer(&local));
      return qmp;
    }
    g_usleep(10000);
  }
}

static void on_execute(GObject *src, GAsyncResult *res, gpointer data)
{
  gpointer *out = data;
  GError *error = NULL;
  out[0] = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  out[1] = error;
  out[2] = GINT_TO_POINTER(1);
}

static JsonNode *execute_sync(VmletQmp *qmp, const char *cmd, JsonObject *args, GError **error)
{
  gpointer out[3] = {NULL, NULL, NULL};
  vmlet_qmp_execute_async(qmp, cmd, args, NULL, on_execute, out);
  while (!out[2])
    g_main_context_iteration(NULL, TRUE);
  if (out[1])
    g_propagate_error(error, out[1]);
  return out[0];
}

static void on_event(VmletQmp *qmp, const char *name, JsonObject *data, gint64 ts, Ctx *ctx)
{
  g_assert_cmpint(ts, >, 0);
  g_ptr_array_add(ctx->events, g_strdup(name));
}

static void on_closed(VmletQmp *qmp, const GError *error, Ctx *ctx)
{
  g_assert_false(ctx->closed); /* exactly once */
  ctx->closed = TRUE;
  ctx->closed_error = g_error_copy(error);
}

typedef struct {
  GSubprocess *proc;
  char *dir;
  char *socket;
} Qemu;

static void die_with_parent(gpointer data)
{
  prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static gboolean start_qemu(Qemu *q)
{
  g_autofree char *bin = g_find_program_in_path("qemu-system-x86_64");
  if (!bin) {
    g_test_skip("qemu-system-x86_64 is not installed");
    return FALSE;
  }
  q->dir = g_dir_make_tmp("vmlet-qmp-XXXXXX", NULL);
  q->socket = g_build_filename(q->dir, "qmp.sock", NULL);
  g_autofree char *qmp_arg = g_strdup_printf("unix:%s,server=on,wait=off", q->socket);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(
      G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  /* A failing assertion aborts the test before stop_qemu: take QEMU down with us. */
  g_subprocess_launcher_set_child_setup(launcher, die_with_parent, NULL, NULL);
  q->proc = g_subprocess_launcher_spawn(launcher, &error, bin, "-machine", "q35", "-accel",
                                        "tcg", "-m", "64", "-S", "-nodefaults",
                                        "-no-user-config", "-display", "none", "-qmp", qmp_arg,
                                        NULL);
  g_assert_no_error(error);
  for (int i = 0; i < 3000 && !g_file_test(q->socket, G_FILE_TEST_EXISTS); i++)
    g_usleep(1000);
  g_assert_true(g_file_test(q->socket, G_FILE_TEST_EXISTS));
  return TRUE;
}

static void stop_qemu(Qemu *q)
{
  if (q->proc) {
    g_subprocess_force_exit(q->proc);
    g_subprocess_wait(q->proc, NULL, NULL);
    g_clear_object(&q->proc);
  }
  if (q->socket)
    g_unlink(q->socket);
  if (q->dir)
    g_rmdir(q->dir);
  g_clear_pointer(&q->socket, g_free);
  g_clear_pointer(&q->dir, g_free);
}

static void test_real_qemu(void)
{
  Qemu q = {0};
  if (!start_qemu(&q))
    return;
  Ctx ctx = {.events = g_ptr_array_new_with_free_func(g_free)};
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletQmp) qmp = connect_qemu(q.socket, &error);
  g_assert_no_error(error);
  g_assert_true(g_str_has_prefix(vmlet_qmp_get_version(qmp), "7."));
  g_signal_connect(qmp, "event", G_CALLBACK(on_event), &ctx);
  g_signal_connect(qmp, "closed", G_CALLBACK(on_closed), &ctx);

  g_autoptr(JsonNode) status = execute_sync(qmp, "query-status", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(status), "status"), ==,
                  "prelaunch");

  /* A command QEMU rejects: the error names the command and QMP's class. */
  g_autoptr(JsonNode) none = execute_sync(qmp, "no-such-command", NULL, &error);
  g_assert_null(none);
  g_assert_error(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_COMMAND);
  g_assert_true(g_str_has_prefix(error->message, "no-such-command: CommandNotFound: "));
  g_clear_error(&error);

  /* Arguments are sent as given. */
  g_autoptr(JsonObject) args = json_object_new();
  json_object_set_string_member(args, "path", "/machine");
  json_object_set_string_member(args, "property", "type");
  g_autoptr(JsonNode) type = execute_sync(qmp, "qom-get", args, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_node_get_string(type), ==, "pc-q35-7.2-machine");

  /* 200 pipelined commands: every reply reaches its own caller. */
  gpointer outs[200][3];
  memset(outs, 0, sizeof(outs));
  for (int i = 0; i < 200; i++)
    vmlet_qmp_execute_async(qmp, i % 2 ? "query-status" : "query-name", NULL, NULL, on_execute,
                            outs[i]);
  for (int i = 0; i < 200; i++) {
    while (!outs[i][2])
      g_main_context_iteration(NULL, TRUE);
    g_assert_null(outs[i][1]);
    JsonObject *o = json_node_get_object(outs[i][0]);
    g_assert_true(json_object_has_member(o, "status") == (i % 2 == 1));
    json_node_unref(outs[i][0]);
  }

  /* Events arrive in QEMU's order. */
  g_autoptr(JsonNode) r1 = execute_sync(qmp, "cont", NULL, &error);
  g_autoptr(JsonNode) r2 = execute_sync(qmp, "stop", NULL, &error);
  g_autoptr(JsonNode) r3 = execute_sync(qmp, "cont", NULL, &error);
  g_assert_no_error(error);
  g_assert_nonnull(r1);
  g_assert_nonnull(r2);
  g_assert_nonnull(r3);
  while (ctx.events->len < 3)
    g_main_context_iteration(NULL, TRUE);
  g_assert_cmpstr(ctx.events->pdata[0], ==, "RESUME");
  g_assert_cmpstr(ctx.events->pdata[1], ==, "STOP");
  g_assert_cmpstr(ctx.events->pdata[2], ==, "RESUME");

  /* QEMU dies with a command pending: the command fails, "closed" fires once. */
  gpointer out[3] = {NULL, NULL, NULL};
  kill(atoi(g_subprocess_get_identifier(q.proc)), SIGKILL);
  vmlet_qmp_execute_async(qmp, "query-status", NULL, NULL, on_execute, out);
  spin_until(&ctx.closed);
  while (!out[2])
    g_main_context_iteration(NULL, TRUE);
  g_assert_error((GError *)out[1], VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED);
  g_error_free(out[1]);
  g_assert_error(ctx.closed_error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED);
  g_assert_true(vmlet_qmp_is_closed(qmp));

  /* After close, commands fail at once rather than hang. */
  g_autoptr(JsonNode) late = execute_sync(qmp, "query-status", NULL, &error);
  g_assert_null(late);
  g_assert_error(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED);
  g_clear_error(&error);

  g_clear_error(&ctx.closed_error);
  g_ptr_array_unref(ctx.events);
  stop_qemu(&q);
}

/* ---- hostile peers: a socket server that sends what a test asks for ---- */

typedef struct {
  const char *payload; /* sent on accept */
  gsize len;
  gboolean close_after;
} Peer;

static void on_peer_written(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(GSocketConnection) conn = data;
  Peer *peer = g_object_get_data(G_OBJECT(conn), "peer");
  /* The client may hang up first (it refuses the flood): that is the point, not an error. */
  g_output_stream_write_all_finish(G_OUTPUT_STREAM(src), res, NULL, NULL);
  if (peer->close_after)
    g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
}

static gboolean on_incoming(GSocketService *svc, GSocketConnection *conn, GObject *src,
                            gpointer data)
{
  Peer *peer = data;
  /* Asynchronous: the client reads on this same thread. Keep the connection open until
   * the service goes away so only the payload decides what the client sees. */
  g_object_set_data(G_OBJECT(conn), "peer", peer);
  g_object_set_data_full(G_OBJECT(svc), "conn", g_object_ref(conn), g_object_unref);
  GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
  g_output_stream_write_all_async(out, peer->payload, peer->len, G_PRIORITY_DEFAULT, NULL,
                                  on_peer_written, g_object_ref(conn));
  return TRUE;
}

static GError *connect_to_peer(Peer *peer)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-peer-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "s", NULL);
  g_autoptr(GSocketService) svc = g_socket_service_new();
  g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(path);
  g_assert_true(g_socket_listener_add_address(G_SOCKET_LISTENER(svc), addr, G_SOCKET_TYPE_STREAM,
                                              G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL, NULL));
  g_signal_connect(svc, "incoming", G_CALLBACK(on_incoming), peer);
  GError *error = NULL;
  g_autoptr(VmletQmp) qmp = connect_once(path, &error);
  g_assert_null(qmp);
  g_socket_service_stop(svc);
  g_unlink(path);
  g_rmdir(dir);
  return error;
}

static void test_hostile_peers(void)
{
  Peer not_qmp = {"{\"hello\": 1}\n", 13, FALSE};
  g_autoptr(GError) e1 = connect_to_peer(&not_qmp);
  g_assert_error(e1, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL);

  Peer garbage = {"this is not json\n", 17, FALSE};
  g_autoptr(GError) e2 = connect_to_peer(&garbage);
  g_assert_error(e2, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL);

  Peer hangup = {"", 0, TRUE};
  g_autoptr(GError) e3 = connect_to_peer(&hangup);
  g_assert_error(e3, VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED);

  /* A message that never ends: bounded, refused, not buffered forever. */
  gsize big = VMLET_QMP_MAX_MESSAGE + 100000;
  char *flood = g_malloc(big);
  memset(flood, ' ', big);
  flood[0] = '{';
  Peer huge = {flood, big, FALSE};
  g_autoptr(GError) e4 = connect_to_peer(&huge);
  g_assert_error(e4, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL);
  g_assert_nonnull(strstr(e4->message, "exceeds the limit"));
  g_free(flood);

  /* Nobody listening: the error names the socket. */
  g_autoptr(GError) e5 = NULL;
  g_autoptr(VmletQmp) none = connect_once("/nonexistent/qmp.sock", &e5);
  g_assert_null(none);
  g_assert_nonnull(strstr(e5->message, "/nonexistent/qmp.sock"));
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/qmp/real-qemu", test_real_qemu);
  g_test_add_func("/qmp/hostile-peers", test_hostile_peers);
  return g_test_run();
}
