/*
 * Configuration. One table (opts[]) names every scalar option with its JSON path, type, bounds
 * and place in struct gw_config, so parsing, validation, the defaults and the documentation in
 * config/morgate.example.json line up. Unknown keys are errors (a typo must not silently fall
 * back to a default), except keys starting with '_', which hold documentation.
 */
#include "gw_config.h"
#include "gw_log.h"
#include "gw_redisurl.h"

#include <router-core/rc_addr.h>
#include <router-core/rc_network.h>

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { T_STR, T_LONG, T_BOOL, T_SECTION };

struct opt {
	const char *path;
	int type;
	size_t off;
	long min, max;
	const char *def_s;
	long def_l;
};

#define O(f) offsetof(struct gw_config, f)
static const struct opt opts[] = {
	{"listen", T_STR, O(listen), 0, 0, "127.0.0.1:8080", 0},
	{"admin_listen", T_STR, O(admin_listen), 0, 0, "", 0},
	{"threads", T_LONG, O(threads), 1, 64, NULL, 2},
	{"log_level", T_STR, O(log_level), 0, 0, "info", 0},
	{"access_log", T_BOOL, O(access_log), 0, 1, NULL, 1},
	{"keystore", T_SECTION, 0, 0, 0, NULL, 0},
	{"keystore.path", T_STR, O(keystore_path), 0, 0, "./var/morgate.db", 0},
	{"keystore.pepper_file", T_STR, O(keystore_pepper), 0, 0, "", 0},
	{"keystore.poll_ms", T_LONG, O(keystore_poll_ms), 10, 60000, NULL, 200},
	{"limits", T_SECTION, 0, 0, 0, NULL, 0},
	{"limits.max_body_bytes", T_LONG, O(max_body_bytes), 1024, 1L << 30, NULL, 4L << 20},
	{"limits.max_header_bytes", T_LONG, O(max_header_bytes), 1024, 1L << 20, NULL, 8192},
	{"limits.max_connections", T_LONG, O(max_connections), 4, 1000000, NULL, 20000},
	{"limits.soft_connections", T_LONG, O(soft_connections), 1, 1000000, NULL, 16000},
	{"limits.client_timeout_s", T_LONG, O(client_timeout_s), 1, 3600, NULL, 30},
	{"streaming", T_SECTION, 0, 0, 0, NULL, 0},
	{"streaming.keepalive_ms", T_LONG, O(keepalive_ms), 100, 3600000, NULL, 15000},
	{"usage_flush_ms", T_LONG, O(usage_flush_ms), 100, 3600000, NULL, 2000},
	{"drain_timeout_ms", T_LONG, O(drain_timeout_ms), 0, 3600000, NULL, 30000},
	{"redis_url", T_STR, O(redis_url), 0, 0, "", 0},
	{"ratelimit", T_SECTION, 0, 0, 0, NULL, 0},
	{"ratelimit.prefix", T_STR, O(rl_prefix), 0, 0, "mg:rl:", 0},
	{"ratelimit.timeout_ms", T_LONG, O(rl_timeout_ms), 1, 10000, NULL, 50},
	{"ratelimit.connect_timeout_ms", T_LONG, O(rl_connect_timeout_ms), 1, 60000, NULL, 500},
	{"ratelimit.backoff_min_ms", T_LONG, O(rl_backoff_min_ms), 1, 60000, NULL, 100},
	{"ratelimit.backoff_max_ms", T_LONG, O(rl_backoff_max_ms), 1, 600000, NULL, 5000},
	{"ratelimit.lease_ms", T_LONG, O(rl_lease_ms), 1000, 86400000, NULL, 60000},
	{"ratelimit.max_pending", T_LONG, O(rl_max_pending), 1, 10000000, NULL, 65536},
	{"ratelimit.fail_closed", T_BOOL, O(rl_fail_closed), 0, 1, NULL, 0},
};
#undef O
#define N_OPTS (sizeof opts / sizeof opts[0])

#define B(f) offsetof(struct gw_backend_cfg, f)
static const struct opt bopts[] = {
	{"name", T_STR, B(name), 0, 0, NULL, 0},
	{"type", T_STR, 0, 0, 0, "direct", 0}, /* handled specially */
	{"base_url", T_STR, B(base_url), 0, 0, NULL, 0},
	{"api_key_env", T_STR, B(api_key_env), 0, 0, NULL, 0},
	{"api_key_file", T_STR, B(api_key_file), 0, 0, NULL, 0},
	{"connect_timeout_ms", T_LONG, B(connect_timeout_ms), 1, 600000, NULL, 5000},
	{"first_byte_timeout_ms", T_LONG, B(first_byte_timeout_ms), 1, 3600000, NULL, 120000},
	{"idle_timeout_ms", T_LONG, B(idle_timeout_ms), 1, 3600000, NULL, 300000},
	{"total_timeout_ms", T_LONG, B(total_timeout_ms), 1, 86400000, NULL, 1800000},
	{"max_connections", T_LONG, B(max_connections), 1, 100000, NULL, 20000},
	{"demo_chunk_ms", T_LONG, B(demo_chunk_ms), 0, 60000, NULL, 20},
};
#undef B
#define N_BOPTS (sizeof bopts / sizeof bopts[0])

static int err_at(struct gw_config_err *err, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int err_at(struct gw_config_err *err, const char *path, const char *fmt, ...)
{
	if (err) {
		memset(err, 0, sizeof *err);
		snprintf(err->path, sizeof err->path, "%s", path);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return GW_CONFIG_EINVAL;
}

static void backend_free(struct gw_backend_cfg *b)
{
	free(b->name);
	free(b->base_url);
	free(b->api_key_env);
	free(b->api_key_file);
	if (b->api_key) {
		sodium_memzero(b->api_key, strlen(b->api_key));
		free(b->api_key);
	}
}

static void model_free(struct gw_model_cfg *m)
{
	free(m->name);
	for (size_t i = 0; i < m->n_aliases; i++)
		free(m->aliases[i]);
	free(m->aliases);
	free(m->owned_by);
}

static void market_free(struct gw_market_cfg *m)
{
	free(m->network);
	for (size_t i = 0; i < m->n_rpc; i++)
		free(m->rpc[i]);
	free(m->rpc);
	free(m->wallet);
	free(m->passphrase_file);
	free(m->allow);
	free(m->deny);
	for (size_t i = 0; i < m->n_models; i++)
		free(m->models[i].name);
	free(m->models);
	for (size_t i = 0; i < m->n_aliases; i++) {
		free(m->aliases[i].alias);
		free(m->aliases[i].target);
	}
	free(m->aliases);
}

static void config_free(struct gw_config *c)
{
	if (!c)
		return;
	market_free(&c->market);
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].type == T_STR)
			free(*(char **)((char *)c + opts[i].off));
	for (size_t i = 0; i < c->n_backends; i++)
		backend_free(&c->backends[i]);
	free(c->backends);
	for (size_t i = 0; i < c->n_models; i++)
		model_free(&c->models[i]);
	free(c->models);
	free(c);
}

struct gw_config *gw_config_ref(struct gw_config *c)
{
	if (c)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

void gw_config_unref(struct gw_config *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1)
		config_free(c);
}

static struct gw_config *config_new(void)
{
	struct gw_config *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	atomic_init(&c->refs, 1);
	for (size_t i = 0; i < N_OPTS; i++) {
		char *p = (char *)c + opts[i].off;
		if (opts[i].type == T_STR) {
			if (!(*(char **)p = strdup(opts[i].def_s))) {
				config_free(c);
				return NULL;
			}
		} else if (opts[i].type == T_LONG) {
			*(long *)p = opts[i].def_l;
		} else if (opts[i].type == T_BOOL) {
			*(int *)p = (int)opts[i].def_l;
		}
	}
	return c;
}

static void backend_defaults(struct gw_backend_cfg *b)
{
	for (size_t i = 0; i < N_BOPTS; i++)
		if (bopts[i].type == T_LONG)
			*(long *)((char *)b + bopts[i].off) = bopts[i].def_l;
}

static int add_demo(struct gw_config *c)
{
	c->backends = calloc(1, sizeof *c->backends);
	c->models = calloc(1, sizeof *c->models);
	if (!c->backends || !c->models)
		return GW_CONFIG_ENOMEM;
	backend_defaults(&c->backends[0]);
	c->backends[0].kind = GW_BACKEND_DEMO;
	c->n_backends = 1;
	c->models[0].backend = 0;
	c->n_models = 1;
	if (!(c->backends[0].name = strdup("demo")) || !(c->models[0].name = strdup("demo")) ||
	    !(c->models[0].owned_by = strdup("morgate")))
		return GW_CONFIG_ENOMEM;
	return GW_CONFIG_OK;
}

int gw_config_default(struct gw_config **out)
{
	*out = NULL;
	struct gw_config *c = config_new();
	if (!c)
		return GW_CONFIG_ENOMEM;
	if (add_demo(c) != GW_CONFIG_OK) {
		config_free(c);
		return GW_CONFIG_ENOMEM;
	}
	*out = c;
	return GW_CONFIG_OK;
}

/* Set one scalar from JSON per its table entry. */
static int set_opt(void *base, const struct opt *o, json_t *v, const char *path,
		   struct gw_config_err *err)
{
	char *p = (char *)base + o->off;
	switch (o->type) {
	case T_STR:
		if (!json_is_string(v))
			return err_at(err, path, "expected a string");
		if (strlen(json_string_value(v)) != json_string_length(v))
			return err_at(err, path, "string contains a NUL byte");
		if (json_string_length(v) > 4096)
			return err_at(err, path, "string longer than 4096 bytes");
		free(*(char **)p);
		if (!(*(char **)p = strdup(json_string_value(v))))
			return GW_CONFIG_ENOMEM;
		return GW_CONFIG_OK;
	case T_LONG: {
		if (!json_is_integer(v))
			return err_at(err, path, "expected an integer");
		json_int_t x = json_integer_value(v);
		if (x < o->min || x > o->max)
			return err_at(err, path, "%lld is out of range (%ld..%ld)", (long long)x, o->min,
				      o->max);
		*(long *)p = (long)x;
		return GW_CONFIG_OK;
	}
	case T_BOOL:
		if (!json_is_boolean(v))
			return err_at(err, path, "expected true or false");
		*(int *)p = json_is_true(v);
		return GW_CONFIG_OK;
	}
	return err_at(err, path, "unexpected value");
}

static int parse_backend(struct gw_backend_cfg *b, json_t *o, const char *path,
			 struct gw_config_err *err)
{
	char sub[128];
	backend_defaults(b);
	if (!json_is_object(o))
		return err_at(err, path, "expected an object");
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		snprintf(sub, sizeof sub, "%s.%s", path, k);
		if (k[0] == '_')
			continue;
		if (!strcmp(k, "type")) {
			if (!json_is_string(v))
				return err_at(err, sub, "expected a string");
			if (!strcmp(json_string_value(v), "direct"))
				b->kind = GW_BACKEND_DIRECT;
			else if (!strcmp(json_string_value(v), "demo"))
				b->kind = GW_BACKEND_DEMO;
			else
				return err_at(err, sub, "unknown backend type '%s' (direct, demo)",
					      json_string_value(v));
			continue;
		}
		size_t i;
		for (i = 0; i < N_BOPTS; i++)
			if (!strcmp(bopts[i].path, k))
				break;
		if (i == N_BOPTS)
			return err_at(err, sub, "unknown option");
		int rc = set_opt(b, &bopts[i], v, sub, err);
		if (rc)
			return rc;
	}
	if (!b->name || !b->name[0]) {
		snprintf(sub, sizeof sub, "%s.name", path);
		return err_at(err, sub, "a backend needs a name");
	}
	if (b->kind == GW_BACKEND_DIRECT) {
		snprintf(sub, sizeof sub, "%s.base_url", path);
		if (!b->base_url)
			return err_at(err, sub, "a direct backend needs a base_url");
		if (strncmp(b->base_url, "http://", 7) && strncmp(b->base_url, "https://", 8))
			return err_at(err, sub, "must start with http:// or https://");
		size_t n = strlen(b->base_url);
		if (n < 9 || strpbrk(b->base_url, " \t\r\n?#"))
			return err_at(err, sub, "not a valid base URL");
		while (n && b->base_url[n - 1] == '/')
			b->base_url[--n] = '\0';
	}
	if (b->api_key_env && b->api_key_file) {
		snprintf(sub, sizeof sub, "%s.api_key_file", path);
		return err_at(err, sub, "set api_key_env or api_key_file, not both");
	}
	return GW_CONFIG_OK;
}

static int name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 200)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '/' || s[i] == '"' ||
		    s[i] == '\\')
			return 0;
	return 1;
}

static int parse_model(struct gw_config *c, struct gw_model_cfg *m, json_t *o, const char *path,
		       struct gw_config_err *err)
{
	char sub[128];
	if (!json_is_object(o))
		return err_at(err, path, "expected an object");
	const char *k;
	json_t *v;
	const char *backend = NULL;
	json_object_foreach(o, k, v)
	{
		snprintf(sub, sizeof sub, "%s.%s", path, k);
		if (k[0] == '_')
			continue;
		if (!strcmp(k, "name") || !strcmp(k, "backend") || !strcmp(k, "owned_by")) {
			if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
				return err_at(err, sub, "expected a string");
			if (!strcmp(k, "backend"))
				backend = json_string_value(v);
			else if (!strcmp(k, "name")) {
				if (!name_ok(json_string_value(v)))
					return err_at(err, sub, "model names are 1..200 printable bytes without spaces, '/', '\"' or '\\'");
				if (!(m->name = strdup(json_string_value(v))))
					return GW_CONFIG_ENOMEM;
			} else if (!(m->owned_by = strdup(json_string_value(v))))
				return GW_CONFIG_ENOMEM;
		} else if (!strcmp(k, "aliases")) {
			if (!json_is_array(v))
				return err_at(err, sub, "expected an array of strings");
			size_t n = json_array_size(v);
			if (n > 64)
				return err_at(err, sub, "at most 64 aliases");
			m->aliases = calloc(n ? n : 1, sizeof *m->aliases);
			if (!m->aliases)
				return GW_CONFIG_ENOMEM;
			for (size_t i = 0; i < n; i++) {
				json_t *a = json_array_get(v, i);
				snprintf(sub, sizeof sub, "%s.aliases[%zu]", path, i);
				if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a) ||
				    !name_ok(json_string_value(a)))
					return err_at(err, sub, "expected a model name");
				if (!(m->aliases[i] = strdup(json_string_value(a))))
					return GW_CONFIG_ENOMEM;
				m->n_aliases++;
			}
		} else {
			return err_at(err, sub, "unknown option");
		}
	}
	if (!m->name) {
		snprintf(sub, sizeof sub, "%s.name", path);
		return err_at(err, sub, "a model needs a name");
	}
	snprintf(sub, sizeof sub, "%s.backend", path);
	if (!backend)
		return err_at(err, sub, "a model needs a backend");
	for (size_t i = 0; i < c->n_backends; i++)
		if (!strcmp(c->backends[i].name, backend)) {
			m->backend = i;
			if (!m->owned_by && !(m->owned_by = strdup(backend)))
				return GW_CONFIG_ENOMEM;
			return GW_CONFIG_OK;
		}
	return err_at(err, sub, "no backend named '%s'", backend);
}

/* ---- the marketplace section (issue 6) ------------------------------------------------------ */

#define M(f) offsetof(struct gw_market_cfg, f)
static const struct opt mopts[] = {
	{"network", T_STR, M(network), 0, 0, NULL, 0},
	{"wallet", T_STR, M(wallet), 0, 0, NULL, 0},
	{"wallet_passphrase_file", T_STR, M(passphrase_file), 0, 0, NULL, 0},
	{"session_seconds", T_LONG, M(session_seconds), 300, 86400 * 7, NULL, 600},
	{"direct_payment", T_BOOL, M(direct_payment), 0, 1, NULL, 0},
	{"request_deadline_ms", T_LONG, M(request_deadline_ms), 1000, 3600000, NULL, 60000},
	{"catalog_refresh_ms", T_LONG, M(catalog_refresh_ms), 100, 3600000, NULL, 30000},
	{"bench_ms", T_LONG, M(bench_ms), 100, 86400000, NULL, 30000},
	{"workers", T_LONG, M(workers), 1, 4096, NULL, 64},
};
#undef M
#define N_MOPTS (sizeof mopts / sizeof mopts[0])

#define MAX_RPC_URLS 16
#define MAX_PROVIDER_LIST 256
#define MAX_MARKET_MODELS 1024

static int rpc_url_ok(const char *u)
{
	if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))
		return 0;
	size_t n = strlen(u);
	if (n < 10 || n > 2048)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
			return 0;
	return 1;
}

static int parse_addr_at(json_t *v, const char *path, uint8_t out[20], struct gw_config_err *err)
{
	if (!json_is_string(v))
		return err_at(err, path, "expected an address string \"0x\" + 40 hex digits");
	struct rc_errinfo ei = {0, ""};
	int rc = rc_addr_parse(out, json_string_value(v), json_string_length(v), &ei);
	if (rc == RC_ECRYPTO)
		return err_at(err, path, "the mixed-case (EIP-55) checksum of this address is wrong");
	if (rc != RC_OK)
		return err_at(err, path, "not an address (\"0x\" + 40 hex digits): %s at offset %zu", ei.text,
			      ei.offset);
	return GW_CONFIG_OK;
}

static int parse_wei(json_t *v, const char *path, struct rc_u256 *out, struct gw_config_err *err)
{
	if (!json_is_string(v))
		return err_at(err, path, "expected a decimal string of wei, e.g. \"10000000000\"");
	struct rc_errinfo ei = {0, ""};
	int rc = rc_u256_parse_dec(out, json_string_value(v), json_string_length(v), &ei);
	if (rc == RC_ERANGE)
		return err_at(err, path, "larger than 2^256-1");
	if (rc != RC_OK)
		return err_at(err, path, "expected a decimal string of wei (digits only), bad byte at offset %zu",
			      ei.offset);
	return GW_CONFIG_OK;
}

static int parse_addr_list(json_t *v, const char *path, uint8_t (**out)[20], size_t *n,
			   struct gw_config_err *err)
{
	char sub[128];
	if (!json_is_array(v))
		return err_at(err, path, "expected an array of addresses");
	size_t cnt = json_array_size(v);
	if (cnt > MAX_PROVIDER_LIST)
		return err_at(err, path, "at most %d addresses", MAX_PROVIDER_LIST);
	free(*out);
	*out = NULL;
	*n = 0;
	if (!cnt)
		return GW_CONFIG_OK;
	if (!(*out = calloc(cnt, 20)))
		return GW_CONFIG_ENOMEM;
	for (size_t i = 0; i < cnt; i++) {
		snprintf(sub, sizeof sub, "%s[%zu]", path, i);
		int rc = parse_addr_at(json_array_get(v, i), sub, (*out)[i], err);
		if (rc)
			return rc;
		(*n)++;
	}
	return GW_CONFIG_OK;
}

static int parse_market_models(struct gw_market_cfg *m, json_t *v, struct gw_config_err *err)
{
	const char *path = "marketplace.models";
	char sub[128];
	if (!json_is_object(v))
		return err_at(err, path, "expected an object: {\"<on-chain model name>\": {\"min_idle\": N}}");
	size_t cnt = json_object_size(v);
	if (cnt > MAX_MARKET_MODELS)
		return err_at(err, path, "at most %d models", MAX_MARKET_MODELS);
	if (!(m->models = calloc(cnt ? cnt : 1, sizeof *m->models)))
		return GW_CONFIG_ENOMEM;
	const char *k;
	json_t *o;
	json_object_foreach(v, k, o)
	{
		snprintf(sub, sizeof sub, "%s.%s", path, k);
		if (k[0] == '_')
			continue;
		if (!name_ok(k))
			return err_at(err, sub, "model names are 1..200 printable bytes without spaces, '/', '\"' or '\\'");
		if (!json_is_object(o))
			return err_at(err, sub, "expected an object");
		struct gw_market_model_cfg *mm = &m->models[m->n_models++];
		if (!(mm->name = strdup(k)))
			return GW_CONFIG_ENOMEM;
		const char *f;
		json_t *fv;
		json_object_foreach(o, f, fv)
		{
			snprintf(sub, sizeof sub, "%s.%s.%s", path, k, f);
			if (f[0] == '_')
				continue;
			if (!strcmp(f, "min_idle")) {
				if (!json_is_integer(fv) || json_integer_value(fv) < 0 || json_integer_value(fv) > 64)
					return err_at(err, sub, "expected an integer in 0..64");
				mm->min_idle = (long)json_integer_value(fv);
			} else if (!strcmp(f, "max_price_per_second")) {
				int rc = parse_wei(fv, sub, &mm->max_price, err);
				if (rc)
					return rc;
			} else {
				return err_at(err, sub, "unknown option (min_idle, max_price_per_second)");
			}
		}
	}
	return GW_CONFIG_OK;
}

static int parse_market_aliases(struct gw_market_cfg *m, json_t *v, struct gw_config_err *err)
{
	const char *path = "marketplace.aliases";
	char sub[128];
	if (!json_is_object(v))
		return err_at(err, path, "expected an object: {\"<alias>\": \"<on-chain model name>\"}");
	size_t cnt = json_object_size(v);
	if (cnt > MAX_MARKET_MODELS)
		return err_at(err, path, "at most %d aliases", MAX_MARKET_MODELS);
	if (!(m->aliases = calloc(cnt ? cnt : 1, sizeof *m->aliases)))
		return GW_CONFIG_ENOMEM;
	const char *k;
	json_t *t;
	json_object_foreach(v, k, t)
	{
		snprintf(sub, sizeof sub, "%s.%s", path, k);
		if (k[0] == '_')
			continue;
		if (!name_ok(k))
			return err_at(err, sub, "aliases are 1..200 printable bytes without spaces, '/', '\"' or '\\'");
		if (!json_is_string(t) || strlen(json_string_value(t)) != json_string_length(t) ||
		    !name_ok(json_string_value(t)))
			return err_at(err, sub, "expected the on-chain model name (a string)");
		struct gw_market_alias_cfg *a = &m->aliases[m->n_aliases++];
		if (!(a->alias = strdup(k)) || !(a->target = strdup(json_string_value(t))))
			return GW_CONFIG_ENOMEM;
	}
	return GW_CONFIG_OK;
}

static void market_defaults(struct gw_market_cfg *m)
{
	for (size_t i = 0; i < N_MOPTS; i++)
		if (mopts[i].type == T_LONG)
			*(long *)((char *)m + mopts[i].off) = mopts[i].def_l;
		else if (mopts[i].type == T_BOOL)
			*(int *)((char *)m + mopts[i].off) = (int)mopts[i].def_l;
}

static int set_rpc_list(struct gw_market_cfg *m, const char *const *urls, size_t n)
{
	for (size_t i = 0; i < m->n_rpc; i++)
		free(m->rpc[i]);
	free(m->rpc);
	m->n_rpc = 0;
	if (!(m->rpc = calloc(n ? n : 1, sizeof *m->rpc)))
		return GW_CONFIG_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!(m->rpc[i] = strdup(urls[i])))
			return GW_CONFIG_ENOMEM;
		m->n_rpc++;
	}
	return GW_CONFIG_OK;
}

static int parse_market(struct gw_market_cfg *m, json_t *o, struct gw_config_err *err)
{
	const char *path = "marketplace";
	char sub[128];
	if (!json_is_object(o))
		return err_at(err, path, "expected an object");
	m->enabled = 1;
	market_defaults(m);
	const char *k;
	json_t *v;
	int rc;
	json_object_foreach(o, k, v)
	{
		snprintf(sub, sizeof sub, "%s.%s", path, k);
		if (k[0] == '_')
			continue;
		if (!strcmp(k, "rpc")) {
			if (json_is_string(v)) {
				/* one URL as a plain string is accepted too */
				const char *u = json_string_value(v);
				if (!rpc_url_ok(u))
					return err_at(err, sub, "expected an http:// or https:// URL");
				if ((rc = set_rpc_list(m, &u, 1)))
					return rc;
				continue;
			}
			if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > MAX_RPC_URLS)
				return err_at(err, sub, "expected an array of 1..%d http(s) URLs", MAX_RPC_URLS);
			const char *urls[MAX_RPC_URLS];
			for (size_t i = 0; i < json_array_size(v); i++) {
				json_t *u = json_array_get(v, i);
				snprintf(sub, sizeof sub, "%s.rpc[%zu]", path, i);
				if (!json_is_string(u) || strlen(json_string_value(u)) != json_string_length(u) ||
				    !rpc_url_ok(json_string_value(u)))
					return err_at(err, sub, "expected an http:// or https:// URL");
				urls[i] = json_string_value(u);
			}
			if ((rc = set_rpc_list(m, urls, json_array_size(v))))
				return rc;
		} else if (!strcmp(k, "chain_id")) {
			if (!json_is_integer(v) || json_integer_value(v) <= 0)
				return err_at(err, sub, "expected a positive integer");
			m->chain_id = (uint64_t)json_integer_value(v);
			m->chain_id_set = 1;
		} else if (!strcmp(k, "diamond")) {
			if ((rc = parse_addr_at(v, sub, m->diamond, err)))
				return rc;
			m->diamond_set = 1;
		} else if (!strcmp(k, "mor")) {
			if ((rc = parse_addr_at(v, sub, m->mor, err)))
				return rc;
			m->mor_set = 1;
		} else if (!strcmp(k, "max_price_per_second")) {
			if ((rc = parse_wei(v, sub, &m->max_price, err)))
				return rc;
		} else if (!strcmp(k, "allow_providers")) {
			if ((rc = parse_addr_list(v, sub, &m->allow, &m->n_allow, err)))
				return rc;
		} else if (!strcmp(k, "deny_providers")) {
			if ((rc = parse_addr_list(v, sub, &m->deny, &m->n_deny, err)))
				return rc;
		} else if (!strcmp(k, "models")) {
			if ((rc = parse_market_models(m, v, err)))
				return rc;
		} else if (!strcmp(k, "aliases")) {
			if ((rc = parse_market_aliases(m, v, err)))
				return rc;
		} else {
			size_t i;
			for (i = 0; i < N_MOPTS; i++)
				if (!strcmp(mopts[i].path, k))
					break;
			if (i == N_MOPTS)
				return err_at(err, sub, "unknown option");
			if ((rc = set_opt(m, &mopts[i], v, sub, err)))
				return rc;
		}
	}
	if (!m->network && !(m->network = strdup("")))
		return GW_CONFIG_ENOMEM;
	if (!m->passphrase_file && !(m->passphrase_file = strdup("")))
		return GW_CONFIG_ENOMEM;
	if (!m->wallet && !(m->wallet = strdup("")))
		return GW_CONFIG_ENOMEM;
	return GW_CONFIG_OK;
}

/*
 * Effective chain id / Diamond / MOR: explicit values win, else the network preset (trap 19:
 * the presets are defaults only). Then the checks that need the whole section.
 */
static int market_resolve(struct gw_config *c, struct gw_config_err *err)
{
	struct gw_market_cfg *m = &c->market;
	if (!m->enabled)
		return GW_CONFIG_OK;
	struct rc_network net;
	int have_net = 0;
	if (m->network[0]) {
		if (rc_network_find(m->network, &net) != RC_OK)
			return err_at(err, "marketplace.network", "unknown network '%s' (%s)", m->network,
				      RC_NETWORK_NAMES);
		have_net = 1;
	}
	if (!m->chain_id_set)
		m->chain_id = have_net ? net.chain_id : 0;
	if (!m->diamond_set) {
		if (have_net)
			memcpy(m->diamond, net.diamond, 20);
		else
			memset(m->diamond, 0, 20);
	}
	if (!m->mor_set) {
		if (have_net)
			memcpy(m->mor, net.mor, 20);
		else
			memset(m->mor, 0, 20);
	}
	if (m->n_rpc == 0)
		return err_at(err, "marketplace.rpc", "at least one RPC URL is needed (or set MORGATE_RPC)");
	if (!m->chain_id)
		return err_at(err, "marketplace.chain_id", "unknown chain: set network (%s) or chain_id",
			      RC_NETWORK_NAMES);
	if (!m->diamond_set && !have_net)
		return err_at(err, "marketplace.diamond", "unknown Diamond address: set network or diamond");
	if (!m->mor_set && !have_net)
		return err_at(err, "marketplace.mor", "unknown MOR token address: set network or mor");
	if (!m->wallet[0])
		return err_at(err, "marketplace.wallet",
			      "a wallet key file is needed (morgatectl wallet import), or set MORGATE_WALLET");
	return GW_CONFIG_OK;
}

/* Aliases must not shadow a configured model and must name something else than themselves. */
static int market_validate(const struct gw_config *c, struct gw_config_err *err)
{
	const struct gw_market_cfg *m = &c->market;
	char p[128];
	for (size_t i = 0; i < m->n_aliases; i++) {
		const struct gw_market_alias_cfg *a = &m->aliases[i];
		snprintf(p, sizeof p, "marketplace.aliases.%s", a->alias);
		if (gw_config_find_model(c, a->alias, strlen(a->alias)))
			return err_at(err, p, "'%s' is already the name of a configured model", a->alias);
		if (!strcmp(a->alias, a->target))
			return err_at(err, p, "an alias cannot name itself");
		for (size_t j = 0; j < m->n_aliases; j++)
			if (!strcmp(a->target, m->aliases[j].alias))
				return err_at(err, p, "'%s' is an alias itself: aliases name on-chain models",
					      a->target);
	}
	return GW_CONFIG_OK;
}

const char *gw_config_market_alias(const struct gw_config *c, const char *name, size_t len)
{
	if (!c->market.enabled)
		return NULL;
	for (size_t i = 0; i < c->market.n_aliases; i++) {
		const struct gw_market_alias_cfg *a = &c->market.aliases[i];
		if (strlen(a->alias) == len && !memcmp(a->alias, name, len))
			return a->target;
	}
	return NULL;
}

/* Cross-field checks, run after parsing and again after the environment. */
static int validate(const struct gw_config *c, struct gw_config_err *err)
{
	char host[64];
	unsigned port;
	if (gw_config_split_listen(c->listen, host, &port))
		return err_at(err, "listen", "expected HOST:PORT with an IPv4 address, got '%s'", c->listen);
	if (c->admin_listen[0] && gw_config_split_listen(c->admin_listen, host, &port))
		return err_at(err, "admin_listen", "expected HOST:PORT or \"\", got '%s'", c->admin_listen);
	if (gw_log_parse_level(c->log_level) < 0)
		return err_at(err, "log_level", "expected debug, info, warn, error or off");
	if (!c->keystore_path[0])
		return err_at(err, "keystore.path", "must not be empty");
	if (c->soft_connections >= c->max_connections)
		return err_at(err, "limits.soft_connections",
			      "must be below limits.max_connections (%ld)", c->max_connections);
	if (c->redis_url[0]) {
		struct gw_redis_url u;
		struct gw_redisurl_err ue = {0, NULL};
		int bad = gw_redisurl_parse(c->redis_url, strlen(c->redis_url), &u, &ue);
		sodium_memzero(&u, sizeof u);
		if (bad)
			return err_at(err, "redis_url", "%s at offset %zu", ue.msg ? ue.msg : "invalid URL",
				      ue.offset);
	}
	if (c->rl_backoff_min_ms > c->rl_backoff_max_ms)
		return err_at(err, "ratelimit.backoff_min_ms", "must not exceed ratelimit.backoff_max_ms");
	for (size_t i = 0; i < c->n_backends; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(c->backends[i].name, c->backends[j].name)) {
				char p[64];
				snprintf(p, sizeof p, "backends[%zu].name", i);
				return err_at(err, p, "duplicate backend name '%s'", c->backends[i].name);
			}
	/* every name and alias routes to exactly one model */
	for (size_t i = 0; i < c->n_models; i++) {
		const struct gw_model_cfg *m = &c->models[i];
		for (size_t a = 0; a <= m->n_aliases; a++) {
			const char *nm = a == 0 ? m->name : m->aliases[a - 1];
			for (size_t j = 0; j <= i; j++) {
				const struct gw_model_cfg *o = &c->models[j];
				size_t lim = j == i ? a : o->n_aliases + 1;
				for (size_t b = 0; b < lim; b++) {
					const char *on = b == 0 ? o->name : o->aliases[b - 1];
					if (!strcmp(nm, on)) {
						char p[64];
						if (a == 0)
							snprintf(p, sizeof p, "models[%zu].name", i);
						else
							snprintf(p, sizeof p, "models[%zu].aliases[%zu]", i, a - 1);
						return err_at(err, p, "model name '%s' is used twice", nm);
					}
				}
			}
		}
	}
	return market_validate(c, err);
}

static int walk(struct gw_config *c, json_t *obj, const char *prefix, struct gw_config_err *err)
{
	const char *k;
	json_t *v;
	char path[128];
	json_object_foreach(obj, k, v)
	{
		if (k[0] == '_')
			continue;
		if (prefix[0])
			snprintf(path, sizeof path, "%s.%s", prefix, k);
		else
			snprintf(path, sizeof path, "%s", k);
		if (!prefix[0] && (!strcmp(k, "backends") || !strcmp(k, "models") || !strcmp(k, "marketplace")))
			continue; /* after the scalars */
		size_t i;
		for (i = 0; i < N_OPTS; i++)
			if (!strcmp(opts[i].path, path))
				break;
		if (i == N_OPTS)
			return err_at(err, path, "unknown option");
		int rc;
		if (opts[i].type == T_SECTION) {
			if (!json_is_object(v))
				return err_at(err, path, "expected an object");
			rc = walk(c, v, path, err);
		} else {
			rc = set_opt(c, &opts[i], v, path, err);
		}
		if (rc)
			return rc;
	}
	return GW_CONFIG_OK;
}

int gw_config_parse(const char *json, size_t len, struct gw_config **out, struct gw_config_err *err)
{
	*out = NULL;
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		err_at(err, "", "invalid JSON: %s", je.text);
		if (err) {
			err->line = je.line;
			err->column = je.column;
		}
		return GW_CONFIG_EINVAL;
	}
	int rc = GW_CONFIG_ENOMEM;
	struct gw_config *c = config_new();
	if (!c)
		goto out;
	if (!json_is_object(root)) {
		rc = err_at(err, "", "the config must be a JSON object");
		goto out;
	}
	if ((rc = walk(c, root, "", err)))
		goto out;
	json_t *bs = json_object_get(root, "backends"), *ms = json_object_get(root, "models");
	if (!bs && !ms) {
		if ((rc = add_demo(c)))
			goto out;
	} else {
		if (!json_is_array(bs) || json_array_size(bs) == 0 || json_array_size(bs) > 256) {
			rc = err_at(err, "backends", "expected an array of 1..256 backends");
			goto out;
		}
		rc = GW_CONFIG_ENOMEM;
		if (!(c->backends = calloc(json_array_size(bs), sizeof *c->backends)))
			goto out;
		char path[64];
		for (size_t i = 0; i < json_array_size(bs); i++) {
			snprintf(path, sizeof path, "backends[%zu]", i);
			c->n_backends++;
			if ((rc = parse_backend(&c->backends[i], json_array_get(bs, i), path, err)))
				goto out;
		}
		if (!json_is_array(ms) || json_array_size(ms) == 0 || json_array_size(ms) > 4096) {
			rc = err_at(err, "models", "expected an array of 1..4096 models");
			goto out;
		}
		rc = GW_CONFIG_ENOMEM;
		if (!(c->models = calloc(json_array_size(ms), sizeof *c->models)))
			goto out;
		for (size_t i = 0; i < json_array_size(ms); i++) {
			snprintf(path, sizeof path, "models[%zu]", i);
			c->n_models++;
			if ((rc = parse_model(c, &c->models[i], json_array_get(ms, i), path, err)))
				goto out;
		}
	}
	json_t *mk = json_object_get(root, "marketplace");
	if (mk && (rc = parse_market(&c->market, mk, err)))
		goto out;
	if ((rc = market_resolve(c, err)) || (rc = validate(c, err)))
		goto out;
	*out = c;
	c = NULL;
	rc = GW_CONFIG_OK;
out:
	config_free(c);
	json_decref(root);
	return rc;
}

int gw_config_split_listen(const char *s, char host[64], unsigned *port)
{
	const char *colon = s ? strrchr(s, ':') : NULL;
	if (!colon || colon == s || (size_t)(colon - s) >= 64)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	errno = 0;
	long p = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
		return -1;
	if (!strcmp(host, "localhost"))
		snprintf(host, 64, "127.0.0.1");
	unsigned a, b, c, d;
	char extra;
	if (sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4 || a > 255 || b > 255 || c > 255 ||
	    d > 255)
		return -1;
	*port = (unsigned)p;
	return 0;
}

static int set_env_str(char **field, const char *v)
{
	char *n = strdup(v);
	if (!n)
		return GW_CONFIG_ENOMEM;
	free(*field);
	*field = n;
	return GW_CONFIG_OK;
}

static int env_long(const char *name, const char *v, long min, long max, long *out,
		    struct gw_config_err *err)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || *end || end == v || x < min || x > max)
		return err_at(err, name, "expected an integer in %ld..%ld, got '%s'", min, max, v);
	*out = x;
	return GW_CONFIG_OK;
}

/* The marketplace variables: only for a config that has the section (they do not create one). */
static int market_env(struct gw_market_cfg *m, const char *(*getenv_fn)(const char *name),
		      struct gw_config_err *err)
{
	if (!m->enabled)
		return GW_CONFIG_OK;
	const char *v;
	int rc;
	if ((v = getenv_fn("MORGATE_RPC")) && v[0]) {
		char buf[MAX_RPC_URLS * 2100];
		const char *urls[MAX_RPC_URLS];
		size_t n = 0;
		if (strlen(v) >= sizeof buf)
			return err_at(err, "MORGATE_RPC", "too long");
		snprintf(buf, sizeof buf, "%s", v);
		char *save = NULL;
		for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
			if (n == MAX_RPC_URLS)
				return err_at(err, "MORGATE_RPC", "at most %d URLs", MAX_RPC_URLS);
			if (!rpc_url_ok(t))
				return err_at(err, "MORGATE_RPC", "'%s' is not an http:// or https:// URL", t);
			urls[n++] = t;
		}
		if (!n)
			return err_at(err, "MORGATE_RPC", "no URL in it");
		if ((rc = set_rpc_list(m, urls, n)))
			return rc;
	}
	if ((v = getenv_fn("MORGATE_NETWORK")) && v[0]) {
		struct rc_network net;
		if (rc_network_find(v, &net) != RC_OK)
			return err_at(err, "MORGATE_NETWORK", "unknown network '%s' (%s)", v, RC_NETWORK_NAMES);
		if ((rc = set_env_str(&m->network, v)))
			return rc;
	}
	static const char *const addr_env[2] = {"MORGATE_DIAMOND", "MORGATE_MOR"};
	for (int i = 0; i < 2; i++) {
		if (!(v = getenv_fn(addr_env[i])) || !v[0])
			continue;
		uint8_t *dst = i == 0 ? m->diamond : m->mor;
		if (rc_addr_parse(dst, v, strlen(v), NULL) != RC_OK)
			return err_at(err, addr_env[i], "not an address (\"0x\" + 40 hex digits)");
		*(i == 0 ? &m->diamond_set : &m->mor_set) = 1;
	}
	if ((v = getenv_fn("MORGATE_WALLET")) && v[0] && (rc = set_env_str(&m->wallet, v)))
		return rc;
	return GW_CONFIG_OK;
}

int gw_config_apply_env(struct gw_config *c, const char *(*getenv_fn)(const char *name),
			struct gw_config_err *err)
{
	static const struct {
		const char *env;
		const char *opt;
	} map[] = {{"MORGATE_LISTEN", "listen"},
		   {"MORGATE_ADMIN_LISTEN", "admin_listen"},
		   {"MORGATE_DB", "keystore.path"},
		   {"MORGATE_PEPPER_FILE", "keystore.pepper_file"},
		   {"MORGATE_THREADS", "threads"},
		   {"MORGATE_LOG_LEVEL", "log_level"},
		   {"MORGATE_REDIS_URL", "redis_url"},
		   {"MORGATE_KEEPALIVE_MS", "streaming.keepalive_ms"},
		   {"MORGATE_MAX_BODY_BYTES", "limits.max_body_bytes"}};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		const char *v = getenv_fn(map[i].env);
		if (!v)
			continue;
		size_t j;
		for (j = 0; j < N_OPTS; j++)
			if (!strcmp(opts[j].path, map[i].opt))
				break;
		char *p = (char *)c + opts[j].off;
		int rc = opts[j].type == T_STR
				 ? set_env_str((char **)p, v)
				 : env_long(map[i].env, v, opts[j].min, opts[j].max, (long *)p, err);
		if (rc)
			return rc;
	}
	int rc = market_env(&c->market, getenv_fn, err);
	if (rc || (rc = market_resolve(c, err)))
		return rc;
	return validate(c, err);
}

static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	while (b) {
		size_t r = fread(b + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
		if (n + 1 == cap) {
			char *nb = cap < (64u << 20) ? realloc(b, cap * 2) : NULL;
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (!b || bad) {
		free(b);
		return -1;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

int gw_config_load_secrets(struct gw_config *c, struct gw_config_err *err)
{
	for (size_t i = 0; i < c->n_backends; i++) {
		struct gw_backend_cfg *b = &c->backends[i];
		char path[64];
		if (b->api_key_env) {
			const char *v = getenv(b->api_key_env);
			snprintf(path, sizeof path, "backends[%zu].api_key_env", i);
			if (!v || !v[0])
				return err_at(err, path, "environment variable '%s' is not set", b->api_key_env);
			if (!(b->api_key = strdup(v)))
				return GW_CONFIG_ENOMEM;
		} else if (b->api_key_file) {
			char *buf;
			size_t n;
			snprintf(path, sizeof path, "backends[%zu].api_key_file", i);
			if (read_file(b->api_key_file, &buf, &n))
				return err_at(err, path, "cannot read '%s': %s", b->api_key_file, strerror(errno));
			while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
				buf[--n] = '\0';
			b->api_key = buf;
		}
		if (b->api_key && strpbrk(b->api_key, "\r\n")) {
			snprintf(path, sizeof path, "backends[%zu]", i);
			return err_at(err, path, "the upstream key contains a line break");
		}
	}
	return GW_CONFIG_OK;
}

static const char *real_getenv(const char *name)
{
	return getenv(name);
}

int gw_config_load(const char *path, struct gw_config **out, struct gw_config_err *err)
{
	struct gw_config *c = NULL;
	int rc;
	*out = NULL;
	if (path) {
		char *buf;
		size_t n;
		if (read_file(path, &buf, &n)) {
			err_at(err, "", "cannot read '%s': %s", path, strerror(errno));
			return GW_CONFIG_EIO;
		}
		rc = gw_config_parse(buf, n, &c, err);
		free(buf);
	} else {
		rc = gw_config_default(&c);
	}
	if (rc)
		return rc;
	if ((rc = gw_config_apply_env(c, real_getenv, err)) || (rc = gw_config_load_secrets(c, err))) {
		gw_config_unref(c);
		return rc;
	}
	*out = c;
	return GW_CONFIG_OK;
}

const struct gw_model_cfg *gw_config_find_model(const struct gw_config *c, const char *name, size_t len)
{
	for (size_t i = 0; i < c->n_models; i++) {
		const struct gw_model_cfg *m = &c->models[i];
		if (strlen(m->name) == len && !memcmp(m->name, name, len))
			return m;
		for (size_t a = 0; a < m->n_aliases; a++)
			if (strlen(m->aliases[a]) == len && !memcmp(m->aliases[a], name, len))
				return m;
	}
	return NULL;
}

/* ---- reload ------------------------------------------------------------------------------------ */

/* Options read once at start-up (listeners, threads, the key store, the limiter's Redis). */
static int restart_only(const char *path)
{
	static const char *const p[] = {"listen", "admin_listen", "threads",
					 "keystore.path",
					 "keystore.pepper_file", "keystore.poll_ms",
					 "limits.max_header_bytes", "limits.max_connections",
					 "limits.client_timeout_s", "redis_url"};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
		if (!strcmp(path, p[i]))
			return 1;
	return !strncmp(path, "ratelimit.", 10);
}

static void note(char *buf, size_t cap, size_t *n, const char *path)
{
	size_t len = strlen(buf);
	if (cap > len)
		snprintf(buf + len, cap - len, "%s%s", *n ? ", " : "", path);
	(*n)++;
}

static int same_str(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* Whether the marketplace sections differ in anything but their aliases (which reload live). */
static int market_differs(const struct gw_market_cfg *a, const struct gw_market_cfg *b)
{
	if (a->enabled != b->enabled)
		return 1;
	if (!a->enabled)
		return 0;
	if (!same_str(a->network, b->network) || a->n_rpc != b->n_rpc || a->chain_id != b->chain_id ||
	    memcmp(a->diamond, b->diamond, 20) || memcmp(a->mor, b->mor, 20) ||
	    !same_str(a->wallet, b->wallet) || !same_str(a->passphrase_file, b->passphrase_file) ||
	    a->session_seconds != b->session_seconds || a->direct_payment != b->direct_payment ||
	    memcmp(&a->max_price, &b->max_price, sizeof a->max_price) || a->n_allow != b->n_allow ||
	    a->n_deny != b->n_deny || a->n_models != b->n_models ||
	    a->request_deadline_ms != b->request_deadline_ms ||
	    a->catalog_refresh_ms != b->catalog_refresh_ms || a->bench_ms != b->bench_ms ||
	    a->workers != b->workers)
		return 1;
	for (size_t i = 0; i < a->n_rpc; i++)
		if (!same_str(a->rpc[i], b->rpc[i]))
			return 1;
	if ((a->n_allow && memcmp(a->allow, b->allow, a->n_allow * 20)) ||
	    (a->n_deny && memcmp(a->deny, b->deny, a->n_deny * 20)))
		return 1;
	for (size_t i = 0; i < a->n_models; i++)
		if (!same_str(a->models[i].name, b->models[i].name) ||
		    a->models[i].min_idle != b->models[i].min_idle ||
		    memcmp(&a->models[i].max_price, &b->models[i].max_price, sizeof a->models[i].max_price))
			return 1;
	return 0;
}

size_t gw_config_keep_running(struct gw_config *n, const struct gw_config *running, char *changed,
			      size_t cap)
{
	size_t count = 0;
	if (cap)
		changed[0] = '\0';
	for (size_t i = 0; i < N_OPTS; i++) {
		const struct opt *o = &opts[i];
		if (o->type == T_SECTION || !restart_only(o->path))
			continue;
		char *np = (char *)n + o->off;
		const char *rp = (const char *)running + o->off;
		if (o->type == T_STR) {
			char **ns = (char **)np;
			const char *rs = *(char *const *)rp;
			if (same_str(*ns, rs))
				continue;
			char *copy = strdup(rs ? rs : "");
			if (!copy)
				abort();
			free(*ns);
			*ns = copy;
		} else if (o->type == T_LONG) {
			if (*(long *)np == *(const long *)rp)
				continue;
			*(long *)np = *(const long *)rp;
		} else {
			if (*(int *)np == *(const int *)rp)
				continue;
			*(int *)np = *(const int *)rp;
		}
		note(changed, cap, &count, o->path);
	}
	if (market_differs(&n->market, &running->market))
		note(changed, cap, &count, "marketplace (only its aliases reload)");
	return count;
}
