/* What actions.c, actions-attachment.c and actions-operation.c share: request bodies,
 * drop-in files and the errors of writing them. */
#pragma once

#include "manager.h"
#include "objects.h"
#include "vmlet-error.h"

/* Fails with cause's message under code, the one this action answers with. */
void vmlet_action_fail(GError **error, VmletErrorCode code, const GError *cause);
/* <config-dir>/DIR/[NS.]NAME.json, where the API writes ns/name. */
char *vmlet_action_dropin_path(VmletManager *mgr, const char *dir, const char *ns,
                               const char *name);
/* CONFLICT when the drop-in at path holds a List (it holds more than the one object). */
gboolean vmlet_action_refuse_list(const char *path, GError **error);
/* {}: answered for an object that went away meanwhile. */
JsonNode *vmlet_action_empty_object(void);
/* body as a JSON object, or MALFORMED with line:column errors named after source. */
JsonNode *vmlet_action_parse_json(const char *source, GBytes *body, GError **error);
/* body as exactly one object of kind named ns/name (VmletObject *), or INVALID. */
GPtrArray *vmlet_action_parse_one(const char *ns, const char *name, GBytes *body,
                                  VmletKind kind, const char *kind_name, GError **error);
/* Atomic (fsynced) write of a drop-in, or IO. */
gboolean vmlet_action_write_dropin(const char *path, const void *data, gsize len,
                                   GError **error);
/* NOT_FOUND when there was none, IO otherwise. */
gboolean vmlet_action_remove_dropin(const char *path, GError **error);
