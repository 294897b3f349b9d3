/*
 * provider: the demo backend's answers (see pv_demo.h). Objects are built with jansson, so any
 * text echoed from the request is escaped properly; the request itself was checked as UTF-8 by
 * jansson when it was parsed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pv_demo.h"

/* The fixed part of the answer, one chunk per word (leading space included, as models stream). */
static const char *const tail_words[] = {
        " This",    " answer",  " came",    " from",      " the",     " morgate-provider",
        " demo",    " backend", " through", " a",         " paid",    " Morpheus",
        " session", " and",     " the",     " encrypted", " MOR-RPC", " link,",
        " with",    " no",      " network", " access."};
#define TAIL_WORDS (sizeof tail_words / sizeof tail_words[0])

static int fail(struct rc_errinfo *err, int rc, const char *text)
{
	if (err) {
		err->offset = 0;
		snprintf(err->text, sizeof err->text, "%s", text);
	}
	return rc;
}

/* The text of the last user message: a string, or the first text part of a parts array. */
static const char *last_user_text(const json_t *msgs)
{
	for (size_t i = json_array_size(msgs); i-- > 0;) {
		const json_t *m = json_array_get(msgs, i);
		if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")) ||
		    strcmp(json_string_value(json_object_get(m, "role")), "user") != 0)
			continue;
		const json_t *c = json_object_get(m, "content");
		if (json_is_string(c))
			return json_string_value(c);
		for (size_t k = 0; json_is_array(c) && k < json_array_size(c); k++) {
			const json_t *t = json_object_get(json_array_get(c, k), "text");
			if (json_is_string(t))
				return json_string_value(t);
		}
		return NULL;
	}
	return NULL;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* "You said:" and up to PV_DEMO_ECHO_WORDS words of text, as NUL-separated words in d->echo
 * (each stored with its leading space), the last with a full stop. */
static int add_echo(struct pv_demo *d, const char *text)
{
	size_t n = text ? strlen(text) : 0;
	/* "You\0 said:\0" (11), the words with a space and a NUL each (at most n + 2 * 12) or
	 * " (nothing)\0" (11), and one more byte for the full stop */
	d->echo = malloc(n + 2 * PV_DEMO_ECHO_WORDS + 24);
	if (!d->echo)
		return RC_ENOMEM;
	char *p = d->echo;
	static const char *const intro[] = {"You", " said:"};
	for (size_t i = 0; i < 2; i++) {
		size_t l = strlen(intro[i]);
		memcpy(p, intro[i], l + 1);
		d->words[d->total++] = p;
		p += l + 1;
	}
	size_t i = 0, words = 0;
	char *last = NULL;
	while (text && words < PV_DEMO_ECHO_WORDS) {
		while (i < n && is_space(text[i]))
			i++;
		if (i == n)
			break;
		size_t s = i;
		while (i < n && !is_space(text[i]))
			i++;
		*p = ' ';
		memcpy(p + 1, text + s, i - s);
		p[1 + i - s] = '\0';
		d->words[d->total++] = last = p;
		p += i - s + 2;
		words++;
	}
	if (!last) { /* nothing to echo */
		memcpy(p, " (nothing)", 11);
		d->words[d->total++] = last = p;
		p += 11;
	}
	/* the full stop joins the last echoed word: "... word." (p is just past its NUL) */
	p[-1] = '.';
	*p = '\0';
	return RC_OK;
}

int pv_demo_start(struct pv_demo *d, const char *req, size_t len, const char *model, const char *id,
                  int64_t created, struct rc_errinfo *err)
{
	memset(d, 0, sizeof *d);
	json_t *v = json_loadb(req, len, 0, NULL);
	int rc = RC_OK;
	if (!json_is_object(v)) {
		rc = fail(err, RC_EPARSE, "request is not a JSON object");
		goto out;
	}
	const json_t *msgs = json_object_get(v, "messages");
	if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
		rc = fail(err, RC_EPROTO, "'messages' must be a non-empty array");
		goto out;
	}
	json_int_t max = 0;
	static const char *const max_names[] = {"max_completion_tokens", "max_tokens"};
	for (size_t i = 0; i < 2; i++) {
		const json_t *m = json_object_get(v, max_names[i]);
		if (!m || json_is_null(m))
			continue;
		if (!json_is_integer(m) || json_integer_value(m) < 1) {
			rc = fail(err, RC_EPROTO,
			          i ? "'max_tokens' must be a positive integer"
			            : "'max_completion_tokens' must be a positive integer");
			goto out;
		}
		max = json_integer_value(m);
		break;
	}
	d->stream = json_is_true(json_object_get(v, "stream"));
	snprintf(d->id, sizeof d->id, "%s", id);
	d->created = created;
	d->prompt_tokens = len / 4 + 1;
	if (!(d->model = strdup(model))) {
		rc = RC_ENOMEM;
		goto out;
	}
	if ((rc = add_echo(d, last_user_text(msgs))) != RC_OK)
		goto out;
	for (size_t i = 0; i < TAIL_WORDS; i++)
		d->words[d->total++] = tail_words[i];
	d->nwords = max > 0 && (size_t)max < d->total ? (size_t)max : d->total;
out:
	json_decref(v);
	if (rc != RC_OK)
		pv_demo_release(d);
	return rc;
}

bool pv_demo_next_is_word(const struct pv_demo *d)
{
	return d->stream && d->next < d->nwords;
}

static json_t *usage(const struct pv_demo *d)
{
	return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)d->prompt_tokens,
	                 "completion_tokens", (json_int_t)d->nwords, "total_tokens",
	                 (json_int_t)(d->prompt_tokens + d->nwords));
}

static int emit(json_t *o, struct rc_buf *out)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		return RC_ENOMEM;
	int rc = rc_buf_append(out, s, strlen(s)) ? RC_ENOMEM : 1;
	free(s);
	return rc;
}

int pv_demo_next(struct pv_demo *d, struct rc_buf *out)
{
	if (d->next > d->nwords)
		return 0;
	const char *finish = d->nwords < d->total ? "length" : "stop";
	if (!d->stream) {
		size_t n = 0;
		for (size_t i = 0; i < d->nwords; i++)
			n += strlen(d->words[i]);
		char *text = malloc(n + 1);
		if (!text)
			return RC_ENOMEM;
		n = 0;
		for (size_t i = 0; i < d->nwords; i++) {
			size_t l = strlen(d->words[i]);
			memcpy(text + n, d->words[i], l);
			n += l;
		}
		text[n] = '\0';
		json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s},s:s}],s:o}", "id",
		                      d->id, "object", "chat.completion", "created",
		                      (json_int_t)d->created, "model", d->model, "choices", "index",
		                      0, "message", "role", "assistant", "content", text,
		                      "finish_reason", finish, "usage", usage(d));
		free(text);
		d->next = d->nwords + 1;
		return emit(o, out);
	}
	json_t *o;
	if (d->next < d->nwords) {
		json_t *delta = d->next == 0 ? json_pack("{s:s,s:s}", "role", "assistant",
		                                         "content", d->words[0])
		                             : json_pack("{s:s}", "content", d->words[d->next]);
		o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:n}]}", "id", d->id, "object",
		              "chat.completion.chunk", "created", (json_int_t)d->created, "model",
		              d->model, "choices", "index", 0, "delta", delta, "finish_reason");
	} else {
		o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{},s:s}],s:o}", "id", d->id, "object",
		              "chat.completion.chunk", "created", (json_int_t)d->created, "model",
		              d->model, "choices", "index", 0, "delta", "finish_reason", finish,
		              "usage", usage(d));
	}
	d->next++;
	return emit(o, out);
}

void pv_demo_release(struct pv_demo *d)
{
	if (!d)
		return;
	free(d->model);
	free(d->echo);
	d->model = d->echo = NULL;
}
