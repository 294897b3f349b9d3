/*
 * Fuzz the admin input validators: durations, dates, tenant names, key labels, model lists.
 * None may crash or overread; accepted values must satisfy their documented ranges.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../keystore/src/ks_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct ks_err err;
	int64_t v;
	if (ks_parse_duration(s, &v, &err) == KS_OK && (v < 1 || v > 100LL * 366 * 86400))
		abort();
	if (ks_parse_date(s, &v, &err) == KS_OK) {
		char back[32];
		if (v < 0)
			abort();
		ks_format_time(v ? v : 1, back);
	}
	if (ks_validate_tenant_name(s, &err) == KS_OK && (strlen(s) == 0 || strlen(s) > KS_NAME_MAX))
		abort();
	if (ks_validate_label(s, &err) == KS_OK) {
		for (const unsigned char *p = (const unsigned char *)s; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				abort();
	}
	ks_validate_models(s, &err);
	ks_validate_reason(s, &err);
	free(s);
	return 0;
}
