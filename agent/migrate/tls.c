#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "fileio.h"
#include "vmlet-error.h"

/* A PEM certificate or key is a few KiB; a chain file a little more. */
#define PEM_MAX_BYTES (64 * 1024)

struct _VmletTls {
  char *dir;
  GTlsCertificate *server, *client;
  GTlsDatabase *db;
  gnutls_x509_crt_t ca;
};

void vmlet_tls_free(VmletTls *tls)
{
  if (!tls)
    return;
  g_free(tls->dir);
  g_clear_object(&tls->server);
  g_clear_object(&tls->client);
  g_clear_object(&tls->db);
  if (tls->ca)
    gnutls_x509_crt_deinit(tls->ca);
  g_free(tls);
}

const char *vmlet_tls_dir(const VmletTls *tls)
{
  return tls->dir;
}

GTlsCertificate *vmlet_tls_server_certificate(const VmletTls *tls)
{
  return tls->server;
}

GTlsCertificate *vmlet_tls_client_certificate(const VmletTls *tls)
{
  return tls->client;
}

GTlsDatabase *vmlet_tls_database(const VmletTls *tls)
{
  return tls->db;
}

/* ---- parsing with GnuTLS (the library QEMU checks the same files with) ---- */

static gboolean read_pem(const char *path, gboolean secret, char **data, gsize *len,
                         GError **error)
{
  struct stat st;
  if (stat(path, &st) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "%s: %s", path, g_strerror(errno));
    return FALSE;
  }
  if (!S_ISREG(st.st_mode)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: not a regular file", path);
    return FALSE;
  }
  /* A private key others can read is a key anyone on the node may use to pose as it. */
  if (secret && (st.st_mode & 077)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: mode %04o lets group or others read a private key; expected 0600", path,
                (unsigned)(st.st_mode & 07777));
    return FALSE;
  }
  return vmlet_read_file_bounded(path, PEM_MAX_BYTES, data, len, error);
}

static gnutls_x509_crt_t import_crt(const char *what, const char *pem, gsize len,
                                    GError **error)
{
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned int)len};
  int rc = gnutls_x509_crt_init(&crt);
  if (rc == 0)
    rc = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
  if (rc < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: not a PEM certificate: %s", what,
                gnutls_strerror(rc));
    if (crt)
      gnutls_x509_crt_deinit(crt);
    return NULL;
  }
  return crt;
}

static gboolean verify_crt(gnutls_x509_crt_t ca, gnutls_x509_crt_t crt, const char *what,
                           GError **error)
{
  unsigned int status = 0;
  int rc = gnutls_x509_crt_verify(crt, &ca, 1, 0, &status);
  if (rc < 0 || status) {
    gnutls_datum_t out = {NULL, 0};
    if (rc >= 0)
      gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0);
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: does not chain to the node's CA (ca-cert.pem): %s", what,
                rc < 0 ? gnutls_strerror(rc) : out.data ? (const char *)out.data : "invalid");
    gnutls_free(out.data);
    return FALSE;
  }
  time_t now = time(NULL);
  if (gnutls_x509_crt_get_activation_time(crt) > now ||
      gnutls_x509_crt_get_expiration_time(crt) < now) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: not valid now (expired or not "
                "yet active)", what);
    return FALSE;
  }
  return TRUE;
}

static gboolean crt_names(gnutls_x509_crt_t crt, const char *name)
{
  return gnutls_x509_crt_check_hostname2(crt, name, GNUTLS_VERIFY_DO_NOT_ALLOW_WILDCARDS) != 0;
}

/* A certificate without extended key usage may serve any purpose; one with it must allow
 * the TLS purpose it is used for, or GnuTLS refuses it during the handshake. */
static gboolean has_purpose(gnutls_x509_crt_t crt, const char *oid)
{
  char buf[128];
  gboolean any = FALSE;
  for (unsigned int i = 0;; i++) {
    size_t size = sizeof(buf);
    int rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, buf, &size, NULL);
    if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
      return !any;
    if (rc < 0)
      return FALSE;
    any = TRUE;
    if (g_str_equal(buf, oid))
      return TRUE;
  }
}

/* The key pair of one end: its certificate chains to the CA, names this node, has the
 * purpose, and its key is the certificate's. */
static GTlsCertificate *load_end(VmletTls *tls, const char *end, const char *node_name,
                                 const char *purpose_oid, GError **error)
{
  g_autofree char *cert_path = g_strdup_printf("%s/%s-cert.pem", tls->dir, end);
  g_autofree char *key_path = g_strdup_printf("%s/%s-key.pem", tls->dir, end);
  g_autofree char *pem = NULL, *key_pem = NULL;
  gsize len = 0, key_len = 0;
  if (!read_pem(cert_path, FALSE, &pem, &len, error) ||
      !read_pem(key_path, TRUE, &key_pem, &key_len, error))
    return NULL;
  gnutls_x509_crt_t crt = import_crt(cert_path, pem, len, error);
  if (!crt)
    return NULL;
  gboolean ok = verify_crt(tls->ca, crt, cert_path, error);
  if (ok && !crt_names(crt, node_name)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: does not name this node \"%s\" (as CN or DNS name): peers would refuse "
                "it", cert_path, node_name);
    ok = FALSE;
  }
  if (ok && !has_purpose(crt, purpose_oid)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: its extended key usage lacks TLS %s authentication", cert_path, end);
    ok = FALSE;
  }
  gnutls_x509_crt_deinit(crt);
  if (!ok)
    return NULL;
  /* With its key: GIO checks that the two belong together. */
  g_autofree char *both = g_strconcat(pem, "\n", key_pem, NULL);
  GTlsCertificate *cert = g_tls_certificate_new_from_pem(both, -1, error);
  if (!cert)
    g_prefix_error(error, "%s and %s: ", cert_path, key_path);
  return cert;
}

VmletTls *vmlet_tls_load(const char *dir, const char *node_name, GError **error)
{
  g_autoptr(VmletTls) tls = g_new0(VmletTls, 1);
  tls->dir = g_strdup(dir);
  g_autofree char *ca_path = g_build_filename(dir, "ca-cert.pem", NULL);
  g_autofree char *pem = NULL;
  gsize len = 0;
  if (!read_pem(ca_path, FALSE, &pem, &len, error) ||
      !(tls->ca = import_crt(ca_path, pem, len, error)))
    return NULL;
  tls->db = g_tls_file_database_new(ca_path, error);
  if (!tls->db) {
    g_prefix_error(error, "%s: ", ca_path);
    return NULL;
  }
  tls->server = load_end(tls, "server", node_name, GNUTLS_KP_TLS_WWW_SERVER, error);
  if (!tls->server)
    return NULL;
  tls->client = load_end(tls, "client", node_name, GNUTLS_KP_TLS_WWW_CLIENT, error);
  if (!tls->client)
    return NULL;
  return g_steal_pointer(&tls);
}

/* ---- peers' certificates ---- */

static gnutls_x509_crt_t crt_of(GTlsCertificate *cert, GError **error)
{
  g_autofree char *pem = NULL;
  g_object_get(cert, "certificate-pem", &pem, NULL);
  if (!pem) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "the peer's certificate has no PEM");
    return NULL;
  }
  return import_crt("the peer's certificate", pem, strlen(pem), error);
}

gboolean vmlet_tls_verify(const VmletTls *tls, GTlsCertificate *cert, GError **error)
{
  gnutls_x509_crt_t crt = crt_of(cert, error);
  if (!crt)
    return FALSE;
  gboolean ok = verify_crt(tls->ca, crt, "the peer's certificate", error);
  gnutls_x509_crt_deinit(crt);
  return ok;
}

gboolean vmlet_tls_certificate_names(GTlsCertificate *cert, const char *name)
{
  gnutls_x509_crt_t crt = crt_of(cert, NULL);
  if (!crt)
    return FALSE;
  gboolean ok = crt_names(crt, name);
  gnutls_x509_crt_deinit(crt);
  return ok;
}

char *vmlet_tls_certificate_dn(GTlsCertificate *cert, GError **error)
{
  gnutls_x509_crt_t crt = crt_of(cert, error);
  if (!crt)
    return NULL;
  /* gnutls_x509_crt_get_dn is what QEMU's qcrypto_tls_session_check_certificate uses. */
  char buf[1024];
  size_t size = sizeof(buf);
  int rc = gnutls_x509_crt_get_dn(crt, buf, &size);
  gnutls_x509_crt_deinit(crt);
  if (rc < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "the peer's certificate: no usable "
                "subject: %s", gnutls_strerror(rc));
    return NULL;
  }
  return g_strdup(buf);
}

/* ---- QEMU's copy ---- */

static gboolean copy_file(const char *from, const char *to, gid_t gid, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(from, PEM_MAX_BYTES, &data, &len, error) ||
      !vmlet_write_file_atomic_nosync(to, data, len, 0640, error))
    return FALSE;
  if (chown(to, getuid(), gid) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: chown: %s", to, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

gboolean vmlet_tls_install_for_qemu(const VmletTls *tls, const char *dir, gboolean server,
                                    gid_t gid, GError **error)
{
  /* vmletd's own directory, never one QEMU can write: with write access to the directory
   * QEMU could put a symlink where vmletd (root) then chmods, chowns and writes. QEMU's
   * group reads it; nobody else does. */
  if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  struct stat st;
  if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid()) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: not a directory of vmletd's own",
                dir);
    return FALSE;
  }
  if (chown(dir, getuid(), gid) < 0 || chmod(dir, 0750) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  const char *end = server ? "server" : "client";
  g_autofree char *cert = g_strdup_printf("%s-cert.pem", end);
  g_autofree char *key = g_strdup_printf("%s-key.pem", end);
  const char *files[] = {"ca-cert.pem", cert, key};
  for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
    g_autofree char *from = g_build_filename(tls->dir, files[i], NULL);
    g_autofree char *to = g_build_filename(dir, files[i], NULL);
    if (!copy_file(from, to, gid, error))
      return FALSE;
  }
  return TRUE;
}
