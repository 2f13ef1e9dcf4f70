/* The fake QMP peer's script and log (fake-qmp.h). */
#include "fake-qmp-private.h"

void fq_rule_free(gpointer p)
{
  Rule *r = p;
  g_free(r->command);
  if (r->match)
    json_object_unref(r->match);
  g_free(r->reply);
  g_free(r);
}

void fq_held_free(gpointer p)
{
  Held *h = p;
  g_free(h->command);
  if (h->args)
    json_object_unref(h->args);
  if (h->id)
    json_node_unref(h->id);
  g_free(h);
}

void fq_command_free(gpointer p)
{
  FakeQmpCommand *c = p;
  g_free(c->command);
  g_free(c->arguments);
  g_free(c);
}

void fq_hook_free(gpointer p)
{
  Hook *h = p;
  g_free(h->command);
  g_free(h);
}

/* ---- scripting ---- */

JsonObject *fq_parse_object(const char *text)
{
  if (!text)
    return NULL;
  g_autoptr(JsonParser) p = json_parser_new();
  g_autoptr(GError) error = NULL;
  if (!json_parser_load_from_data(p, text, -1, &error))
    g_error("fake-qmp: bad JSON in a test script: %s: %s", text, error->message);
  JsonNode *root = json_parser_get_root(p);
  if (!JSON_NODE_HOLDS_OBJECT(root))
    g_error("fake-qmp: expected a JSON object in a test script: %s", text);
  return json_object_ref(json_node_get_object(root));
}

static gboolean matches(const Rule *r, const char *command, JsonObject *args)
{
  if (!g_str_equal(r->command, command))
    return FALSE;
  if (!r->match)
    return TRUE;
  g_autoptr(GList) members = json_object_get_members(r->match);
  for (GList *l = members; l; l = l->next) {
    JsonNode *want = json_object_get_member(r->match, l->data);
    JsonNode *have = args ? json_object_get_member(args, l->data) : NULL;
    if (!have || !json_node_equal(want, have))
      return FALSE;
  }
  return TRUE;
}

/* The newest rule of the kind asked for (withhold or reply) that matches. */
const Rule *fq_find_rule(FakeQmp *fq, const char *command, JsonObject *args,
                             gboolean withhold)
{
  for (guint i = fq->rules->len; i-- > 0;) {
    const Rule *r = fq->rules->pdata[i];
    if ((r->reply == NULL) == withhold && matches(r, command, args))
      return r;
  }
  return NULL;
}

static void add_rule(FakeQmp *fq, const char *command, const char *match, const char *reply)
{
  Rule *r = g_new0(Rule, 1);
  r->command = g_strdup(command);
  r->match = fq_parse_object(match);
  r->reply = g_strdup(reply);
  g_ptr_array_add(fq->rules, r);
}

void fake_qmp_reply(FakeQmp *fq, const char *command, const char *match, const char *reply)
{
  add_rule(fq, command, match, reply);
}

void fake_qmp_reply_error(FakeQmp *fq, const char *command, const char *match,
                          const char *klass, const char *desc)
{
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "error");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "class");
  json_builder_add_string_value(b, klass);
  json_builder_set_member_name(b, "desc");
  json_builder_add_string_value(b, desc);
  json_builder_end_object(b);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = fq_to_text(root);
  add_rule(fq, command, match, text);
}

void fake_qmp_withhold(FakeQmp *fq, const char *command, const char *match)
{
  add_rule(fq, command, match, NULL);
}

guint fake_qmp_release(FakeQmp *fq, const char *command)
{
  for (guint i = fq->rules->len; i-- > 0;) {
    const Rule *r = fq->rules->pdata[i];
    if (!r->reply && (!command || g_str_equal(r->command, command)))
      g_ptr_array_remove_index(fq->rules, i);
  }
  guint n = 0;
  for (guint i = 0; i < fq->held->len;) {
    Held *h = fq->held->pdata[i];
    if (command && !g_str_equal(h->command, command)) {
      i++;
      continue;
    }
    const Rule *r = fq_find_rule(fq, h->command, h->args, FALSE);
    fq_send_reply(h->conn, r ? r->reply : EMPTY_REPLY, h->id);
    g_ptr_array_remove_index(fq->held, i);
    n++;
  }
  return n;
}

void fake_qmp_on_command(FakeQmp *fq, const char *command, FakeQmpHook hook,
                         gpointer user_data)
{
  Hook *h = g_new0(Hook, 1);
  h->command = g_strdup(command);
  h->hook = hook;
  h->data = user_data;
  g_ptr_array_add(fq->hooks, h);
}

/* ---- what was received ---- */

GPtrArray *fake_qmp_log(FakeQmp *fq)
{
  return fq->log;
}

void fake_qmp_clear_log(FakeQmp *fq)
{
  g_ptr_array_set_size(fq->log, 0);
}

guint fake_qmp_count(FakeQmp *fq, const char *command)
{
  guint n = 0;
  for (guint i = 0; i < fq->log->len; i++)
    n += g_str_equal(((FakeQmpCommand *)fq->log->pdata[i])->command, command);
  return n;
}

char *fake_qmp_sequence(FakeQmp *fq, const char *const *skip)
{
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < fq->log->len; i++) {
    const char *name = ((FakeQmpCommand *)fq->log->pdata[i])->command;
    if (skip && g_strv_contains(skip, name))
      continue;
    if (s->len)
      g_string_append_c(s, ',');
    g_string_append(s, name);
  }
  return g_string_free(s, FALSE);
}
