/* Helpers shared by the cgroupfs v1 and v2 backends. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "fileio.h"
#include "vmlet-error.h"

#define CGROUP_FILE_MAX (64 * 1024)

char *vmlet_cgroup_leaf(const char *namespace, const char *name)
{
  return g_strdup_printf("%s.%s", namespace, name);
}

gboolean vmlet_cgroup_write(const char *dir, const char *file, const char *value,
                            GError **error)
{
  g_autofree char *path = g_build_filename(dir, file, NULL);
  /* O_CREAT only matters for a directory tree standing in for cgroupfs (tests); on cgroupfs
   * every file exists and kernfs refuses to create one. */
  vmlet_autofd fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  gsize len = strlen(value);
  if (fd < 0 || write(fd, value, len) != (ssize_t)len) {
    int e = errno;
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "writing \"%s\" to %s: %s", value, path,
                g_strerror(e));
    return FALSE;
  }
  return TRUE;
}

gboolean vmlet_cgroup_write_u64(const char *dir, const char *file, guint64 value,
                                GError **error)
{
  char buf[32];
  g_snprintf(buf, sizeof buf, "%" G_GUINT64_FORMAT, value);
  return vmlet_cgroup_write(dir, file, buf, error);
}

char *vmlet_cgroup_read(const char *dir, const char *file, GError **error)
{
  g_autofree char *path = g_build_filename(dir, file, NULL);
  char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, CGROUP_FILE_MAX, &data, &len, error))
    return NULL;
  while (len && (data[len - 1] == '\n' || data[len - 1] == ' '))
    data[--len] = '\0';
  return data;
}

gboolean vmlet_cgroup_read_u64(const char *dir, const char *file, guint64 *out, GError **error)
{
  g_autofree char *v = vmlet_cgroup_read(dir, file, error);
  if (!v)
    return FALSE;
  if (g_str_equal(v, "max")) {
    *out = G_MAXUINT64;
    return TRUE;
  }
  char *end = NULL;
  guint64 n = g_ascii_strtoull(v, &end, 10);
  if (end == v || *end) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s/%s: expected a number, found \"%s\"",
                dir, file, v);
    return FALSE;
  }
  *out = n;
  return TRUE;
}

GArray *vmlet_cgroup_read_pids(const char *dir, GError **error)
{
  g_autofree char *v = vmlet_cgroup_read(dir, "cgroup.procs", error);
  if (!v)
    return NULL;
  GArray *pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
  g_auto(GStrv) lines = g_strsplit(v, "\n", -1);
  for (guint i = 0; lines[i]; i++) {
    if (!*lines[i])
      continue;
    pid_t pid = (pid_t)g_ascii_strtoll(lines[i], NULL, 10);
    if (pid > 0)
      g_array_append_val(pids, pid);
  }
  return pids;
}

gboolean vmlet_cgroup_mkdirs(const char *path, GError **error)
{
  if (g_mkdir_with_parents(path, 0755) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "creating cgroup %s: %s", path,
                g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

char *vmlet_cgroup_self_path(const char *controller, GError **error)
{
  g_autofree char *data = NULL;
  if (!vmlet_read_file_bounded("/proc/self/cgroup", CGROUP_FILE_MAX, &data, NULL, error))
    return NULL;
  g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
  for (guint i = 0; lines[i]; i++) {
    /* "hierarchy-id:controller-list:path"; the path may itself contain ':'. */
    g_auto(GStrv) f = g_strsplit(lines[i], ":", 3);
    if (g_strv_length(f) != 3)
      continue;
    if (!*controller) {
      if (g_str_equal(f[0], "0") && !*f[1])
        return g_strdup(f[2]);
      continue;
    }
    g_auto(GStrv) controllers = g_strsplit(f[1], ",", -1);
    if (g_strv_contains((const char *const *)controllers, controller))
      return g_strdup(f[2]);
  }
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
              "/proc/self/cgroup: no line for the %s hierarchy", *controller ? controller : "v2");
  return NULL;
}

char *vmlet_cgroup_resolve_parent(const char *parent, const char *own)
{
  if (parent[0] == '/')
    return g_strdup(parent);
  if (g_str_equal(own, "/"))
    return g_strconcat("/", parent, NULL);
  return g_strconcat(own, "/", parent, NULL);
}

void vmlet_cgroup_task_return_location(GTask *task, char *location, GError *error)
{
  if (location)
    g_task_return_pointer(task, location, g_free);
  else
    g_task_return_error(task, error);
  g_object_unref(task);
}
