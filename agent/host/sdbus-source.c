#include "sdbus-source.h"

#include <poll.h>

typedef struct {
  GSource source;
  sd_bus *bus;
  gpointer tag;
} SdBusSource;

static gboolean sdbus_prepare(GSource *source, gint *timeout)
{
  SdBusSource *s = (SdBusSource *)source;
  int events = sd_bus_get_events(s->bus);
  GIOCondition cond = 0;
  if (events > 0) {
    if (events & POLLIN)
      cond |= G_IO_IN;
    if (events & POLLOUT)
      cond |= G_IO_OUT;
  }
  g_source_modify_unix_fd(source, s->tag, cond | G_IO_ERR | G_IO_HUP);
  /* Messages may already be queued in sd-bus's buffers: dispatch without polling. */
  uint64_t until = 0;
  *timeout = -1;
  if (sd_bus_get_timeout(s->bus, &until) >= 0 && until != UINT64_MAX) {
    gint64 now = g_get_monotonic_time(); /* CLOCK_MONOTONIC in µs, as sd-bus uses */
    if ((gint64)until <= now)
      return TRUE;
    *timeout = (gint)MIN(((gint64)until - now + 999) / 1000, G_MAXINT);
  }
  return FALSE;
}

static gboolean sdbus_check(GSource *source)
{
  SdBusSource *s = (SdBusSource *)source;
  if (g_source_query_unix_fd(source, s->tag))
    return TRUE;
  uint64_t until = 0;
  return sd_bus_get_timeout(s->bus, &until) >= 0 && until != UINT64_MAX &&
         (gint64)until <= g_get_monotonic_time();
}

static gboolean sdbus_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
  SdBusSource *s = (SdBusSource *)source;
  /* Each call handles one message; a bounded batch keeps the loop fair to other sources.
   * A connection that ends first fails every pending call (one call each), then reports
   * ENOTCONN: the source goes away with it and the owner connects anew when it next needs
   * the bus. */
  for (int i = 0; i < 64; i++) {
    int r = sd_bus_process(s->bus, NULL);
    if (r < 0)
      return G_SOURCE_REMOVE;
    if (r == 0)
      break;
  }
  return G_SOURCE_CONTINUE;
}

static void sdbus_finalize(GSource *source)
{
  SdBusSource *s = (SdBusSource *)source;
  sd_bus_unref(s->bus);
}

static GSourceFuncs sdbus_funcs = {
    .prepare = sdbus_prepare,
    .check = sdbus_check,
    .dispatch = sdbus_dispatch,
    .finalize = sdbus_finalize,
};

GSource *vmlet_sdbus_attach(sd_bus *bus)
{
  GSource *source = g_source_new(&sdbus_funcs, sizeof(SdBusSource));
  SdBusSource *s = (SdBusSource *)source;
  s->bus = sd_bus_ref(bus);
  s->tag = g_source_add_unix_fd(source, sd_bus_get_fd(bus), G_IO_IN | G_IO_ERR | G_IO_HUP);
  g_source_set_name(source, "sd-bus");
  g_source_attach(source, g_main_context_get_thread_default());
  return source;
}
