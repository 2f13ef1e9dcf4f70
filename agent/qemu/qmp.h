/* An asynchronous QMP client on the GLib main loop.
 *
 * connect: greeting, then qmp_capabilities; execute: one command with a unique id, its
 * reply routed back by id; events: emitted in the order QEMU sent them, interleaved with
 * replies exactly as received. Every message is bounded (VMLET_QMP_MAX_MESSAGE); an
 * oversized or malformed message closes the connection with an error, as does EOF, and
 * every pending command then fails. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

/* query-qmp-schema, the largest reply vmlet asks for, is about 200 KiB on QEMU 7.2. */
#define VMLET_QMP_MAX_MESSAGE (4 * 1024 * 1024)

#define VMLET_TYPE_QMP (vmlet_qmp_get_type())
G_DECLARE_FINAL_TYPE(VmletQmp, vmlet_qmp, VMLET, QMP, GObject)

#define VMLET_QMP_ERROR (vmlet_qmp_error_quark())
typedef enum {
  VMLET_QMP_ERROR_COMMAND,  /* QEMU answered with {"error": ...}; message has class and desc */
  VMLET_QMP_ERROR_PROTOCOL, /* not QMP: no greeting, bad JSON, oversized, unexpected reply */
  VMLET_QMP_ERROR_CLOSED,   /* the connection ended before the reply */
} VmletQmpError;
GQuark vmlet_qmp_error_quark(void);

/* Signals:
 *   "event"  (const char *name, JsonObject *data (may be NULL), gint64 timestamp_us)
 *   "closed" (const GError *error): once, when the connection ends for any reason. */

void vmlet_qmp_connect_async(const char *socket_path, GCancellable *cancellable,
                             GAsyncReadyCallback callback, gpointer user_data);
VmletQmp *vmlet_qmp_connect_finish(GAsyncResult *result, GError **error);

/* arguments may be NULL; it is not modified. */
void vmlet_qmp_execute_async(VmletQmp *qmp, const char *command, JsonObject *arguments,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
/* The "return" member of the reply (often an empty object). */
JsonNode *vmlet_qmp_execute_finish(VmletQmp *qmp, GAsyncResult *result, GError **error);

/* Ends the connection; pending commands fail with VMLET_QMP_ERROR_CLOSED. */
void vmlet_qmp_close(VmletQmp *qmp);
gboolean vmlet_qmp_is_closed(VmletQmp *qmp);
/* QEMU's version from the greeting, e.g. "7.2.22". */
const char *vmlet_qmp_get_version(VmletQmp *qmp);
