/*
 * Fuzz the auth header parser: the input is split at its first NUL into an Authorization value
 * and an x-api-key value. The parser must not crash; an accepted key must lie inside the header
 * it came from and hold only visible ASCII; request-id sanity must agree with its definition.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 2);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = '\0';
	const char *authz = buf;
	const char *xkey = buf + strlen(buf) + 1;
	if (xkey > buf + size)
		xkey = NULL;
	const char *k;
	size_t n;
	int rc = gw_auth_parse(authz[0] == 'N' ? NULL : authz, xkey, &k, &n);
	if (rc == GW_AUTH_OK) {
		if (!k || n == 0 || k < buf || k + n > buf + size + 1)
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
				abort();
	} else if (rc != GW_AUTH_MISSING && rc != GW_AUTH_MALFORMED) {
		abort();
	}
	if (gw_request_id_sane((const char *)data, size))
		for (size_t i = 0; i < size; i++)
			if (data[i] <= 0x20 || data[i] >= 0x7f)
				abort();
	free(buf);
	return 0;
}
