/*
 * router-core: hex text <-> bytes, and struct rc_u256, the 256-bit unsigned integer used for wei
 * amounts, prices and stakes (decimal and hex-quantity text, checked arithmetic).
 *
 * Hex out is always lower case. Hex in takes an optional "0x"/"0X" prefix and either case, and is
 * strict: an odd number of digits or any non-hex character is an error, never silently skipped.
 *
 * Everything here is pure (no allocation, no I/O, no global state) and thread-safe.
 */
#ifndef RC_HEX_H
#define RC_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

/* ---- hex ------------------------------------------------------------------------------------ */

/*
 * Write len bytes at in as 2*len lower-case hex digits plus a NUL to out (no prefix). cap is the
 * size of out and must be at least 2*len+1. Returns RC_OK or RC_ERANGE (out too small; nothing
 * useful written).
 */
int rc_hex_encode(const void *in, size_t len, char *out, size_t cap);

/* As rc_hex_encode() with a leading "0x": needs cap >= 2*len+3. */
int rc_hex_encode_0x(const void *in, size_t len, char *out, size_t cap);

/*
 * Decode hex text (slen bytes at s, optional 0x prefix, not necessarily NUL-terminated) into out
 * (cap bytes). *outlen (may be NULL) gets the byte count. Returns RC_OK, RC_EPARSE (odd digit
 * count or a non-hex character; err, if non-NULL, gets the offset in s and a short text) or
 * RC_ERANGE (more than cap bytes). Empty text (or a bare "0x") decodes to zero bytes.
 */
int rc_hex_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *outlen,
                  struct rc_errinfo *err);

/* As rc_hex_decode(), but the text must hold exactly n bytes (RC_EPARSE otherwise). */
int rc_hex_decode_exact(const char *s, size_t slen, uint8_t *out, size_t n, struct rc_errinfo *err);

/* ---- 256-bit unsigned integers ------------------------------------------------------------ */

/*
 * A 256-bit unsigned integer as four 64-bit limbs, least significant first (w[0] holds bits
 * 0..63). Native limbs make arithmetic cheap; use rc_u256_from_be()/rc_u256_to_be32() for the
 * 32-byte big-endian form of ABI words, RLP integers and hashes. Plain data: copy freely; an
 * all-zero struct is the number 0.
 */
struct rc_u256 {
	uint64_t w[4];
};

/* Longest decimal text of a u256 plus NUL (2^256-1 has 78 digits). */
#define RC_U256_DEC_SIZE 79
/* Longest "0x"-quantity text plus NUL. */
#define RC_U256_HEX_SIZE 67

/* Set *out to v. */
void rc_u256_from_u64(struct rc_u256 *out, uint64_t v);

/* *out = the big-endian integer in n bytes at be. RC_OK, or RC_ERANGE if it needs more than 256
 * bits (n may exceed 32 only when the extra leading bytes are zero). */
int rc_u256_from_be(struct rc_u256 *out, const uint8_t *be, size_t n);

/* Write a as 32 big-endian bytes. */
void rc_u256_to_be32(const struct rc_u256 *a, uint8_t out[32]);

/* *out = a if it fits in 64 bits: RC_OK or RC_ERANGE. */
int rc_u256_to_u64(const struct rc_u256 *a, uint64_t *out);

bool rc_u256_is_zero(const struct rc_u256 *a);

/* -1, 0 or 1 as a <, ==, > b. */
int rc_u256_cmp(const struct rc_u256 *a, const struct rc_u256 *b);

/* Checked arithmetic: *out = a op b; RC_OK, or RC_ERANGE on overflow/underflow/division by zero,
 * in which case *out is unchanged. out may alias a or b. */
int rc_u256_add(struct rc_u256 *out, const struct rc_u256 *a, const struct rc_u256 *b);
int rc_u256_sub(struct rc_u256 *out, const struct rc_u256 *a, const struct rc_u256 *b);
int rc_u256_mul_u64(struct rc_u256 *out, const struct rc_u256 *a, uint64_t m);
int rc_u256_mul(struct rc_u256 *out, const struct rc_u256 *a, const struct rc_u256 *b);

/* *q = a / d and *r = a % d (either may be NULL); RC_ERANGE if d == 0. q may alias a. */
int rc_u256_divmod_u64(struct rc_u256 *q, uint64_t *r, const struct rc_u256 *a, uint64_t d);

/* Full division: *q = a / b, *r = a % b (either may be NULL; may alias). RC_ERANGE if b == 0. */
int rc_u256_divmod(struct rc_u256 *q, struct rc_u256 *r, const struct rc_u256 *a,
                   const struct rc_u256 *b);

/*
 * Parse a decimal integer ("1000000000000000000"): digits only, at least one, no sign, no
 * spaces; leading zeros are allowed. Returns RC_OK, RC_EPARSE (err gets the offset) or RC_ERANGE
 * (> 2^256-1).
 */
int rc_u256_parse_dec(struct rc_u256 *out, const char *s, size_t len, struct rc_errinfo *err);

/*
 * Parse a JSON-RPC hex quantity: "0x" followed by 1..64 hex digits ("0x0", "0x1a"; leading zeros
 * tolerated). RC_OK, RC_EPARSE or RC_ERANGE.
 */
int rc_u256_parse_hex(struct rc_u256 *out, const char *s, size_t len, struct rc_errinfo *err);

/* Decimal text of a plus NUL into out (cap >= RC_U256_DEC_SIZE is always enough). Returns the
 * number of digits written (>= 1), or RC_ERANGE if cap is too small. */
int rc_u256_format_dec(const struct rc_u256 *a, char *out, size_t cap);

/* Minimal "0x" quantity text ("0x0", "0x1a") plus NUL; cap >= RC_U256_HEX_SIZE is enough. Returns
 * the length written, or RC_ERANGE. */
int rc_u256_format_hex(const struct rc_u256 *a, char *out, size_t cap);

#endif
