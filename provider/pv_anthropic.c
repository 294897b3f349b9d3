/*
 * provider: OpenAI <-> Anthropic mapping (see pv_anthropic.h for the table). jansson builds the
 * output; json_dumpb with JSON_COMPACT gives the compact bytes the consumer parses.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "pv_anthropic.h"

static int fail(struct rc_errinfo *err, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct rc_errinfo *err, int rc, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->offset = 0;
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static json_t *load(const char *json, size_t len, struct rc_errinfo *err)
{
	json_error_t je;
	json_t *v = json_loadb(json, len, 0, &je);
	if (!v && err) {
		err->offset = (size_t)je.position;
		snprintf(err->text, sizeof err->text, "%.90s", je.text);
	}
	return v;
}

/* Append v compactly to out; steals v. */
static int dump(json_t *v, struct rc_buf *out)
{
	if (!v)
		return RC_ENOMEM;
	size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
	int rc = n ? rc_buf_grow(out, n) : RC_ENOMEM;
	if (rc == RC_OK) {
		json_dumpb(v, out->ptr + out->len, n, JSON_COMPACT);
		rc_buf_setlen(out, out->len + n);
	}
	json_decref(v);
	return rc;
}

const char *pv_anthropic_finish_reason(const char *r)
{
	if (!r)
		return "stop";
	if (!strcmp(r, "max_tokens"))
		return "length";
	if (!strcmp(r, "tool_use"))
		return "tool_calls";
	if (!strcmp(r, "refusal"))
		return "content_filter";
	return "stop"; /* end_turn, stop_sequence, pause_turn */
}

/* Text of an OpenAI content value: a string, or the concatenated "text" parts of an array. */
static int content_text(const json_t *c, json_t *sys_parts)
{
	if (json_is_string(c))
		return json_array_append(sys_parts, (json_t *)c);
	if (!json_is_array(c))
		return -1;
	size_t i;
	json_t *p;
	json_array_foreach(c, i, p)
	{
		const json_t *t = json_object_get(p, "text");
		if (!json_is_string(t) || json_array_append(sys_parts, (json_t *)t))
			return -1;
	}
	return 0;
}

int pv_anthropic_map_request(const char *json, size_t len, const char *model_name,
                             struct rc_buf *out, bool *stream, struct rc_errinfo *err)
{
	json_t *in = load(json, len, err), *req = NULL, *msgs = NULL, *sys = NULL;
	int rc = RC_OK;
	*stream = false;
	if (!in)
		return RC_EPARSE;
	if (!json_is_object(in)) {
		rc = fail(err, RC_EPROTO, "request: not an object");
		goto out;
	}
	const json_t *m = json_object_get(in, "messages");
	if (!json_is_array(m) || json_array_size(m) == 0) {
		rc = fail(err, RC_EPROTO, "messages: not a non-empty array");
		goto out;
	}
	req = json_object();
	msgs = json_array();
	sys = json_array();
	if (!req || !msgs || !sys) {
		rc = RC_ENOMEM;
		goto out;
	}
	size_t i;
	json_t *e;
	json_array_foreach(m, i, e)
	{
		const char *role = json_string_value(json_object_get(e, "role"));
		const json_t *c = json_object_get(e, "content");
		if (!role) {
			rc = fail(err, RC_EPROTO, "messages[%zu].role: missing", i);
			goto out;
		}
		if (!strcmp(role, "system") || !strcmp(role, "developer")) {
			if (content_text(c, sys)) {
				rc = fail(err, RC_EPROTO, "messages[%zu].content: not text", i);
				goto out;
			}
			continue;
		}
		if (strcmp(role, "user") && strcmp(role, "assistant")) {
			rc = fail(err, RC_EPROTO, "messages[%zu].role: '%.16s' not supported", i,
			          role);
			goto out;
		}
		json_t *nm = json_object(), *nc;
		if (json_is_string(c))
			nc = json_copy((json_t *)c);
		else if (json_is_array(c)) {
			nc = json_array();
			size_t j;
			json_t *p;
			json_array_foreach(c, j, p)
			{
				const json_t *t = json_object_get(p, "text");
				const char *ty = json_string_value(json_object_get(p, "type"));
				if (!json_is_string(t) || (ty && strcmp(ty, "text"))) {
					json_decref(nm);
					json_decref(nc);
					rc = fail(err, RC_EPROTO,
					          "messages[%zu].content[%zu]: only text parts", i,
					          j);
					goto out;
				}
				json_array_append_new(
				        nc, json_pack("{s:s,s:O}", "type", "text", "text", t));
			}
		} else {
			json_decref(nm);
			rc = fail(err, RC_EPROTO, "messages[%zu].content: not text", i);
			goto out;
		}
		json_object_set_new(nm, "role", json_string(role));
		json_object_set_new(nm, "content", nc);
		json_array_append_new(msgs, nm);
	}
	if (json_array_size(msgs) == 0) {
		rc = fail(err, RC_EPROTO, "messages: no user or assistant message");
		goto out;
	}
	json_object_set_new(req, "model", json_string(model_name));
	if (json_array_size(sys)) {
		struct rc_buf b = RC_BUF_INIT;
		json_array_foreach(sys, i, e)
		{
			if (i)
				rc_buf_append(&b, "\n\n", 2);
			rc_buf_append(&b, json_string_value(e), json_string_length(e));
		}
		json_object_set_new(req, "system", json_stringn(b.ptr ? b.ptr : "", b.len));
		rc_buf_release(&b);
	}
	json_object_set(req, "messages", msgs);
	const json_t *mt = json_object_get(in, "max_completion_tokens");
	if (!mt || json_is_null(mt))
		mt = json_object_get(in, "max_tokens");
	if (mt && !json_is_null(mt)) {
		if (!json_is_integer(mt) || json_integer_value(mt) < 1) {
			rc = fail(err, RC_EPROTO, "max_tokens: not a positive integer");
			goto out;
		}
		json_object_set_new(req, "max_tokens", json_integer(json_integer_value(mt)));
	} else
		json_object_set_new(req, "max_tokens",
		                    json_integer(PV_ANTHROPIC_DEFAULT_MAX_TOKENS));
	const json_t *stop = json_object_get(in, "stop");
	if (json_is_string(stop))
		json_object_set_new(req, "stop_sequences", json_pack("[O]", stop));
	else if (json_is_array(stop)) {
		json_array_foreach(stop, i, e) if (!json_is_string(e))
		{
			rc = fail(err, RC_EPROTO, "stop[%zu]: not a string", i);
			goto out;
		}
		if (json_array_size(stop))
			json_object_set_new(req, "stop_sequences", json_copy((json_t *)stop));
	} else if (stop && !json_is_null(stop)) {
		rc = fail(err, RC_EPROTO, "stop: not a string or an array");
		goto out;
	}
	static const char *const copy[] = {"temperature", "top_p", "top_k"};
	for (size_t k = 0; k < 3; k++) {
		const json_t *v = json_object_get(in, copy[k]);
		if (v && json_is_number(v))
			json_object_set(req, copy[k], (json_t *)v);
	}
	const json_t *st = json_object_get(in, "stream");
	if (json_is_true(st)) {
		*stream = true;
		json_object_set_new(req, "stream", json_true());
	}
	rc = dump(req, out);
	req = NULL;
out:
	json_decref(in);
	json_decref(req);
	json_decref(msgs);
	json_decref(sys);
	return rc;
}

void pv_anthropic_stream_init(struct pv_anthropic_stream *st, int64_t created)
{
	memset(st, 0, sizeof *st);
	st->created = created;
	snprintf(st->id, sizeof st->id, "chatcmpl-anthropic");
}

static json_t *chunk(const struct pv_anthropic_stream *st, json_t *delta, const char *finish)
{
	return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:s?}]}", "id", st->id, "object",
	                 "chat.completion.chunk", "created", (json_int_t)st->created, "model",
	                 st->model, "choices", "index", 0, "delta", delta, "finish_reason", finish);
}

static json_t *usage(uint64_t in, uint64_t outt)
{
	return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)in, "completion_tokens",
	                 (json_int_t)outt, "total_tokens", (json_int_t)(in + outt));
}

int pv_anthropic_stream_event(struct pv_anthropic_stream *st, const char *data, size_t len,
                              struct rc_buf *out, int *done, struct rc_errinfo *err)
{
	json_t *ev = load(data, len, err);
	int rc = RC_OK;
	if (!ev)
		return RC_EPARSE;
	const char *type = json_string_value(json_object_get(ev, "type"));
	if (!json_is_object(ev) || !type) {
		rc = fail(err, RC_EPROTO, "event: no type");
	} else if (!strcmp(type, "message_start")) {
		const json_t *msg = json_object_get(ev, "message");
		const char *id = json_string_value(json_object_get(msg, "id"));
		const char *model = json_string_value(json_object_get(msg, "model"));
		if (id)
			snprintf(st->id, sizeof st->id, "%s", id);
		if (model)
			snprintf(st->model, sizeof st->model, "%s", model);
		json_t *u = json_object_get(json_object_get(msg, "usage"), "input_tokens");
		if (json_is_integer(u) && json_integer_value(u) >= 0)
			st->tokens_in = (uint64_t)json_integer_value(u);
		st->started = true;
		rc = dump(
		        chunk(st, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL),
		        out);
	} else if (!strcmp(type, "content_block_delta")) {
		const json_t *d = json_object_get(ev, "delta");
		const char *dt = json_string_value(json_object_get(d, "type"));
		const json_t *text = json_object_get(d, "text");
		if (dt && !strcmp(dt, "text_delta") && json_is_string(text))
			rc = dump(chunk(st, json_pack("{s:O}", "content", text), NULL), out);
	} else if (!strcmp(type, "message_delta")) {
		const char *reason = json_string_value(
		        json_object_get(json_object_get(ev, "delta"), "stop_reason"));
		const json_t *u = json_object_get(ev, "usage");
		json_t *ot = json_object_get(u, "output_tokens");
		json_t *it = json_object_get(u, "input_tokens");
		if (json_is_integer(ot) && json_integer_value(ot) >= 0)
			st->tokens_out = (uint64_t)json_integer_value(ot);
		if (json_is_integer(it) && json_integer_value(it) > 0)
			st->tokens_in = (uint64_t)json_integer_value(it);
		json_t *c = chunk(st, json_object(), pv_anthropic_finish_reason(reason));
		if (c)
			json_object_set_new(c, "usage", usage(st->tokens_in, st->tokens_out));
		rc = dump(c, out);
	} else if (!strcmp(type, "message_stop")) {
		*done = 1;
	} else if (!strcmp(type, "error")) {
		json_t *e = json_object_get(ev, "error");
		rc = dump(json_pack("{s:O}", "error", e ? e : json_null()), out);
		if (rc == RC_OK)
			rc = fail(err, RC_EPROTO, "backend stream error");
	}
	json_decref(ev);
	return rc;
}

int pv_anthropic_map_response(const char *json, size_t len, int64_t created, struct rc_buf *out,
                              uint64_t *tokens_in, uint64_t *tokens_out, struct rc_errinfo *err)
{
	json_t *r = load(json, len, err);
	int rc;
	if (!r)
		return RC_EPARSE;
	const json_t *content = json_object_get(r, "content");
	if (!json_is_object(r) || !json_is_array(content)) {
		json_decref(r);
		return fail(err, RC_EPROTO, "reply: not a message (no content array)");
	}
	struct rc_buf text = RC_BUF_INIT;
	size_t i;
	json_t *p;
	json_array_foreach(content, i, p)
	{
		const json_t *t = json_object_get(p, "text");
		if (json_is_string(t))
			rc_buf_append(&text, json_string_value(t), json_string_length(t));
	}
	const json_t *u = json_object_get(r, "usage");
	json_int_t in = json_integer_value(json_object_get(u, "input_tokens"));
	json_int_t ot = json_integer_value(json_object_get(u, "output_tokens"));
	if (in < 0)
		in = 0;
	if (ot < 0)
		ot = 0;
	const char *id = json_string_value(json_object_get(r, "id"));
	const char *model = json_string_value(json_object_get(r, "model"));
	json_t *o = json_pack(
	        "{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s%},s:s}]}", "id",
	        id ? id : "chatcmpl-anthropic", "object", "chat.completion", "created",
	        (json_int_t)created, "model", model ? model : "", "choices", "index", 0, "message",
	        "role", "assistant", "content", text.ptr ? text.ptr : "", text.len, "finish_reason",
	        pv_anthropic_finish_reason(json_string_value(json_object_get(r, "stop_reason"))));
	if (o)
		json_object_set_new(o, "usage", usage((uint64_t)in, (uint64_t)ot));
	rc = dump(o, out);
	if (tokens_in)
		*tokens_in = (uint64_t)in;
	if (tokens_out)
		*tokens_out = (uint64_t)ot;
	rc_buf_release(&text);
	json_decref(r);
	return rc;
}
