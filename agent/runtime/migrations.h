/* What a node shares among its migrations: its certificates, its peers, the client it
 * calls them with, the stream ports and the in/out limits, and the table of migrations in
 * progress by id (what the peer API answers about). One per manager; NULL when [migration]
 * is not enabled. */
#pragma once

#include <glib-object.h>

#include "node.h"
#include "peer-client.h"
#include "peer.h"
#include "tls.h"

typedef struct _VmletMigrations VmletMigrations;

/* NULL without an error when migration is off; NULL with the file and reason when it is on
 * but the certificates are unusable (vmletd then refuses to enable it and says why). */
VmletMigrations *vmlet_migrations_new(const VmletNode *node, GError **error);
void vmlet_migrations_free(VmletMigrations *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletMigrations, vmlet_migrations_free)

/* Re-reads <config-dir>/peers.d; a bad drop-in goes to problems and is skipped. */
void vmlet_migrations_load_peers(VmletMigrations *m, GPtrArray *problems);
/* The peer named name, or NULL. */
VmletPeer *vmlet_migrations_peer(VmletMigrations *m, const char *name);
/* Every peer, sorted by name (the array holds references). */
GPtrArray *vmlet_migrations_peers(VmletMigrations *m);

const VmletNode *vmlet_migrations_node(VmletMigrations *m);
const VmletTls *vmlet_migrations_tls(VmletMigrations *m);
VmletPeerClient *vmlet_migrations_client(VmletMigrations *m);

/* A migration takes a slot of its direction (refused past [migration] outbound/inbound,
 * naming the limit) and gives it back once ended. */
gboolean vmlet_migrations_take_slot(VmletMigrations *m, gboolean outbound, GError **error);
void vmlet_migrations_give_slot(VmletMigrations *m, gboolean outbound);
guint vmlet_migrations_in_use(VmletMigrations *m, gboolean outbound);

/* n free ports of [migration] stream-ports (checked by binding them, released at once: QEMU
 * binds them next); given back with vmlet_migrations_give_ports. */
gboolean vmlet_migrations_take_ports(VmletMigrations *m, guint n, guint *out, GError **error);
void vmlet_migrations_give_ports(VmletMigrations *m, const guint *ports, guint n);

/* The migrations in progress on this node, by id: the object that carries each (a VmletVm)
 * is registered for its length, weakly. These (and peer, give_slot, give_ports) do nothing
 * without migrations (NULL: not enabled), as a restarted vmletd may find journals then. */
void vmlet_migrations_register(VmletMigrations *m, const char *id, GObject *carrier);
void vmlet_migrations_unregister(VmletMigrations *m, const char *id);
GObject *vmlet_migrations_lookup(VmletMigrations *m, const char *id);
