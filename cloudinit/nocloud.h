/* Provisioning media for guests: cloud-init's NoCloud seed and the Windows Sysprep CD.
 *
 * NoCloud (cloud-init's DataSourceNoCloud) finds a filesystem labelled "cidata" (or
 * "CIDATA") holding user-data, meta-data and optionally network-config. Sysprep reads
 * autounattend.xml / unattend.xml from any removable drive. */
#pragma once

#include <glib.h>

#define VMLET_NOCLOUD_VOLUME_ID "cidata"
/* KubeVirt's label for the Sysprep CD; Windows does not look at it. */
#define VMLET_SYSPREP_VOLUME_ID "unattendCD"
/* libyaml parses in memory; a bigger #cloud-config is passed through unchecked. */
#define VMLET_USER_DATA_CHECK_MAX_BYTES (1024 * 1024)

/* "<name>-<16 hex digits>": the hex digits are the start of
 * sha256(ns "/" name "\0" user_data). Stable for a VM while its user data stays the same
 * and different once it changes, which is what makes cloud-init run its per-instance
 * modules again. user_data may be NULL (same as empty). Caller frees. */
char *vmlet_nocloud_instance_id(const char *ns, const char *name, const char *user_data_or_null,
                                gsize len);

/* "instance-id: X\nlocal-hostname: Y\n". Values that a YAML 1.1 reader could take for
 * anything but a plain string (numbers, booleans, null, special characters) are written
 * as double-quoted scalars. Caller frees. */
char *vmlet_nocloud_meta_data(const char *instance_id, const char *hostname);

/* Writes the NoCloud seed ISO (volume id "cidata") to path atomically with mode 0600:
 * user-data, meta-data (instance-id and local-hostname = name) and, when
 * network_config_or_null is given, network-config. Without a network config the
 * instance-id is vmlet_nocloud_instance_id(ns, name, user_data, len); with one, the hash
 * covers the network config as well, because cloud-init applies a NoCloud network config
 * only on a new instance. */
gboolean vmlet_nocloud_write(const char *path, const char *ns, const char *name,
                             const char *user_data, gsize len,
                             const char *network_config_or_null, GError **error);

/* Writes the Sysprep CD (volume id "unattendCD") to path atomically with mode 0600.
 * names: char *, keys as found in the Secret; blobs: GBytes *, the matching values.
 * Each name must be "autounattend.xml" or "unattend.xml" ignoring case and is written
 * under that lower-case name; at least one, each at most once. */
gboolean vmlet_sysprep_write(const char *path, GPtrArray *names, GPtrArray *blobs,
                             GError **error);

/* Appends human-readable warnings (char *, to be freed by the array) about user data that
 * cloud-init would reject. Only #cloud-config documents are checked, for YAML syntax;
 * scripts, #include, MIME multipart and jinja templates are not. A document over
 * VMLET_USER_DATA_CHECK_MAX_BYTES is not parsed, and parsing stops at 64 levels of
 * nesting; either way a warning says what was not checked. */
void vmlet_user_data_check(const char *user_data, gsize len, GPtrArray *warnings);
