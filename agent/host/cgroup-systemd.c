/* systemd: each VM in a transient scope, as libvirt (through machined) and Proxmox do.
 *
 * StartTransientUnit("vmlet-<ns>-<name>.scope", "fail", [Slice, PIDs, Delegate,
 * CollectMode, CPUWeight, CPUQuotaPerSecUSec, CPUQuotaPeriodUSec, MemoryMax, TasksMax], [])
 * over sd-bus, asynchronously from the main loop; the scope exists once its job's
 * JobRemoved signal says "done" (systemd tracks the caller of a job and sends it the
 * signal without Subscribe()). The scope belongs to systemd, not to vmletd's unit: it
 * outlives vmletd restarts and ends by itself when its last process exits (CollectMode
 * inactive-or-failed also collects a scope whose QEMU was killed, so the name is free
 * for the next start). */
#include <errno.h>
#include <string.h>

#include "cgroup-internal.h"
#include "sdbus-source.h"
#include "vmlet-error.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define SYSTEMD_SCOPE "org.freedesktop.systemd1.Scope"
/* A job that has not finished in 30 s will not: systemd is stuck or gone. */
#define JOB_TIMEOUT_US (30 * G_USEC_PER_SEC)
/* "UnitExists" right after a QEMU exited: systemd has not yet noticed the old scope is
 * empty. Retried for up to 2 s before it is an error. */
#define EXISTS_RETRIES 10
#define EXISTS_RETRY_MS 200

typedef struct {
  char *slice;
  sd_bus *bus;
  GSource *source;
} Sd;

static void sd_free(gpointer p)
{
  Sd *sd = p;
  if (sd->source) {
    g_source_destroy(sd->source);
    g_source_unref(sd->source);
  }
  sd_bus_flush_close_unref(sd->bus);
  g_free(sd->slice);
  g_free(sd);
}

gpointer vmlet_cgroup_systemd_new(const char *slice, GError **error)
{
  Sd *sd = g_new0(Sd, 1);
  sd->slice = g_strdup(slice);
  return sd;
}

static void set_bus_error(GError **error, const char *what, const sd_bus_error *e, int r)
{
  if (e && sd_bus_error_is_set(e))
    g_set_error(error, VMLET_ERROR,
                g_strcmp0(e->name, "org.freedesktop.systemd1.UnitExists") == 0
                    ? VMLET_ERROR_EXISTS
                    : VMLET_ERROR_IO,
                "systemd: %s: %s: %s", what, e->name, e->message ? e->message : "");
  else
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "systemd: %s: %s", what, g_strerror(-r));
}

/* The system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured), connected anew after it was lost. */
static sd_bus *get_bus(Sd *sd, GError **error)
{
  if (sd->bus && sd_bus_is_open(sd->bus) > 0)
    return sd->bus;
  if (sd->source) {
    g_source_destroy(sd->source);
    g_clear_pointer(&sd->source, g_source_unref);
  }
  g_clear_pointer(&sd->bus, sd_bus_flush_close_unref);
  int r = sd_bus_open_system(&sd->bus);
  if (r < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "systemd: connecting to the system bus: %s",
                g_strerror(-r));
    sd->bus = NULL;
    return NULL;
  }
  sd->source = vmlet_sdbus_attach(sd->bus);
  return sd->bus;
}

char *vmlet_cgroups_unit_name(const char *namespace, const char *name)
{
  GString *s = g_string_new("vmlet-");
  for (const char *p = namespace; *p; p++)
    *p == '-' ? g_string_append(s, "\\x2d") : g_string_append_c(s, *p);
  g_string_append_c(s, '-');
  for (const char *p = name; *p; p++)
    *p == '-' ? g_string_append(s, "\\x2d") : g_string_append_c(s, *p);
  g_string_append(s, ".scope");
  return g_string_free(s, FALSE);
}

static guint64 quota_per_sec(const VmResources *res)
{
  return res->cpu_quota_us * G_USEC_PER_SEC / res->cpu_period_us;
}

static int append_cpu(sd_bus_message *m, const VmResources *res)
{
  int r = sd_bus_message_append(m, "(sv)", "CPUWeight", "t", res->cpu_weight);
  if (r >= 0)
    r = sd_bus_message_append(m, "(sv)", "CPUQuotaPerSecUSec", "t", quota_per_sec(res));
  if (r >= 0)
    r = sd_bus_message_append(m, "(sv)", "CPUQuotaPeriodUSec", "t", res->cpu_period_us);
  return r;
}

/* ---- placing: StartTransientUnit, then JobRemoved ---- */

typedef struct {
  Sd *sd;
  GTask *task;
  char *unit, *description;
  pid_t pid;
  VmResources res;
  char *job;              /* from the method reply */
  GHashTable *early;      /* job path -> result, JobRemoved seen before the reply */
  sd_bus_slot *match, *call;
  guint timer;
  int attempts;
} Place;

static void place_free(Place *p)
{
  sd_bus_slot_unref(p->match);
  sd_bus_slot_unref(p->call);
  g_clear_handle_id(&p->timer, g_source_remove);
  g_free(p->unit);
  g_free(p->description);
  g_free(p->job);
  g_hash_table_unref(p->early);
  g_free(p);
}

static void place_done(Place *p, const char *result, GError *error)
{
  GTask *task = p->task;
  if (!error && !g_str_equal(result, "done"))
    g_set_error(&error, VMLET_ERROR, VMLET_ERROR_IO,
                "systemd: the job starting %s finished with result \"%s\"", p->unit, result);
  if (error)
    vmlet_cgroup_task_return_location(task, NULL, error);
  else
    vmlet_cgroup_task_return_location(task, g_strdup(p->unit), NULL);
  place_free(p);
}

static int on_job_removed(sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  Place *p = data;
  uint32_t id = 0;
  const char *job = NULL, *unit = NULL, *result = NULL;
  if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
    return 0;
  if (p->job && g_str_equal(job, p->job))
    place_done(p, result, NULL);
  else if (!p->job && g_hash_table_size(p->early) < 64)
    g_hash_table_insert(p->early, g_strdup(job), g_strdup(result));
  return 0;
}

static gboolean on_timeout(gpointer data)
{
  Place *p = data;
  p->timer = 0;
  GError *error = g_error_new(VMLET_ERROR, VMLET_ERROR_IO,
                              "systemd: no answer for %s within %d s", p->unit,
                              (int)(JOB_TIMEOUT_US / G_USEC_PER_SEC));
  place_done(p, NULL, error);
  return G_SOURCE_REMOVE;
}

static void send_start(Place *p);

static gboolean on_retry(gpointer data)
{
  Place *p = data;
  p->timer = g_timeout_add(JOB_TIMEOUT_US / 1000, on_timeout, p);
  send_start(p);
  return G_SOURCE_REMOVE;
}

static int on_start_reply(sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  Place *p = data;
  p->call = sd_bus_slot_unref(p->call);
  const sd_bus_error *e = sd_bus_message_get_error(m);
  if (e) {
    GError *error = NULL;
    g_autofree char *what = g_strdup_printf("StartTransientUnit(%s)", p->unit);
    set_bus_error(&error, what, e, 0);
    if (g_error_matches(error, VMLET_ERROR, VMLET_ERROR_EXISTS) && ++p->attempts < EXISTS_RETRIES) {
      g_error_free(error);
      g_clear_handle_id(&p->timer, g_source_remove);
      p->timer = g_timeout_add(EXISTS_RETRY_MS, on_retry, p);
      return 0;
    }
    place_done(p, NULL, error);
    return 0;
  }
  const char *job = NULL;
  if (sd_bus_message_read(m, "o", &job) < 0) {
    place_done(p, NULL,
               g_error_new(VMLET_ERROR, VMLET_ERROR_IO,
                           "systemd: StartTransientUnit(%s): expected a job path", p->unit));
    return 0;
  }
  p->job = g_strdup(job);
  const char *early = g_hash_table_lookup(p->early, job);
  if (early) {
    g_autofree char *result = g_strdup(early);
    place_done(p, result, NULL);
  }
  return 0;
}

static void send_start(Place *p)
{
  GError *error = NULL;
  sd_bus *bus = get_bus(p->sd, &error);
  if (!bus) {
    place_done(p, NULL, error);
    return;
  }
  g_autofree char *what = g_strdup_printf("StartTransientUnit(%s)", p->unit);
  sd_bus_message *m = NULL;
  int r = 0;
  if (!p->match)
    r = sd_bus_match_signal_async(bus, &p->match, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                  "JobRemoved", on_job_removed, NULL, p);
  if (r >= 0)
    r = sd_bus_message_new_method_call(bus, &m, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                       "StartTransientUnit");
  if (r >= 0)
    r = sd_bus_message_append(m, "ss", p->unit, "fail");
  if (r >= 0)
    r = sd_bus_message_open_container(m, 'a', "(sv)");
  if (r >= 0)
    r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)", "Description", "s", p->description,
                              "Slice", "s", p->sd->slice, "PIDs", "au", 1, (uint32_t)p->pid,
                              "Delegate", "b", 1, "CollectMode", "s", "inactive-or-failed");
  if (r >= 0)
    r = append_cpu(m, &p->res);
  if (r >= 0)
    r = sd_bus_message_append(m, "(sv)(sv)", "MemoryMax", "t", p->res.memory_max_bytes,
                              "TasksMax", "t", p->res.pids_max);
  if (r >= 0)
    r = sd_bus_message_close_container(m);
  if (r >= 0)
    r = sd_bus_message_append(m, "a(sa(sv))", 0);
  if (r >= 0)
    r = sd_bus_call_async(bus, &p->call, m, on_start_reply, p, JOB_TIMEOUT_US);
  sd_bus_message_unref(m);
  if (r < 0) {
    set_bus_error(&error, what, NULL, r);
    place_done(p, NULL, error);
  }
}

static void sd_place(VmletCgroups *cg, const char *namespace, const char *name, pid_t pid,
                     const VmResources *res, GTask *task)
{
  Place *p = g_new0(Place, 1);
  p->sd = cg->backend;
  p->task = task;
  p->unit = vmlet_cgroups_unit_name(namespace, name);
  p->description = g_strdup_printf("vmlet VM %s/%s", namespace, name);
  p->pid = pid;
  p->res = *res;
  p->early = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  p->timer = g_timeout_add(JOB_TIMEOUT_US / 1000, on_timeout, p);
  send_start(p);
}

/* ---- live CPU changes: SetUnitProperties ---- */

static int on_set_reply(sd_bus_message *m, void *data, sd_bus_error *ret_error)
{
  GTask *task = data;
  const sd_bus_error *e = sd_bus_message_get_error(m);
  if (e) {
    GError *error = NULL;
    set_bus_error(&error, "SetUnitProperties", e, 0);
    g_task_return_error(task, error);
  } else {
    g_task_return_boolean(task, TRUE);
  }
  g_object_unref(task);
  return 0;
}

static void sd_update_cpu(VmletCgroups *cg, const char *location, const VmResources *res,
                          GTask *task)
{
  GError *error = NULL;
  sd_bus *bus = get_bus(cg->backend, &error);
  sd_bus_message *m = NULL;
  int r = bus ? sd_bus_message_new_method_call(bus, &m, SYSTEMD_DEST, SYSTEMD_PATH,
                                               SYSTEMD_MANAGER, "SetUnitProperties")
              : -ENOTCONN;
  if (r >= 0)
    r = sd_bus_message_append(m, "sb", location, 1);
  if (r >= 0)
    r = sd_bus_message_open_container(m, 'a', "(sv)");
  if (r >= 0)
    r = append_cpu(m, res);
  if (r >= 0)
    r = sd_bus_message_close_container(m);
  /* The slot is floating: the call completes (or fails when the bus goes) on its own. */
  if (r >= 0)
    r = sd_bus_call_async(bus, NULL, m, on_set_reply, task, JOB_TIMEOUT_US);
  sd_bus_message_unref(m);
  if (r < 0) {
    if (!error)
      set_bus_error(&error, "SetUnitProperties", NULL, r);
    g_task_return_error(task, error);
    g_object_unref(task);
  }
}

/* ---- reading back (blocking) ---- */

static char *unit_path(sd_bus *bus, const char *unit, GError **error)
{
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message *reply = NULL;
  const char *path = NULL;
  char *out = NULL;
  int r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "GetUnit", &e,
                             &reply, "s", unit);
  if (r >= 0)
    r = sd_bus_message_read(reply, "o", &path);
  if (r >= 0)
    out = g_strdup(path);
  else
    set_bus_error(error, "GetUnit", &e, r);
  sd_bus_error_free(&e);
  sd_bus_message_unref(reply);
  return out;
}

static gboolean sd_read(VmletCgroups *cg, const char *location, VmResources *out, GError **error)
{
  sd_bus *bus = get_bus(cg->backend, error);
  if (!bus)
    return FALSE;
  g_autofree char *path = unit_path(bus, location, error);
  if (!path)
    return FALSE;
  static const char *const props[] = {"CPUWeight", "CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec",
                                      "MemoryMax", "TasksMax"};
  guint64 v[G_N_ELEMENTS(props)] = {0};
  for (gsize i = 0; i < G_N_ELEMENTS(props); i++) {
    sd_bus_error e = SD_BUS_ERROR_NULL;
    int r = sd_bus_get_property_trivial(bus, SYSTEMD_DEST, path, SYSTEMD_SCOPE, props[i], &e,
                                        't', &v[i]);
    if (r < 0) {
      set_bus_error(error, props[i], &e, r);
      sd_bus_error_free(&e);
      return FALSE;
    }
  }
  VmResources r = {0};
  r.cpu_weight = v[0];
  r.cpu_period_us = v[2];
  r.cpu_quota_us = v[2] ? v[1] * v[2] / G_USEC_PER_SEC : 0;
  r.memory_max_bytes = v[3];
  r.pids_max = v[4];
  *out = r;
  return TRUE;
}

static GArray *sd_pids(VmletCgroups *cg, const char *location, GError **error)
{
  sd_bus *bus = get_bus(cg->backend, error);
  if (!bus)
    return NULL;
  sd_bus_error e = SD_BUS_ERROR_NULL;
  sd_bus_message *reply = NULL;
  int r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                             "GetUnitProcesses", &e, &reply, "s", location);
  GArray *pids = NULL;
  if (r >= 0)
    r = sd_bus_message_enter_container(reply, 'a', "(sus)");
  if (r >= 0) {
    pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
    const char *cgroup = NULL, *cmd = NULL;
    uint32_t pid = 0;
    while ((r = sd_bus_message_read(reply, "(sus)", &cgroup, &pid, &cmd)) > 0) {
      pid_t p = (pid_t)pid;
      g_array_append_val(pids, p);
    }
  }
  if (r < 0) {
    set_bus_error(error, "GetUnitProcesses", &e, r);
    g_clear_pointer(&pids, g_array_unref);
  }
  sd_bus_error_free(&e);
  sd_bus_message_unref(reply);
  return pids;
}

static void sd_remove(VmletCgroups *cg, const char *location)
{
  /* Nothing to do: an empty transient scope is stopped and collected by systemd. Stopping
   * it here could race with the next start of the same VM under the same name. */
}

static char *sd_describe(VmletCgroups *cg, const char *location)
{
  Sd *sd = cg->backend;
  return g_strdup_printf("systemd scope %s in %s", location, sd->slice);
}

const VmletCgroupOps vmlet_cgroup_systemd_ops = {
    .place = sd_place,
    .update_cpu = sd_update_cpu,
    .read = sd_read,
    .pids = sd_pids,
    .remove = sd_remove,
    .describe = sd_describe,
    .free = sd_free,
};
