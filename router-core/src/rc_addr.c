/*
 * Address text and EIP-55 checksums.
 *
 * EIP-55: hash = keccak256 of the 40 lower-case hex digits (as ASCII); digit i is upper-cased
 * when it is a letter and nibble i of the hash is >= 8. Decimal digits carry no information, so an
 * address made only of digits is both "lower" and "upper" case and needs no check.
 */
#include <stdio.h>
#include <string.h>

#include <router-core/rc_addr.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_keccak.h>

static int fail(struct rc_errinfo *err, size_t off, const char *text, int rc)
{
	if (err) {
		err->offset = off;
		snprintf(err->text, sizeof err->text, "%s", text);
	}
	return rc;
}

/* Nibble i of the EIP-55 hash of the lower-case digits. */
static int hash_nibble(const uint8_t h[32], size_t i)
{
	return (i & 1) ? h[i / 2] & 15 : h[i / 2] >> 4;
}

int rc_addr_parse(uint8_t out[RC_ADDR_LEN], const char *s, size_t len, struct rc_errinfo *err)
{
	size_t start = (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 2 : 0;
	if (len - start != 2 * RC_ADDR_LEN)
		return fail(err, len, "address must have 40 hex digits", RC_EPARSE);
	uint8_t b[RC_ADDR_LEN];
	int rc = rc_hex_decode(s + start, 2 * RC_ADDR_LEN, b, sizeof b, NULL, err);
	if (rc) {
		if (err)
			err->offset += start;
		return rc;
	}
	bool lower = false, upper = false;
	for (size_t i = start; i < len; i++) {
		lower |= s[i] >= 'a' && s[i] <= 'f';
		upper |= s[i] >= 'A' && s[i] <= 'F';
	}
	if (lower && upper) {
		char low[2 * RC_ADDR_LEN + 1];
		uint8_t h[32];
		rc_hex_encode(b, sizeof b, low, sizeof low);
		rc_keccak256(low, 2 * RC_ADDR_LEN, h);
		for (size_t i = 0; i < 2 * RC_ADDR_LEN; i++) {
			char c = s[start + i];
			if (c <= '9')
				continue;
			bool want_upper = hash_nibble(h, i) >= 8;
			if (want_upper != (c <= 'F'))
				return fail(err, start + i, "bad EIP-55 checksum", RC_ECRYPTO);
		}
	}
	memcpy(out, b, RC_ADDR_LEN);
	return RC_OK;
}

void rc_addr_format(const uint8_t addr[RC_ADDR_LEN], char out[RC_ADDR_STR_SIZE])
{
	rc_hex_encode_0x(addr, RC_ADDR_LEN, out, RC_ADDR_STR_SIZE);
}

void rc_addr_format_checksum(const uint8_t addr[RC_ADDR_LEN], char out[RC_ADDR_STR_SIZE])
{
	uint8_t h[32];
	rc_addr_format(addr, out);
	rc_keccak256(out + 2, 2 * RC_ADDR_LEN, h);
	for (size_t i = 0; i < 2 * RC_ADDR_LEN; i++) {
		char *c = &out[2 + i];
		if (*c >= 'a' && hash_nibble(h, i) >= 8)
			*c = (char)(*c - 'a' + 'A');
	}
}

bool rc_addr_is_zero(const uint8_t addr[RC_ADDR_LEN])
{
	uint8_t acc = 0;
	for (size_t i = 0; i < RC_ADDR_LEN; i++)
		acc |= addr[i];
	return acc == 0;
}
