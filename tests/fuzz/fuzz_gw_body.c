/*
 * Fuzz the request-body reader: whatever the bytes, gw_body_parse must not crash, must return a
 * known code, and on success must hand back a NUL-terminated model name of the stated length
 * without control characters and a sane max_tokens.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_body_info bi;
	struct gw_perr e;
	int rc = gw_body_parse((const char *)data, size, size & 1, &bi, &e);
	if (rc == GW_PARSE_OK) {
		if (strlen(bi.model) != bi.model_len || bi.model_len > GW_MODEL_MAX)
			abort();
		for (size_t i = 0; i < bi.model_len; i++)
			if ((unsigned char)bi.model[i] < 0x20)
				abort();
		if (bi.max_tokens < 0 || bi.prompt_estimate < 1 || (bi.stream != 0 && bi.stream != 1))
			abort();
	} else if (rc != GW_PARSE_EJSON && rc != GW_PARSE_EFIELD && rc != GW_PARSE_ENOMEM) {
		abort();
	} else if (!memchr(e.msg, '\0', sizeof e.msg) || !memchr(e.param, '\0', sizeof e.param)) {
		abort();
	}
	return 0;
}
