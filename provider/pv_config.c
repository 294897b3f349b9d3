/*
 * provider: node config parsing. Pure (the environment and files are read by main.c); strict
 * about unknown members so a misspelt "listen" is an error, not a node on the wrong port.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <router-core/rc_network.h>

#include "pv_config.h"
#include "pv_log.h"

static int fail(struct rc_errinfo *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct rc_errinfo *err, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->offset = 0;
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return RC_EPROTO;
}

void pv_config_release(struct pv_config *c)
{
	if (!c)
		return;
	free(c->listen);
	free(c->admin_listen);
	free(c->models_config);
	free(c->wallet);
	free(c->passphrase_file);
	for (size_t i = 0; i < c->nrpc; i++)
		free(c->rpc[i]);
	free(c->db);
	memset(c, 0, sizeof *c);
}

int pv_config_split_hostport(const char *s, char *host, size_t hostcap, unsigned *port)
{
	const char *colon, *h = s;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -1;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -1;
		hl = (size_t)(colon - s);
		if (memchr(s, ':', hl))
			return -1;
	}
	if (hl >= hostcap)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	const char *p = colon + 1;
	if (*p < '0' || *p > '9')
		return -1;
	unsigned long v = strtoul(p, &end, 10);
	if (*end || v > 65535)
		return -1;
	*port = (unsigned)v;
	return 0;
}

char *pv_config_path(const char *base, const char *path, char *buf, size_t cap)
{
	int n;
	const char *slash = strrchr(base, '/');
	if (path[0] == '/' || !slash)
		n = snprintf(buf, cap, "%s", path);
	else
		n = snprintf(buf, cap, "%.*s/%s", (int)(slash - base), base, path);
	return n < 0 || (size_t)n >= cap ? NULL : buf;
}

static int parse_addr(const char *s, uint8_t out[20])
{
	if (strlen(s) != 42 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return -1;
	for (int i = 0; i < 20; i++) {
		unsigned v;
		char two[3] = {s[2 + 2 * i], s[3 + 2 * i], 0};
		char *end;
		if (two[0] == '+' || two[0] == '-' || two[0] == ' ')
			return -1;
		v = (unsigned)strtoul(two, &end, 16);
		if (*end)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static int take_str(const json_t *v, const char *k, char **dst, struct rc_errinfo *err)
{
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return fail(err, "%s: not a non-empty string", k);
	free(*dst);
	*dst = strdup(json_string_value(v));
	return *dst ? RC_OK : RC_ENOMEM;
}

int pv_config_parse(const char *text, size_t len, struct pv_config *c, struct rc_errinfo *err)
{
	json_error_t je;
	json_t *root;
	const char *k;
	json_t *v;
	int rc = RC_OK;
	struct rc_network net;
	int have_net = 0, have_diamond = 0, have_mor = 0;
	char host[256];
	unsigned port;

	memset(c, 0, sizeof *c);
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		if (err) {
			err->offset = (size_t)je.position;
			snprintf(err->text, sizeof err->text, "line %d: %.80s", je.line, je.text);
		}
		return RC_EPARSE;
	}
	if (!json_is_object(root)) {
		rc = fail(err, "top level: not an object");
		goto out;
	}
	c->backend_timeout_ms = 240000;
	c->max_connections = 256;
	c->drain_timeout_ms = 30000;
	c->log_level = PV_LOG_INFO;
	json_object_foreach(root, k, v)
	{
		if (!strcmp(k, "listen"))
			rc = take_str(v, k, &c->listen, err);
		else if (!strcmp(k, "admin_listen"))
			rc = take_str(v, k, &c->admin_listen, err);
		else if (!strcmp(k, "models_config"))
			rc = take_str(v, k, &c->models_config, err);
		else if (!strcmp(k, "wallet"))
			rc = take_str(v, k, &c->wallet, err);
		else if (!strcmp(k, "passphrase_file"))
			rc = take_str(v, k, &c->passphrase_file, err);
		else if (!strcmp(k, "db"))
			rc = take_str(v, k, &c->db, err);
		else if (!strcmp(k, "rpc")) {
			if (json_is_string(v)) {
				c->nrpc = 1;
				rc = take_str(v, k, &c->rpc[0], err);
			} else if (json_is_array(v) && json_array_size(v) >= 1 &&
			           json_array_size(v) <= PV_CONFIG_MAX_RPC) {
				for (size_t i = 0; !rc && i < json_array_size(v); i++) {
					c->nrpc = i + 1;
					rc = take_str(json_array_get(v, i), "rpc[]", &c->rpc[i],
					              err);
				}
			} else
				rc = fail(err, "rpc: not a URL or an array of 1..%d URLs",
				          PV_CONFIG_MAX_RPC);
			for (size_t i = 0; !rc && i < c->nrpc; i++)
				if (strncmp(c->rpc[i], "http://", 7) &&
				    strncmp(c->rpc[i], "https://", 8))
					rc = fail(err, "rpc: '%.40s' is not http:// or https://",
					          c->rpc[i]);
		} else if (!strcmp(k, "network")) {
			if (!json_is_string(v) || rc_network_find(json_string_value(v), &net))
				rc = fail(err, "network: not one of %s", RC_NETWORK_NAMES);
			else
				have_net = 1;
		} else if (!strcmp(k, "chain_id")) {
			if (!json_is_integer(v) || json_integer_value(v) <= 0)
				rc = fail(err, "chain_id: not a positive integer");
			else
				c->chain_id = (uint64_t)json_integer_value(v);
		} else if (!strcmp(k, "diamond") || !strcmp(k, "mor")) {
			int is_d = k[0] == 'd';
			if (!json_is_string(v) ||
			    parse_addr(json_string_value(v), is_d ? c->diamond : c->mor))
				rc = fail(err, "%s: not a 0x address of 40 hex digits", k);
			else if (is_d)
				have_diamond = 1;
			else
				have_mor = 1;
		} else if (!strcmp(k, "backend_timeout_ms") || !strcmp(k, "drain_timeout_ms")) {
			if (!json_is_integer(v) || json_integer_value(v) < 100 ||
			    json_integer_value(v) > 3600000)
				rc = fail(err, "%s: not an integer 100..3600000", k);
			else if (k[0] == 'b')
				c->backend_timeout_ms = (long)json_integer_value(v);
			else
				c->drain_timeout_ms = (long)json_integer_value(v);
		} else if (!strcmp(k, "max_connections")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 100000)
				rc = fail(err, "max_connections: not an integer 1..100000");
			else
				c->max_connections = (unsigned)json_integer_value(v);
		} else if (!strcmp(k, "log_level")) {
			if (!json_is_string(v) ||
			    pv_log_level_parse(json_string_value(v), &c->log_level))
				rc = fail(err, "log_level: not debug|info|warn|error");
		} else if (k[0] != '$' && k[0] != '_')
			rc = fail(err, "%.40s: unknown member", k);
		if (rc)
			goto out;
	}
	if (have_net) {
		if (!have_diamond)
			memcpy(c->diamond, net.diamond, 20);
		if (!have_mor)
			memcpy(c->mor, net.mor, 20);
		if (!c->chain_id)
			c->chain_id = net.chain_id;
		have_diamond = have_mor = 1;
	}
	if (!c->models_config)
		rc = fail(err, "models_config: missing");
	else if (!c->wallet)
		rc = fail(err, "wallet: missing");
	else if (!c->nrpc)
		rc = fail(err, "rpc: missing");
	else if (!have_diamond || !have_mor)
		rc = fail(err, "%s: missing (or set network)", have_diamond ? "mor" : "diamond");
	if (rc)
		goto out;
	if ((!c->listen && !(c->listen = strdup("0.0.0.0:3333"))) ||
	    (!c->admin_listen && !(c->admin_listen = strdup("127.0.0.1:9334"))) ||
	    (!c->db && !(c->db = strdup("provider.db")))) {
		rc = RC_ENOMEM;
		goto out;
	}
	if (pv_config_split_hostport(c->listen, host, sizeof host, &port))
		rc = fail(err, "listen: not host:port");
	else if (pv_config_split_hostport(c->admin_listen, host, sizeof host, &port))
		rc = fail(err, "admin_listen: not host:port");
out:
	json_decref(root);
	if (rc)
		pv_config_release(c);
	return rc;
}
