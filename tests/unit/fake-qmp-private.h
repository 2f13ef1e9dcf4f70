/* The fake QMP peer's insides (fake-qmp.h), shared by its two files:
 *
 *   fake-qmp.c         the server: connections, reading commands, writing replies, events
 *   fake-qmp-script.c  what the test scripts (replies, held replies, hooks) and the log
 */
#pragma once

#include "fake-qmp.h"

#define EMPTY_REPLY "{\"return\": {}}"

typedef struct {
  char *command;
  JsonObject *match; /* NULL: any arguments */
  char *reply;       /* NULL: a withhold rule */
} Rule;

typedef struct {
  char *command; /* NULL: every command */
  FakeQmpHook hook;
  gpointer data;
} Hook;

typedef struct Conn Conn;

typedef struct {
  Conn *conn;
  char *command;
  JsonObject *args;
  JsonNode *id;
} Held;

struct Conn {
  gint refs;
  FakeQmp *fq; /* NULL once the peer is freed */
  GSocketConnection *io;
  GDataInputStream *in;
  GCancellable *cancel;
  guint number;
  gboolean negotiated, closed;
};

struct _FakeQmp {
  char *path;
  GSocketService *service;
  GPtrArray *rules; /* Rule *, oldest first */
  GPtrArray *hooks; /* Hook * */
  GPtrArray *held;  /* Held * */
  GPtrArray *log;   /* FakeQmpCommand * */
  GPtrArray *conns; /* Conn *, open ones */
  Conn *current;
  guint n_conns;
};

void fq_rule_free(gpointer rule);
void fq_held_free(gpointer held);
void fq_command_free(gpointer command);
void fq_hook_free(gpointer hook);
/* A JSON object the test wrote (bad JSON there is a bug in the test: g_error). */
JsonObject *fq_parse_object(const char *text);
/* The newest rule of the kind asked for (withhold or reply) that matches. */
const Rule *fq_find_rule(FakeQmp *fq, const char *command, JsonObject *args, gboolean withhold);
char *fq_to_text(JsonNode *node);
/* reply with the command's id added; sent as it is when it is not a JSON object. */
void fq_send_reply(Conn *c, const char *reply, JsonNode *id);
