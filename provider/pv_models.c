/*
 * provider: models-config.json parsing (morpheus-protocol §4.1). Pure: text in, table out.
 * Every rejection names the field by its JSON path so the operator can find it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include <router-core/rc_hex.h>

#include "pv_models.h"

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

const char *pv_api_type_name(enum pv_api_type t)
{
	return t == PV_API_CLAUDEAI ? "claudeai" : t == PV_API_DEMO ? "demo" : "openai";
}

/* "0x" + 64 hex digits, either case (the reference needs lowercase; bytes make case moot). */
static int parse_id(const char *s, uint8_t id[32])
{
	if (strlen(s) != 66 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return -1;
	for (int i = 0; i < 32; i++) {
		int v = 0;
		for (int j = 0; j < 2; j++) {
			char c = s[2 + 2 * i + j];
			int d;
			if (c >= '0' && c <= '9')
				d = c - '0';
			else if (c >= 'a' && c <= 'f')
				d = c - 'a' + 10;
			else if (c >= 'A' && c <= 'F')
				d = c - 'A' + 10;
			else
				return -1;
			v = v * 16 + d;
		}
		id[i] = (uint8_t)v;
	}
	return 0;
}

static char *dup_str(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* A string member, or NULL when absent; *bad set when present but not a string. */
static const char *get_str(const json_t *o, const char *k, size_t *len, int *bad)
{
	const json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*bad = 1;
		return NULL;
	}
	*len = json_string_length(v);
	return json_string_value(v);
}

static int parse_entry(const json_t *e, const char *idtext, const char *path, struct pv_model *m,
                       struct rc_errinfo *err)
{
	int bad = 0;
	size_t n = 0;
	const char *s;

	if (!json_is_object(e))
		return fail(err, RC_EPROTO, "%s: not an object", path);
	if (!idtext) {
		s = get_str(e, "modelId", &n, &bad);
		if (bad || !s)
			return fail(err, RC_EPROTO, "%s.modelId: %s", path,
			            bad ? "not a string" : "missing");
		idtext = s;
	}
	if (strlen(idtext) != 66 || parse_id(idtext, m->id))
		return fail(err, RC_EPROTO, "%s.modelId: not 0x and 64 hex digits", path);
	m->id_hex[0] = '0';
	m->id_hex[1] = 'x';
	for (int i = 0; i < 32; i++)
		snprintf(m->id_hex + 2 + 2 * i, 3, "%02x", m->id[i]);

	s = get_str(e, "modelName", &n, &bad);
	if (bad || !s || n == 0)
		return fail(err, RC_EPROTO, "%s.modelName: %s", path,
		            bad ? "not a string" : "missing or empty");
	if (memchr(s, '\0', n))
		return fail(err, RC_EPROTO, "%s.modelName: contains NUL", path);
	if (!(m->name = dup_str(s, n)))
		return RC_ENOMEM;

	s = get_str(e, "apiType", &n, &bad);
	if (bad || !s)
		return fail(err, RC_EPROTO, "%s.apiType: %s", path,
		            bad ? "not a string" : "missing");
	if (!strcmp(s, "openai"))
		m->api = PV_API_OPENAI;
	else if (!strcmp(s, "claudeai"))
		m->api = PV_API_CLAUDEAI;
	else if (!strcmp(s, "demo"))
		m->api = PV_API_DEMO;
	else
		return fail(err, RC_EPROTO,
		            "%s.apiType: unsupported '%.24s' (openai|claudeai|demo)", path, s);

	s = get_str(e, "apiUrl", &n, &bad);
	if (bad || (!s && m->api != PV_API_DEMO))
		return fail(err, RC_EPROTO, "%s.apiUrl: %s", path,
		            bad ? "not a string" : "missing");
	if (!s) { /* the demo generator needs no URL */
		s = "";
		n = 0;
	} else if (memchr(s, '\0', n) || (strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) ||
	    n <= 8 || strpbrk(s, " \t\r\n"))
		return fail(err, RC_EPROTO, "%s.apiUrl: not an http:// or https:// URL", path);
	if (n && s[n - 1] == '/')
		n--;
	if (!(m->url = dup_str(s, n)))
		return RC_ENOMEM;

	s = get_str(e, "apiKey", &n, &bad);
	if (bad)
		return fail(err, RC_EPROTO, "%s.apiKey: not a string", path);
	if (s && (memchr(s, '\0', n) || strpbrk(s, "\r\n")))
		return fail(err, RC_EPROTO, "%s.apiKey: contains a control character", path);
	if (!(m->key = dup_str(s ? s : "", s ? n : 0)))
		return RC_ENOMEM;

	const json_t *v = json_object_get(e, "concurrentSlots");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > PV_MODELS_MAX_SLOTS)
			return fail(err, RC_EPROTO, "%s.concurrentSlots: not an integer 0..%d",
			            path, PV_MODELS_MAX_SLOTS);
		m->slots = (unsigned)json_integer_value(v);
	}

	s = get_str(e, "capacityPolicy", &n, &bad);
	if (bad)
		return fail(err, RC_EPROTO, "%s.capacityPolicy: not a string", path);
	if (!s || n == 0 || !strcmp(s, "simple"))
		m->policy = PV_CAP_SIMPLE;
	else if (!strcmp(s, "idle_timeout"))
		m->policy = PV_CAP_IDLE_TIMEOUT;
	else
		return fail(err, RC_EPROTO,
		            "%s.capacityPolicy: unknown '%.24s' (simple|idle_timeout)", path, s);

	m->demo_chunk_ms = PV_DEMO_CHUNK_MS_DEFAULT;
	v = json_object_get(e, "parameters");
	if (v && !json_is_null(v)) {
		const char *k;
		const json_t *pv;
		if (!json_is_object(v))
			return fail(err, RC_EPROTO, "%s.parameters: not an object", path);
		json_object_foreach((json_t *)v, k, pv)
		{
			if (!json_is_string(pv))
				return fail(err, RC_EPROTO, "%s.parameters.%.24s: not a string",
				            path, k);
		}
		const char *ms = json_string_value(json_object_get(v, "chunkMs"));
		if (ms && m->api == PV_API_DEMO) {
			unsigned long x = 0;
			size_t i = 0;
			for (; ms[i] >= '0' && ms[i] <= '9' && x <= PV_DEMO_CHUNK_MS_MAX; i++)
				x = x * 10 + (unsigned long)(ms[i] - '0');
			if (i == 0 || ms[i] || x > PV_DEMO_CHUNK_MS_MAX)
				return fail(err, RC_EPROTO,
				            "%s.parameters.chunkMs: not a number of ms 0..%d", path,
				            PV_DEMO_CHUNK_MS_MAX);
			m->demo_chunk_ms = (unsigned)x;
		}
	}
	return RC_OK;
}

static void model_release(struct pv_model *m)
{
	free(m->name);
	free(m->url);
	if (m->key) {
		sodium_memzero(m->key, strlen(m->key));
		free(m->key);
	}
}

void pv_models_free(struct pv_models *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		model_release(&t->models[i]);
	free(t->models);
	free(t);
}

int pv_models_parse(const char *text, size_t len, struct pv_models **out, struct rc_errinfo *err)
{
	json_error_t je;
	json_t *root = NULL;
	struct pv_models *t = NULL;
	int rc = RC_OK;
	size_t count;

	*out = NULL;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		if (err) {
			err->offset = (size_t)je.position;
			snprintf(err->text, sizeof err->text, "line %d: %.80s", je.line, je.text);
		}
		return RC_EPARSE;
	}
	if (!json_is_object(root)) {
		rc = fail(err, RC_EPROTO, "top level: not an object");
		goto out;
	}
	const json_t *list = json_object_get(root, "models");
	int v2 = list != NULL;
	if (v2 && !json_is_array(list)) {
		rc = fail(err, RC_EPROTO, "models: not an array");
		goto out;
	}
	count = v2 ? json_array_size(list)
	           : json_object_size(root) - !!json_object_get(root, "$schema");
	if (count == 0) {
		rc = fail(err, RC_EPROTO, "models: no model configured");
		goto out;
	}
	if (count > PV_MODELS_MAX) {
		rc = fail(err, RC_EPROTO, "models: more than %d models", PV_MODELS_MAX);
		goto out;
	}
	t = calloc(1, sizeof *t);
	if (!t || !(t->models = calloc(count, sizeof *t->models))) {
		rc = RC_ENOMEM;
		goto out;
	}
	if (v2) {
		for (size_t i = 0; i < count; i++) {
			char path[32];
			snprintf(path, sizeof path, "models[%zu]", i);
			rc = parse_entry(json_array_get(list, i), NULL, path, &t->models[t->n++],
			                 err);
			if (rc)
				goto out;
		}
	} else {
		const char *k;
		json_t *e;
		json_object_foreach(root, k, e)
		{
			char path[48];
			if (!strcmp(k, "$schema"))
				continue;
			snprintf(path, sizeof path, "%.40s", k);
			rc = parse_entry(e, k, path, &t->models[t->n++], err);
			if (rc)
				goto out;
		}
	}
	for (size_t i = 0; i < t->n; i++)
		for (size_t j = 0; j < i; j++)
			if (!memcmp(t->models[i].id, t->models[j].id, 32)) {
				rc = fail(err, RC_EPROTO,
				          "models[%zu].modelId: duplicate of models[%zu]", i, j);
				goto out;
			}
out:
	json_decref(root);
	if (rc) {
		pv_models_free(t);
		return rc;
	}
	*out = t;
	return RC_OK;
}

const struct pv_model *pv_models_find(const struct pv_models *t, const uint8_t id[32])
{
	for (size_t i = 0; t && i < t->n; i++)
		if (!memcmp(t->models[i].id, id, 32))
			return &t->models[i];
	return NULL;
}

size_t pv_models_index(const struct pv_models *t, const struct pv_model *m)
{
	return (size_t)(m - t->models);
}
