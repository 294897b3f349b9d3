/*
 * Fuzz the Redis URL parser: whatever the bytes, gw_redisurl_parse must not crash or overrun, must
 * report an offset inside the input on refusal, and an accepted URL must hold only in-range
 * fields and survive a format/parse round trip unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_redisurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_redis_url u, v;
	struct gw_redisurl_err e = {0, NULL};
	char buf[2048];
	if (gw_redisurl_parse((const char *)data, size, &u, &e) != 0) {
		if (!e.msg || e.offset > size)
			abort();
		return 0;
	}
	if (u.db < 0 || u.db > 999999)
		abort();
	if (u.is_unix) {
		if (u.path[0] != '/' || strlen(u.path) > GW_REDISURL_PATH_MAX)
			abort();
	} else if (u.port < 1 || u.port > 65535 || u.host[0] == '\0') {
		abort();
	}
	int n = gw_redisurl_format(&u, 0, buf, sizeof buf);
	if (n < 0 || gw_redisurl_parse(buf, (size_t)n, &v, NULL) != 0 ||
	    memcmp(&u, &v, sizeof u) != 0)
		abort();
	return 0;
}
