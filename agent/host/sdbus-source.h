/* An sd-bus connection driven by the GLib main loop (sd-bus has its own sd-event; vmletd
 * has one GMainLoop for everything). */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

/* Attaches bus to the thread-default main context; the source holds a reference to bus
 * and destroys itself when the connection has ended. Returns a reference to the source:
 * g_source_destroy() detaches it. */
GSource *vmlet_sdbus_attach(sd_bus *bus);
