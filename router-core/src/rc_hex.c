/*
 * Hex codecs and 256-bit integer helpers.
 *
 * Hex decoding goes through a 256-entry table (invalid = 0xff) so validation costs nothing extra;
 * callers feed it chain replies and signatures from peers, so every byte is checked and the first
 * bad one is reported by offset. The u256 is four native limbs (see rc_hex.h) with checked
 * arithmetic: amounts come from chain reads and peers, and a silent wrap-around in stake or
 * price math (morpheus-protocol §3.6.1) would be a money bug, so every operation reports overflow.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <router-core/rc_hex.h>

static const char digits[] = "0123456789abcdef";

/* clang-format off */
static const uint8_t unhex[256] = {
#define X 0xff
	/* 0x00 */ X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	/* 0x10 */ X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	/* 0x20 */ X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	/* 0x30 */ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, X, X, X, X, X, X,
	/* 0x40 */ X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X,
	/* 0x50 */ X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	/* 0x60 */ X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X,
	/* 0x70 */ X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	/* 0x80.. */ X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
	X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
#undef X
};
/* clang-format on */

__attribute__((format(printf, 3, 4))) static int fail(struct rc_errinfo *err, size_t off,
                                                      const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->offset = off;
		va_start(ap, fmt);
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return RC_EPARSE;
}

static size_t skip_0x(const char *s, size_t len)
{
	return (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 2 : 0;
}

int rc_hex_encode(const void *in, size_t len, char *out, size_t cap)
{
	const uint8_t *p = in;
	if (len > (SIZE_MAX - 1) / 2 || cap < 2 * len + 1)
		return RC_ERANGE;
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = '\0';
	return RC_OK;
}

int rc_hex_encode_0x(const void *in, size_t len, char *out, size_t cap)
{
	if (cap < 3)
		return RC_ERANGE;
	out[0] = '0';
	out[1] = 'x';
	return rc_hex_encode(in, len, out + 2, cap - 2);
}

int rc_hex_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *outlen,
                  struct rc_errinfo *err)
{
	size_t start = skip_0x(s, slen);
	size_t ndig = slen - start;

	if (outlen)
		*outlen = 0;
	for (size_t i = start; i < slen; i++)
		if (unhex[(uint8_t)s[i]] == 0xff)
			return fail(err, i, "invalid hex character");
	if (ndig & 1)
		return fail(err, slen, "odd number of hex digits");
	if (ndig / 2 > cap)
		return RC_ERANGE;
	for (size_t i = 0; i < ndig / 2; i++)
		out[i] = (uint8_t)(unhex[(uint8_t)s[start + 2 * i]] << 4 |
		                   unhex[(uint8_t)s[start + 2 * i + 1]]);
	if (outlen)
		*outlen = ndig / 2;
	return RC_OK;
}

int rc_hex_decode_exact(const char *s, size_t slen, uint8_t *out, size_t n, struct rc_errinfo *err)
{
	size_t start = skip_0x(s, slen);
	if (slen - start != 2 * n)
		return fail(err, slen, "expected %zu hex digits, got %zu", 2 * n, slen - start);
	return rc_hex_decode(s, slen, out, n, NULL, err);
}

/* ---- u256 ---------------------------------------------------------------------------------- */

void rc_u256_from_u64(struct rc_u256 *out, uint64_t v)
{
	out->w[0] = v;
	out->w[1] = out->w[2] = out->w[3] = 0;
}

int rc_u256_from_be(struct rc_u256 *out, const uint8_t *be, size_t n)
{
	while (n > 32) {
		if (*be)
			return RC_ERANGE;
		be++;
		n--;
	}
	struct rc_u256 r = {{0, 0, 0, 0}};
	for (size_t i = 0; i < n; i++) {
		size_t bit = 8 * (n - 1 - i);
		r.w[bit / 64] |= (uint64_t)be[i] << (bit % 64);
	}
	*out = r;
	return RC_OK;
}

void rc_u256_to_be32(const struct rc_u256 *a, uint8_t out[32])
{
	for (int limb = 0; limb < 4; limb++) {
		uint64_t v = a->w[3 - limb];
		for (int j = 7; j >= 0; j--) {
			out[8 * limb + j] = (uint8_t)v;
			v >>= 8;
		}
	}
}

int rc_u256_to_u64(const struct rc_u256 *a, uint64_t *out)
{
	if (a->w[1] | a->w[2] | a->w[3])
		return RC_ERANGE;
	*out = a->w[0];
	return RC_OK;
}

bool rc_u256_is_zero(const struct rc_u256 *a)
{
	return !(a->w[0] | a->w[1] | a->w[2] | a->w[3]);
}

int rc_u256_cmp(const struct rc_u256 *a, const struct rc_u256 *b)
{
	for (int i = 3; i >= 0; i--)
		if (a->w[i] != b->w[i])
			return a->w[i] < b->w[i] ? -1 : 1;
	return 0;
}

int rc_u256_add(struct rc_u256 *out, const struct rc_u256 *a, const struct rc_u256 *b)
{
	struct rc_u256 r;
	unsigned carry = 0;
	for (int i = 0; i < 4; i++) {
		uint64_t s = a->w[i] + b->w[i];
		unsigned c1 = s < a->w[i];
		r.w[i] = s + carry;
		carry = c1 | (r.w[i] < s);
	}
	if (carry)
		return RC_ERANGE;
	*out = r;
	return RC_OK;
}

int rc_u256_sub(struct rc_u256 *out, const struct rc_u256 *a, const struct rc_u256 *b)
{
	if (rc_u256_cmp(a, b) < 0)
		return RC_ERANGE;
	struct rc_u256 r;
	unsigned borrow = 0;
	for (int i = 0; i < 4; i++) {
		uint64_t d = a->w[i] - b->w[i];
		unsigned b1 = a->w[i] < b->w[i];
		r.w[i] = d - borrow;
		borrow = b1 | (d < borrow);
	}
	*out = r;
	return RC_OK;
}

int rc_u256_mul_u64(struct rc_u256 *out, const struct rc_u256 *a, uint64_t m)
{
	struct rc_u256 r;
	unsigned __int128 carry = 0;
	for (int i = 0; i < 4; i++) {
		unsigned __int128 t = (unsigned __int128)a->w[i] * m + carry;
		r.w[i] = (uint64_t)t;
		carry = t >> 64;
	}
	if (carry)
		return RC_ERANGE;
	*out = r;
	return RC_OK;
}

int rc_u256_mul(struct rc_u256 *out, const struct rc_u256 *a, const struct rc_u256 *b)
{
	uint64_t r[8] = {0};
	for (int i = 0; i < 4; i++) {
		unsigned __int128 carry = 0;
		for (int j = 0; j < 4; j++) {
			unsigned __int128 t =
			        (unsigned __int128)a->w[i] * b->w[j] + r[i + j] + carry;
			r[i + j] = (uint64_t)t;
			carry = t >> 64;
		}
		r[i + 4] = (uint64_t)carry;
	}
	if (r[4] | r[5] | r[6] | r[7])
		return RC_ERANGE;
	memcpy(out->w, r, sizeof out->w);
	return RC_OK;
}

int rc_u256_divmod_u64(struct rc_u256 *q, uint64_t *r, const struct rc_u256 *a, uint64_t d)
{
	if (d == 0)
		return RC_ERANGE;
	struct rc_u256 res;
	unsigned __int128 rem = 0;
	for (int i = 3; i >= 0; i--) {
		unsigned __int128 cur = rem << 64 | a->w[i];
		res.w[i] = (uint64_t)(cur / d);
		rem = cur % d;
	}
	if (q)
		*q = res;
	if (r)
		*r = (uint64_t)rem;
	return RC_OK;
}

static int bitlen(const struct rc_u256 *a)
{
	for (int i = 3; i >= 0; i--)
		if (a->w[i])
			return 64 * i + 64 - __builtin_clzll(a->w[i]);
	return 0;
}

int rc_u256_divmod(struct rc_u256 *q, struct rc_u256 *r, const struct rc_u256 *a,
                   const struct rc_u256 *b)
{
	if (rc_u256_is_zero(b))
		return RC_ERANGE;
	/* Shift-subtract long division: at most 256 steps, only used off the hot path. */
	struct rc_u256 quo = {{0}}, rem = {{0}};
	for (int bit = bitlen(a) - 1; bit >= 0; bit--) {
		for (int i = 3; i > 0; i--)
			rem.w[i] = rem.w[i] << 1 | rem.w[i - 1] >> 63;
		rem.w[0] = rem.w[0] << 1 | ((a->w[bit / 64] >> (bit % 64)) & 1);
		if (rc_u256_cmp(&rem, b) >= 0) {
			rc_u256_sub(&rem, &rem, b);
			quo.w[bit / 64] |= (uint64_t)1 << (bit % 64);
		}
	}
	if (q)
		*q = quo;
	if (r)
		*r = rem;
	return RC_OK;
}

int rc_u256_parse_dec(struct rc_u256 *out, const char *s, size_t len, struct rc_errinfo *err)
{
	if (len == 0)
		return fail(err, 0, "empty number");
	struct rc_u256 r = {{0}};
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return fail(err, i, "invalid decimal digit");
		struct rc_u256 d;
		rc_u256_from_u64(&d, (uint64_t)(s[i] - '0'));
		if (rc_u256_mul_u64(&r, &r, 10) || rc_u256_add(&r, &r, &d)) {
			if (err)
				fail(err, i, "number exceeds 256 bits");
			return RC_ERANGE;
		}
	}
	*out = r;
	return RC_OK;
}

int rc_u256_parse_hex(struct rc_u256 *out, const char *s, size_t len, struct rc_errinfo *err)
{
	if (len < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return fail(err, 0, "hex quantity must start with 0x");
	if (len == 2)
		return fail(err, 2, "empty hex quantity");
	size_t i = 2;
	while (i < len - 1 && s[i] == '0')
		i++;
	if (len - i > 64) {
		if (err)
			fail(err, i, "number exceeds 256 bits");
		return RC_ERANGE;
	}
	struct rc_u256 r = {{0}};
	for (size_t j = i; j < len; j++) {
		uint8_t v = unhex[(uint8_t)s[j]];
		if (v == 0xff)
			return fail(err, j, "invalid hex character");
		size_t bit = 4 * (len - 1 - j);
		r.w[bit / 64] |= (uint64_t)v << (bit % 64);
	}
	*out = r;
	return RC_OK;
}

int rc_u256_format_dec(const struct rc_u256 *a, char *out, size_t cap)
{
	char tmp[RC_U256_DEC_SIZE];
	size_t n = 0;
	struct rc_u256 v = *a;
	/* Peel 19 digits at a time: one 256/64 division per chunk instead of per digit. */
	do {
		uint64_t chunk;
		rc_u256_divmod_u64(&v, &chunk, &v, 10000000000000000000ull);
		bool last = rc_u256_is_zero(&v);
		for (int k = 0; k < 19 && (!last || chunk); k++) {
			tmp[n++] = (char)('0' + chunk % 10);
			chunk /= 10;
		}
	} while (!rc_u256_is_zero(&v));
	if (n == 0)
		tmp[n++] = '0';
	if (cap < n + 1)
		return RC_ERANGE;
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return (int)n;
}

int rc_u256_format_hex(const struct rc_u256 *a, char *out, size_t cap)
{
	int bits = bitlen(a);
	size_t nd = bits ? (size_t)(bits + 3) / 4 : 1;
	if (cap < nd + 3)
		return RC_ERANGE;
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < nd; i++) {
		size_t bit = 4 * (nd - 1 - i);
		out[2 + i] = digits[(a->w[bit / 64] >> (bit % 64)) & 15];
	}
	out[2 + nd] = '\0';
	return (int)(nd + 2);
}
