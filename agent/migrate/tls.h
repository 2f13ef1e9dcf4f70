/* The node's certificates for migration: one directory in QEMU's x509 layout serving both
 * the peer API (HTTPS with client certificates) and QEMU's tls-creds-x509 objects:
 *
 *   ca-cert.pem                        the CA every peer's certificates chain to
 *   server-cert.pem, server-key.pem    this node as a server (peer API, migration target)
 *   client-cert.pem, client-key.pem    this node as a client (peer calls, migration source)
 *
 * Loading checks everything once, at vmletd's start, and names the file and the reason when
 * something is wrong: a file missing or not regular, a key readable by others, a
 * certificate that does not parse, is expired, does not chain to the CA, does not name this
 * node, or lacks the TLS purpose it is used for. A peer is authenticated by its chain to
 * the CA and authorised by the name its certificate carries (CN or DNS SAN), which must be a
 * configured peer. */
#pragma once

#include <gio/gio.h>
#include <sys/types.h>

typedef struct _VmletTls VmletTls;

VmletTls *vmlet_tls_load(const char *dir, const char *node_name, GError **error);
void vmlet_tls_free(VmletTls *tls);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletTls, vmlet_tls_free)

const char *vmlet_tls_dir(const VmletTls *tls);
GTlsCertificate *vmlet_tls_server_certificate(const VmletTls *tls);
GTlsCertificate *vmlet_tls_client_certificate(const VmletTls *tls);
/* The CA alone: no system anchors, so only certificates of this CA are ever accepted. */
GTlsDatabase *vmlet_tls_database(const VmletTls *tls);

/* Whether cert chains to the node's CA and is valid now. */
gboolean vmlet_tls_verify(const VmletTls *tls, GTlsCertificate *cert, GError **error);
/* Whether cert names name: a DNS SAN equal to it, or, without DNS SANs, the CN. */
gboolean vmlet_tls_certificate_names(GTlsCertificate *cert, const char *name);
/* The subject's distinguished name as QEMU's tls-authz compares it (GnuTLS, in the
 * certificate's order: "O=vmlet,CN=hv-1"). */
char *vmlet_tls_certificate_dn(GTlsCertificate *cert, GError **error);

/* Copies what one end of a QEMU TLS channel reads (ca-cert.pem and server-* or client-*)
 * into dir (made if missing; its parent must be vmletd's, not QEMU's), the directory 0750
 * and the files 0640, owned by vmletd with QEMU's group gid: QEMU runs unprivileged and
 * reads its credentials itself, and cannot change them; the copy lives only as long as the
 * migration. */
gboolean vmlet_tls_install_for_qemu(const VmletTls *tls, const char *dir, gboolean server,
                                    gid_t gid, GError **error);
