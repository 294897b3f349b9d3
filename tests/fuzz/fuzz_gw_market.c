/*
 * Fuzz the marketplace backend's readers of provider bytes and of the shared Redis session table:
 *   - a decrypted chunk framed as SSE is exactly one event ("data: ", no line break inside, one
 *     blank line at the end), whatever the chunk holds;
 *   - usage counts are never negative and untouched when no usage is reported;
 *   - a session record that parses re-serializes to JSON that parses to the same JSON again
 *     (the table is read by other instances: what we write must read back identically).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_coord.h"
#include "gw_market.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;

	struct rc_buf f;
	rc_buf_init(&f);
	if (gw_market_frame_chunk(&f, p, size) == RC_OK) {
		if (f.len != size + 8 || memcmp(f.ptr, "data: ", 6) != 0 ||
		    memcmp(f.ptr + f.len - 2, "\n\n", 2) != 0 ||
		    memchr(f.ptr, '\n', f.len - 2) != NULL || memchr(f.ptr, '\r', f.len) != NULL)
			abort();
	}
	rc_buf_release(&f);

	(void)gw_market_has_finish(p, size);

	int64_t pt = -7, ct = -7;
	int u = gw_market_usage(p, size, &pt, &ct);
	if (u == 0 && (pt != -7 || ct != -7))
		abort();
	if (u != 0 && (pt < 0 || ct < 0))
		abort();

	struct rc_pool_session s;
	if (gw_coord_session_parse(p, size, &s) == 0) {
		char *j1 = gw_coord_session_json(&s);
		if (j1) {
			struct rc_pool_session s2;
			if (gw_coord_session_parse(j1, strlen(j1), &s2) != 0)
				abort();
			char *j2 = gw_coord_session_json(&s2);
			if (j2 && strcmp(j1, j2) != 0)
				abort();
			free(j2);
			free(j1);
		}
	}
	return 0;
}
