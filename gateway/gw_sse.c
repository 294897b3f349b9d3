/*
 * SSE reader (WHATWG HTML "server-sent events" line rules: lines end in CRLF, LF or CR; a blank
 * line dispatches the event; "data:" lines concatenate with LF; one space after the colon is
 * dropped; lines starting with ':' are comments). Only data lines are kept.
 */
#include "gw_sse.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void gw_sse_init(struct gw_sse *s)
{
	memset(s, 0, sizeof *s);
}

void gw_sse_release(struct gw_sse *s)
{
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
}

static int put(struct gw_sse *s, char c)
{
	if (s->len + 1 >= GW_SSE_EVENT_MAX) {
		s->in_line_skip = 1;
		return 0;
	}
	if (s->len + 1 >= s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 256;
		char *nb = realloc(s->buf, nc);
		if (!nb)
			return -1;
		s->buf = nb;
		s->cap = nc;
	}
	s->buf[s->len++] = c;
	return 0;
}

/*
 * Responses can be large (long completions, embeddings); only the "usage" member matters. Find
 * the last "usage": { ... } span (usage comes after the choices) by scanning for the matching
 * brace outside strings, and parse just that; fall back to the whole document when the scan
 * finds no object there.
 */
static const char *usage_span(const char *s, size_t len, size_t *n)
{
	const char *best = NULL;
	for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), "\"usage\"", 7)); p += 7) {
		const char *q = p + 7, *end = s + len;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != ':')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != '{')
			continue;
		int depth = 0, in_str = 0;
		for (const char *r = q; r < end; r++) {
			if (in_str) {
				if (*r == '\\')
					r++;
				else if (*r == '"')
					in_str = 0;
			} else if (*r == '"') {
				in_str = 1;
			} else if (*r == '{') {
				depth++;
			} else if (*r == '}' && --depth == 0) {
				best = q;
				*n = (size_t)(r - q + 1);
				break;
			}
		}
	}
	return best;
}

int gw_usage_from_json(const char *json, size_t len, int64_t *prompt, int64_t *completion)
{
	size_t un = 0;
	const char *u0 = usage_span(json, len, &un);
	if (u0) {
		json_t *u = json_loadb(u0, un, 0, NULL);
		int found = 0;
		json_t *pt = json_object_get(u, "prompt_tokens");
		json_t *ct = json_object_get(u, "completion_tokens");
		if (json_is_integer(pt) || json_is_integer(ct)) {
			*prompt = json_is_integer(pt) && json_integer_value(pt) > 0 ? json_integer_value(pt) : 0;
			*completion = json_is_integer(ct) && json_integer_value(ct) > 0 ? json_integer_value(ct) : 0;
			found = 1;
		}
		json_decref(u);
		if (found)
			return 1;
	}
	json_t *root = json_loadb(json, len, 0, NULL);
	int found = 0;
	json_t *u = root ? json_object_get(root, "usage") : NULL;
	if (json_is_object(u)) {
		json_t *pt = json_object_get(u, "prompt_tokens");
		json_t *ct = json_object_get(u, "completion_tokens");
		if (json_is_integer(pt) || json_is_integer(ct)) {
			*prompt = json_is_integer(pt) && json_integer_value(pt) > 0 ? json_integer_value(pt) : 0;
			*completion = json_is_integer(ct) && json_integer_value(ct) > 0 ? json_integer_value(ct) : 0;
			found = 1;
		}
	}
	json_decref(root);
	return found;
}

static void dispatch(struct gw_sse *s)
{
	if (!s->has_data)
		return;
	/* data lines were joined with LF after each: drop the last one */
	size_t n = s->len && s->buf[s->len - 1] == '\n' ? s->len - 1 : s->len;
	if (n == 6 && !memcmp(s->buf, "[DONE]", 6)) {
		s->saw_done = 1;
	} else {
		s->events++;
		/* Parse only the events that can matter: most chunks hold neither word. */
		if (n && (memmem(s->buf, n, "\"usage\"", 7) || memmem(s->buf, n, "\"error\"", 7))) {
			json_t *root = json_loadb(s->buf, n, 0, NULL);
			if (json_is_object(root)) {
				if (json_object_get(root, "error"))
					s->saw_error = 1;
				int64_t p = 0, c = 0;
				json_t *u = json_object_get(root, "usage");
				if (json_is_object(u)) {
					json_t *pt = json_object_get(u, "prompt_tokens");
					json_t *ct = json_object_get(u, "completion_tokens");
					if (json_is_integer(pt) || json_is_integer(ct)) {
						p = json_is_integer(pt) ? json_integer_value(pt) : 0;
						c = json_is_integer(ct) ? json_integer_value(ct) : 0;
						s->have_usage = 1;
						s->prompt_tokens = p > 0 ? p : 0;
						s->completion_tokens = c > 0 ? c : 0;
					}
				}
			}
			json_decref(root);
		}
	}
	s->len = 0;
	s->has_data = 0;
}

static void end_line(struct gw_sse *s, int blank)
{
	if (blank) {
		dispatch(s);
	} else if ((s->field == 1 || s->field == 3) && !s->in_line_skip) {
		put(s, '\n');
	}
	s->field = 0;
	s->field_len = 0;
	s->in_line_skip = 0;
}

int gw_sse_feed(struct gw_sse *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (s->after_cr) {
			s->after_cr = 0;
			if (c == '\n')
				continue;
		}
		if (c == '\r' || c == '\n') {
			int blank = s->field == 0 && s->field_len == 0;
			if (s->field == 0 && s->field_len > 0) {
				/* a field name with no colon: "data" alone means an empty data line */
				if (s->field_len == 4 && !memcmp(s->name, "data", 4)) {
					s->has_data = 1;
					s->field = 1;
				}
			}
			end_line(s, blank);
			if (c == '\r')
				s->after_cr = 1;
			continue;
		}
		if (s->field == 0) {
			if (c == ':') {
				if (s->field_len == 4 && !memcmp(s->name, "data", 4)) {
					s->field = 1;
					s->has_data = 1;
					/* drop one optional space */
					if (i + 1 < n && p[i + 1] == ' ')
						i++;
					else if (i + 1 == n)
						s->field = 3; /* decide about the space with the next byte */
				} else {
					s->field = 2;
				}
				continue;
			}
			if (s->field_len < sizeof s->name)
				s->name[s->field_len] = c;
			s->field_len++;
			if (s->field_len > sizeof s->name)
				s->field = 2;
			continue;
		}
		if (s->field == 3) {
			s->field = 1;
			if (c == ' ')
				continue;
		}
		if (s->field == 1 && !s->in_line_skip && put(s, c) < 0)
			return -1;
	}
	return 0;
}
