/*
 * Request parsing. Bodies go through jansson once (it rejects invalid UTF-8 and bad syntax, which
 * a body we pass through must not have, or the backend would answer something less clear);
 * only the top-level fields the gateway needs are looked at.
 */
#include "gw_parse.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(struct gw_perr *err, const char *param, const char *msg)
{
	if (err) {
		snprintf(err->param, sizeof err->param, "%s", param);
		snprintf(err->msg, sizeof err->msg, "%s", msg);
	}
	return param[0] ? GW_PARSE_EFIELD : GW_PARSE_EJSON;
}

static int model_ok(const char *s, size_t n)
{
	if (n == 0 || n > GW_MODEL_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int gw_body_parse(const char *body, size_t len, int require_model, struct gw_body_info *out,
		  struct gw_perr *err)
{
	memset(out, 0, sizeof *out);
	out->prompt_estimate = (int64_t)(len / 4) + 1;
	if (len == 0)
		return fail(err, "", "request body is empty: expected a JSON object");
	json_error_t je;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		char m[160];
		snprintf(m, sizeof m, "invalid JSON body at offset %d: %.100s", je.position, je.text);
		return fail(err, "", m);
	}
	int rc = GW_PARSE_OK;
	if (!json_is_object(root)) {
		rc = fail(err, "", "request body must be a JSON object");
		goto out;
	}
	json_t *v = json_object_get(root, "model");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || !model_ok(json_string_value(v), json_string_length(v))) {
			rc = fail(err, "model", "'model' must be a non-empty string of at most 200 bytes");
			goto out;
		}
		out->model_len = json_string_length(v);
		memcpy(out->model, json_string_value(v), out->model_len);
		out->model[out->model_len] = '\0';
	} else if (require_model) {
		rc = fail(err, "model", "you must provide a model parameter");
		goto out;
	}
	v = json_object_get(root, "stream");
	if (v && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			rc = fail(err, "stream", "'stream' must be a boolean");
			goto out;
		}
		out->stream = json_is_true(v);
	}
	const char *mt_names[2] = {"max_tokens", "max_completion_tokens"};
	for (int i = 0; i < 2; i++) {
		v = json_object_get(root, mt_names[i]);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 100000000) {
			char m[96];
			snprintf(m, sizeof m, "'%s' must be an integer between 1 and 100000000",
				 mt_names[i]);
			rc = fail(err, mt_names[i], m);
			goto out;
		}
		out->max_tokens = json_integer_value(v);
	}
	v = json_object_get(root, "stream_options");
	if (v && !json_is_null(v)) {
		if (!json_is_object(v)) {
			rc = fail(err, "stream_options", "'stream_options' must be an object");
			goto out;
		}
		json_t *iu = json_object_get(v, "include_usage");
		if (iu && !json_is_null(iu)) {
			if (!json_is_boolean(iu)) {
				rc = fail(err, "stream_options.include_usage",
					  "'stream_options.include_usage' must be a boolean");
				goto out;
			}
			out->include_usage = json_is_true(iu);
		}
	}
out:
	json_decref(root);
	return rc;
}

static int token_ok(const char *s, size_t n)
{
	if (n == 0 || n > 512)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

static void trim(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t'))
		(*s)++, (*n)--;
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

int gw_auth_parse(const char *authorization, const char *x_api_key, const char **key,
		  size_t *key_len)
{
	*key = NULL;
	*key_len = 0;
	if (authorization && authorization[0]) {
		const char *s = authorization;
		size_t n = strlen(s);
		trim(&s, &n);
		if (n < 7 || strncasecmp(s, "bearer", 6) != 0 || (s[6] != ' ' && s[6] != '\t'))
			return GW_AUTH_MALFORMED;
		s += 7, n -= 7;
		trim(&s, &n);
		if (!token_ok(s, n))
			return GW_AUTH_MALFORMED;
		*key = s, *key_len = n;
		return GW_AUTH_OK;
	}
	if (x_api_key && x_api_key[0]) {
		const char *s = x_api_key;
		size_t n = strlen(s);
		trim(&s, &n);
		if (!token_ok(s, n))
			return GW_AUTH_MALFORMED;
		*key = s, *key_len = n;
		return GW_AUTH_OK;
	}
	return GW_AUTH_MISSING;
}

int gw_request_id_sane(const char *s, size_t len)
{
	if (!s || len == 0 || len > 64)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

/* Random bytes for request ids come from a per-thread pool refilled 4 KiB at a time: one
 * getrandom syscall per ~370 requests instead of one per request (the ids are CSPRNG output
 * either way; they identify, they do not authenticate). */
static _Thread_local uint8_t rid_pool[4096];
static _Thread_local size_t rid_left;

void gw_request_id_new(char out[32])
{
	static const char hex[] = "0123456789abcdef";
	enum { N = 11 };
	if (rid_left < N) {
		randombytes_buf(rid_pool, sizeof rid_pool);
		rid_left = sizeof rid_pool;
	}
	const uint8_t *r = rid_pool + sizeof rid_pool - rid_left;
	rid_left -= N;
	memcpy(out, "req_", 4);
	for (size_t i = 0; i < N; i++) {
		out[4 + 2 * i] = hex[r[i] >> 4];
		out[5 + 2 * i] = hex[r[i] & 15];
	}
	out[26] = '\0';
}
