/*
 * `morgatectl config check FILE`: the gateway's own config parser (gw_config_parse, pure) run on
 * a file, so an operator learns about a typo before a restart or a SIGHUP does. Environment
 * overrides and upstream keys are not consulted: the file alone is checked.
 */
#include "ctl_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gw_config.h"

static int read_all(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t cap = 8192, n = 0;
	char *b = malloc(cap);
	for (;;) {
		if (!b)
			break;
		n += fread(b + n, 1, cap - n, f);
		if (n < cap)
			break;
		char *nb = cap < (64u << 20) ? realloc(b, cap * 2) : NULL;
		if (!nb) {
			free(b);
			b = NULL;
			errno = EFBIG;
			break;
		}
		b = nb;
		cap *= 2;
	}
	int bad = !b || ferror(f);
	fclose(f);
	if (bad) {
		free(b);
		return -1;
	}
	*out = b;
	*len = n;
	return 0;
}

int ctl_config_main(int argc, char **argv, int json)
{
	if (argc != 2 || strcmp(argv[0], "check") != 0) {
		fprintf(stderr, "morgatectl: usage: config check FILE\n");
		return 2;
	}
	const char *path = argv[1];
	char *buf;
	size_t len;
	if (read_all(path, &buf, &len)) {
		fprintf(stderr, "morgatectl: cannot read config '%s': %s\n", path, strerror(errno));
		return 3;
	}
	struct gw_config *c = NULL;
	struct gw_config_err e;
	memset(&e, 0, sizeof e);
	int rc = gw_config_parse(buf, len, &c, &e);
	free(buf);
	if (rc != GW_CONFIG_OK) {
		if (json) {
			json_t *o = json_pack("{s:b, s:s, s:s, s:i, s:i}", "ok", 0, "path", e.path, "message", e.msg,
					      "line", e.line, "column", e.column);
			char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
			if (s)
				puts(s);
			free(s);
			json_decref(o);
		}
		if (e.line)
			fprintf(stderr, "morgatectl: config '%s' line %d column %d: %s\n", path, e.line, e.column,
				e.msg);
		else
			fprintf(stderr, "morgatectl: config '%s': %s%s%s\n", path, e.path, e.path[0] ? ": " : "",
				e.msg);
		return 1;
	}
	if (json)
		printf("{\"ok\":true,\"models\":%zu,\"backends\":%zu,\"listen\":\"%s\"}\n", c->n_models,
		       c->n_backends, c->listen);
	else
		printf("ok: %s (%zu models, %zu backends, listen %s)\n", path, c->n_models, c->n_backends,
		       c->listen);
	gw_config_unref(c);
	return 0;
}
