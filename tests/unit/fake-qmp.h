/* A scripted QMP peer for tests, in the test's own GMainContext (libvirt's
 * qemumonitortestutils): a unix socket server speaking QEMU 7.2's side of the protocol,
 * so vmletd's QMP client, monitor, VM runtime and hotplug run against it unchanged.
 *
 * On each connection it sends QEMU's greeting, answers qmp_capabilities with
 * {"return": {}}, and then every command with the reply the test scripted for it (by
 * command name, optionally only for some arguments), carrying the command's id as QEMU
 * does. Unscripted commands get {"return": {}}. A reply may be withheld until the test
 * releases it; hooks run when a command arrives (after its reply is queued, so an event a
 * hook emits follows the reply, as QEMU's SHUTDOWN follows system_powerdown's reply).
 * Events can be injected at any time. Connections are served one after the other (a
 * restarted vmletd connects again); every command received is logged, in order. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

typedef struct _FakeQmp FakeQmp;

typedef struct {
  char *command;
  char *arguments; /* compact JSON of "arguments", "{}" when absent */
  guint connection; /* 1 for the first connection, 2 for the next ... */
} FakeQmpCommand;

/* Listens at socket_path (its directory must exist; a stale socket file is replaced). */
FakeQmp *fake_qmp_new(const char *socket_path, GError **error);
/* Closes every connection and the listener, removes the socket file. */
void fake_qmp_free(FakeQmp *fq);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(FakeQmp, fake_qmp_free)

const char *fake_qmp_socket(FakeQmp *fq);

/* ---- scripting replies ----
 * reply is the reply's JSON without its id: {"return": ...} or {"error": {"class": ...,
 * "desc": ...}}; anything else is sent as given (a peer that is not QEMU). match, when not
 * NULL, is a JSON object whose members the command's arguments must have, equal; the rule
 * added last that matches wins. */
void fake_qmp_reply(FakeQmp *fq, const char *command, const char *match, const char *reply);
void fake_qmp_reply_error(FakeQmp *fq, const char *command, const char *match,
                          const char *klass, const char *desc);
/* Replies to command (matching match) are held back until fake_qmp_release. */
void fake_qmp_withhold(FakeQmp *fq, const char *command, const char *match);
/* Sends the held replies of command (every command: NULL) with the reply scripted for
 * them, and stops holding them back; the number released. */
guint fake_qmp_release(FakeQmp *fq, const char *command);

/* ---- reacting ---- */
typedef void (*FakeQmpHook)(FakeQmp *fq, const char *command, JsonObject *arguments,
                            gpointer user_data);
/* hook runs for each command named command (every command: NULL) as it arrives. */
void fake_qmp_on_command(FakeQmp *fq, const char *command, FakeQmpHook hook,
                         gpointer user_data);

/* An event on the current connection, with QEMU's timestamp; data is a JSON object or
 * NULL. FALSE when no client is connected. */
gboolean fake_qmp_emit(FakeQmp *fq, const char *event, const char *data);
/* Hangs up on the current client, as QEMU does when it exits. */
void fake_qmp_disconnect(FakeQmp *fq);
gboolean fake_qmp_is_connected(FakeQmp *fq);
/* Connections accepted so far. */
guint fake_qmp_connections(FakeQmp *fq);

/* ---- what was received ---- */
/* FakeQmpCommand *, in arrival order, qmp_capabilities included. */
GPtrArray *fake_qmp_log(FakeQmp *fq);
void fake_qmp_clear_log(FakeQmp *fq);
/* How many times command was received. */
guint fake_qmp_count(FakeQmp *fq, const char *command);
/* The names of the commands received, comma-separated ("qmp_capabilities,qom-get,cont"),
 * leaving out those in skip (NULL-terminated, may be NULL): for exact order assertions. */
char *fake_qmp_sequence(FakeQmp *fq, const char *const *skip);
