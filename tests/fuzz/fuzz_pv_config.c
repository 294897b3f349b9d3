/*
 * Fuzz the node config parser: no crash, no leak; on success the required members are set and
 * the listen addresses split; on failure the config holds nothing and the error text is
 * NUL-terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pv_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pv_config c;
	struct rc_errinfo e;
	char host[256];
	unsigned port;
	memset(&e, 0, sizeof e);
	if (pv_config_parse((const char *)data, size, &c, &e) == RC_OK) {
		if (!c.models_config || !c.wallet || !c.nrpc || !c.db ||
		    pv_config_split_hostport(c.listen, host, sizeof host, &port) ||
		    pv_config_split_hostport(c.admin_listen, host, sizeof host, &port))
			abort();
		pv_config_release(&c);
	} else if (c.listen || c.wallet || c.nrpc || !memchr(e.text, '\0', sizeof e.text))
		abort();
	return 0;
}
