/*
 * Fuzz config validation: whatever the bytes, gw_config_parse must not crash or leak, must
 * return OK with a usable snapshot (every model resolves to a backend, names resolve back) or
 * EINVAL with a NUL-terminated path and message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_config *c = NULL;
	struct gw_config_err e;
	memset(&e, 0, sizeof e);
	int rc = gw_config_parse((const char *)data, size, &c, &e);
	if (rc == GW_CONFIG_OK) {
		if (!c || c->n_models == 0 || c->n_backends == 0)
			abort();
		for (size_t i = 0; i < c->n_models; i++) {
			if (c->models[i].backend >= c->n_backends)
				abort();
			if (gw_config_find_model(c, c->models[i].name, strlen(c->models[i].name)) != &c->models[i])
				abort();
		}
		gw_config_unref(c);
	} else {
		if (c || (rc != GW_CONFIG_EINVAL && rc != GW_CONFIG_ENOMEM))
			abort();
		if (!memchr(e.path, '\0', sizeof e.path) || !memchr(e.msg, '\0', sizeof e.msg))
			abort();
	}
	return 0;
}
