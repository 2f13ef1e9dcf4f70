/* The handlers of the route table (routes.c), one per row: each parses its request, calls
 * an action or reads the manager, and answers (respond.h). Declared without libsoup so the
 * table and its test see them as plain functions. */
#pragma once

#include "routes.h"

void vmlet_handle_healthz(VmletCall *call);

/* handlers-vm.c */
void vmlet_handle_list_vms(VmletCall *call);
void vmlet_handle_get_vm(VmletCall *call);
void vmlet_handle_put_vm(VmletCall *call);
void vmlet_handle_patch_vm(VmletCall *call);
void vmlet_handle_delete_vm(VmletCall *call);
void vmlet_handle_pause_vm(VmletCall *call);
void vmlet_handle_unpause_vm(VmletCall *call);
void vmlet_handle_list_operations(VmletCall *call);
void vmlet_handle_create_operation(VmletCall *call);
void vmlet_handle_get_operation(VmletCall *call);
void vmlet_handle_delete_operation(VmletCall *call);

/* handlers-node.c */
void vmlet_handle_get_node(VmletCall *call);
void vmlet_handle_drain_node(VmletCall *call);
void vmlet_handle_uncordon_node(VmletCall *call);

/* handlers-attachment.c */
void vmlet_handle_list_attachments(VmletCall *call);
void vmlet_handle_get_attachment(VmletCall *call);
void vmlet_handle_put_attachment(VmletCall *call);
void vmlet_handle_delete_attachment(VmletCall *call);

/* watch.c */
void vmlet_handle_watch_vms(VmletCall *call);
void vmlet_handle_watch_attachments(VmletCall *call);
/* ?watch=true on one object: refused, a watch is of a collection. */
void vmlet_handle_watch_one(VmletCall *call);
