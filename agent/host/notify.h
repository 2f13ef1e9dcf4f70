/* The systemd service notification protocol (sd_notify(3)), spoken directly.
 *
 * No libsystemd: the protocol is one datagram of "KEY=VALUE\n" lines to the AF_UNIX socket
 * named by $NOTIFY_SOCKET, so it works, and is tested, on hosts where PID 1 is not systemd.
 * Every call is a no-op returning TRUE when $NOTIFY_SOCKET is unset (not started by a
 * Type=notify unit). */
#pragma once

#include <glib.h>

/* systemd accepts at most PIPE_BUF (4096) bytes per notification (NOTIFY_BUFFER_MAX in its
 * sources) and drops a longer one with a warning: refusing it here reports the mistake to
 * the caller instead. */
#define VMLET_NOTIFY_MAX_STATE 4096

/* Sends state (e.g. "READY=1", or several "KEY=VALUE" lines joined by '\n') to
 * $NOTIFY_SOCKET: an absolute path, or "@name" for the abstract namespace. A state longer
 * than VMLET_NOTIFY_MAX_STATE is refused with VMLET_ERROR_TOO_LARGE. */
gboolean vmlet_notify(const char *state, GError **error);

/* "READY=1": startup is complete (Type=notify), or a reload finished. */
gboolean vmlet_notify_ready(GError **error);

/* "STOPPING=1": shutdown has begun. */
gboolean vmlet_notify_stopping(GError **error);

/* "STATUS=<text>", shown by `systemctl status`, e.g. "3 VMs: 2 Running, 1 Stopped".
 * error comes first, as in g_set_error(): C variadic arguments must be last. The text must
 * fit one line (a '\n' would start another assignment: VMLET_ERROR_INVALID) and the
 * message VMLET_NOTIFY_MAX_STATE (VMLET_ERROR_TOO_LARGE). */
gboolean vmlet_notify_status(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* When the unit has WatchdogSec= ($WATCHDOG_USEC set and non-zero, and $WATCHDOG_PID unset
 * or equal to getpid()), adds a timeout on the default main context that sends
 * "WATCHDOG=1" every half interval, as sd_watchdog_enabled(3) recommends, and returns its
 * source id. Returns 0 when there is no watchdog for this process, or the variables are
 * malformed (systemd never sets them so; a hand-made environment gets no pings rather than
 * a wrong interval). The pings run only while the loop runs: a stuck loop is what the
 * watchdog exists to catch. */
guint vmlet_watchdog_start(void);
