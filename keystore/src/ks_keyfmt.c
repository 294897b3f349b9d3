/*
 * The API key format (see ks.h): generation, the offline well-formedness check, and the peppered
 * HMAC that is all the store ever keeps of a secret. Pure: no I/O, no allocation.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co.: the only allocation-free SHA-256 API */
#include <string.h>

#include <sodium.h>

#include "ks_internal.h"

static const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* 1 for the base62 alphabet; a table keeps the flood path branch-light. */
static const unsigned char is_b62[256] = {
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
	['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
	['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
	['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
	['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
	['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
	['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

#define PREFIX_LEN (sizeof(KS_KEY_PREFIX) - 1)
#define ID_OFF PREFIX_LEN
#define SEP_OFF (ID_OFF + KS_KEY_ID_LEN)
#define SECRET_OFF (SEP_OFF + 1)
#define CHECK_OFF (SECRET_OFF + KS_SECRET_LEN)

_Static_assert(CHECK_OFF + KS_CHECK_LEN == KS_KEY_LEN, "key layout");

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320), as zlib and GitHub's token checksums use, by
 * slicing-by-8: eight bytes per step keeps the format check well under the HMAC's cost. */
static uint32_t crc_tab[8][256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xFF];
}

static uint32_t crc32_ieee(const char *p, size_t n)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, crc_init);
	const unsigned char *b = (const unsigned char *)p;
	uint32_t c = 0xFFFFFFFFu;
	for (; n >= 8; n -= 8, b += 8) {
		uint32_t lo = c ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
				   (uint32_t)b[3] << 24);
		uint32_t hi = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 |
			      (uint32_t)b[7] << 24;
		c = crc_tab[7][lo & 0xFF] ^ crc_tab[6][(lo >> 8) & 0xFF] ^
		    crc_tab[5][(lo >> 16) & 0xFF] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xFF] ^
		    crc_tab[2][(hi >> 8) & 0xFF] ^ crc_tab[1][(hi >> 16) & 0xFF] ^ crc_tab[0][hi >> 24];
	}
	while (n--)
		c = crc_tab[0][(c ^ *b++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

static void encode_check(const char *key, char out[KS_CHECK_LEN])
{
	uint32_t c = crc32_ieee(key, CHECK_OFF);
	for (int i = KS_CHECK_LEN - 1; i >= 0; i--) { /* 62^6 > 2^32: six digits always suffice */
		out[i] = B62[c % 62];
		c /= 62;
	}
}

int ks_key_parse(const char *key, size_t len, struct ks_parsed_key *out)
{
	if (!key || len != KS_KEY_LEN || memcmp(key, KS_KEY_PREFIX, PREFIX_LEN) != 0 ||
	    key[SEP_OFF] != '_')
		return KS_EMALFORMED;
	unsigned bad = 0;
	for (size_t i = ID_OFF; i < SEP_OFF; i++)
		bad |= !is_b62[(unsigned char)key[i]];
	for (size_t i = SECRET_OFF; i < KS_KEY_LEN; i++)
		bad |= !is_b62[(unsigned char)key[i]];
	if (bad)
		return KS_EMALFORMED;
	char check[KS_CHECK_LEN];
	encode_check(key, check);
	if (memcmp(check, key + CHECK_OFF, KS_CHECK_LEN) != 0)
		return KS_EMALFORMED;
	if (out) {
		out->id = key + ID_OFF;
		out->secret = key + SECRET_OFF;
	}
	return KS_OK;
}

int ks_key_check_format(const char *key, size_t len)
{
	return ks_key_parse(key, len, NULL);
}

/* Uniform base62 characters by rejection sampling: 248 = 4 * 62 keeps every digit equally likely. */
static void random_b62(char *out, size_t n)
{
	unsigned char pool[64];
	size_t have = 0, used = 0;
	for (size_t i = 0; i < n;) {
		if (used == have) {
			randombytes_buf(pool, sizeof pool);
			have = sizeof pool;
			used = 0;
		}
		unsigned char b = pool[used++];
		if (b < 248)
			out[i++] = B62[b % 62];
	}
	sodium_memzero(pool, sizeof pool);
}

void ks_key_generate(char key_out[KS_KEY_LEN + 1])
{
	memcpy(key_out, KS_KEY_PREFIX, PREFIX_LEN);
	random_b62(key_out + ID_OFF, KS_KEY_ID_LEN);
	key_out[SEP_OFF] = '_';
	ks_key_regenerate_secret(key_out);
}

void ks_key_regenerate_secret(char key[KS_KEY_LEN + 1])
{
	/* 43 uniform base62 digits carry 43 * log2(62) = 256.03 bits. */
	random_b62(key + SECRET_OFF, KS_SECRET_LEN);
	encode_check(key, key + CHECK_OFF);
	key[KS_KEY_LEN] = '\0';
}

void ks_hmac_init(struct ks_hmac *h, const uint8_t pepper[KS_PEPPER_LEN])
{
	unsigned char pad[64];
	memset(pad, 0x36, sizeof pad);
	for (int i = 0; i < KS_PEPPER_LEN; i++)
		pad[i] ^= pepper[i];
	SHA256_Init(&h->inner);
	SHA256_Update(&h->inner, pad, sizeof pad);
	memset(pad, 0x5c, sizeof pad);
	for (int i = 0; i < KS_PEPPER_LEN; i++)
		pad[i] ^= pepper[i];
	SHA256_Init(&h->outer);
	SHA256_Update(&h->outer, pad, sizeof pad);
	sodium_memzero(pad, sizeof pad);
}

void ks_hmac(const struct ks_hmac *h, const void *msg, size_t len, uint8_t out[32])
{
	SHA256_CTX c = h->inner;
	SHA256_Update(&c, msg, len);
	SHA256_Final(out, &c);
	c = h->outer;
	SHA256_Update(&c, out, 32);
	SHA256_Final(out, &c);
	sodium_memzero(&c, sizeof c);
}

void ks_hmac_release(struct ks_hmac *h)
{
	sodium_memzero(h, sizeof *h);
}
