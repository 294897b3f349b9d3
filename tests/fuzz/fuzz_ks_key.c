/*
 * Fuzz the API key string checker: whatever the bytes, ks_key_check_format must not crash,
 * must accept only 69-byte "sk-mor-" keys with the separator and base62 body, and must agree
 * with ks_key_parse; an accepted key must survive a round trip through its parts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../keystore/src/ks_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct ks_parsed_key pk;
	int rc = ks_key_check_format(s, size);
	if (rc != ks_key_parse(s, size, &pk))
		abort();
	if (rc == KS_OK) {
		if (size != KS_KEY_LEN || memcmp(s, KS_KEY_PREFIX, 7) != 0 || s[19] != '_' ||
		    pk.id != s + 7 || pk.secret != s + 20)
			abort();
	} else if (rc != KS_EMALFORMED) {
		abort();
	}
	/* A one-byte change to an accepted key must be caught by the checksum. */
	if (rc == KS_OK) {
		char copy[KS_KEY_LEN];
		memcpy(copy, s, KS_KEY_LEN);
		copy[30] ^= 1;
		if (ks_key_check_format(copy, KS_KEY_LEN) == KS_OK)
			abort();
	}
	return 0;
}
