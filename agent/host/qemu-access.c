#include "qemu-access.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmlet-error.h"

/* Whether c's user may search (x) the directory st describes, by the classic owner /
 * group / other bits (vmlet sets no ACLs, so neither does it read them). */
static gboolean searchable(const struct stat *st, const VmletConfine *c)
{
  if (st->st_uid == vmlet_confine_uid(c))
    return st->st_mode & S_IXUSR;
  if (vmlet_confine_in_group(c, st->st_gid))
    return st->st_mode & S_IXGRP;
  return st->st_mode & S_IXOTH;
}

/* Every directory above path lets c's user through. */
static gboolean reachable(const char *path, const char *what, const VmletConfine *c,
                          GError **error)
{
  g_autofree char *dir = g_path_get_dirname(path);
  for (;;) {
    struct stat st;
    if (stat(dir, &st) < 0) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s: %s", what, dir, g_strerror(errno));
      return FALSE;
    }
    if (!searchable(&st, c)) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: QEMU's user \"%s\" cannot reach %s: directory %s (mode %04o, owner "
                  "%u:%u) does not let it through (it needs x for that user, its group or "
                  "others)",
                  what, vmlet_confine_user(c), path, dir, (unsigned)(st.st_mode & 07777),
                  (unsigned)st.st_uid, (unsigned)st.st_gid);
      return FALSE;
    }
    if (g_str_equal(dir, "/"))
      return TRUE;
    char *up = g_path_get_dirname(dir);
    g_free(dir);
    dir = up;
  }
}

static gboolean set_owner(const char *path, uid_t uid, gid_t gid, mode_t mode, const char *what,
                          GError **error)
{
  if (chown(path, uid, gid) < 0 || chmod(path, mode) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: giving %s to QEMU's user: %s", what,
                path, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

gboolean vmlet_qemu_access_grant_file(const char *path, gboolean writable, const char *what,
                                      const VmletConfine *c, GError **error)
{
  if (!vmlet_confine_changes_user(c))
    return TRUE;
  struct stat st;
  if (stat(path, &st) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s: %s", what, path, g_strerror(errno));
    return FALSE;
  }
  /* Written: QEMU's own (a disk belongs to one VM). Read-only: shared by the VMs of the
   * node through QEMU's group, the owner kept. */
  gboolean ok = writable ? set_owner(path, vmlet_confine_uid(c), vmlet_confine_gid(c), 0600,
                                     what, error)
                         : set_owner(path, st.st_uid, vmlet_confine_gid(c),
                                     (st.st_mode & 0700) | 0040, what, error);
  return ok && reachable(path, what, c, error);
}

gboolean vmlet_qemu_access_traverse_dir(const char *dir, const VmletConfine *c, GError **error)
{
  if (!vmlet_confine_changes_user(c))
    return TRUE;
  struct stat st;
  if (stat(dir, &st) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  return set_owner(dir, st.st_uid, vmlet_confine_gid(c), 0710, dir, error) &&
         reachable(dir, dir, c, error);
}

gboolean vmlet_qemu_access_own_dir(const char *dir, const VmletConfine *c, GError **error)
{
  if (!vmlet_confine_changes_user(c))
    return TRUE;
  return set_owner(dir, vmlet_confine_uid(c), vmlet_confine_gid(c), 0700, dir, error);
}
