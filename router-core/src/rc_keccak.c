/*
 * Keccak-256 as a sponge over nettle's Keccak-f[1600] permutation.
 *
 * Why not OpenSSL or nettle's sha3_256: both implement FIPS-202 SHA3, whose padding byte is 0x06;
 * Ethereum froze the original Keccak submission, padding 0x01 ... 0x80 (platform-notes: OpenSSL
 * 3.0 has no Keccak-256). The permutation is the same, so we reuse nettle's (assembly on x86-64)
 * and keep only the sponge here: rate 136 bytes (capacity 512 bits), 32-byte output squeezed from
 * the first four lanes.
 *
 * Speed: whole 136-byte blocks are XORed into the state lane by lane straight from the input
 * (no staging copy); bytes are only handled one by one for the unaligned head and tail of a
 * partial block. Lanes are little-endian 64-bit words, which is also how nettle reads them.
 */
#include <string.h>

#include <nettle/sha3.h>

#include <router-core/rc_keccak.h>

#define LANES_PER_BLOCK (RC_KECCAK256_RATE / 8)

_Static_assert(sizeof(struct sha3_state) == sizeof(((struct rc_keccak *)0)->st),
               "nettle sha3_state must be 25 lanes");

static inline uint64_t load64le(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
#else
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
	       (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	       (uint64_t)p[7] << 56;
#endif
}

static inline void permute(struct rc_keccak *k)
{
	/* struct sha3_state is exactly uint64_t a[25]; the build uses -fno-strict-aliasing. */
	nettle_sha3_permute((struct sha3_state *)(void *)k->st);
}

static inline void xor_byte(uint64_t *st, size_t pos, uint8_t b)
{
	st[pos >> 3] ^= (uint64_t)b << (8 * (pos & 7));
}

void rc_keccak_init(struct rc_keccak *k)
{
	memset(k, 0, sizeof *k);
}

void rc_keccak_update(struct rc_keccak *k, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t pos = k->pos;

	if (pos) {
		/* Finish the partial block: bytes up to a lane boundary, then whole lanes. */
		while (len && (pos & 7)) {
			xor_byte(k->st, pos++, *p++);
			len--;
		}
		while (len >= 8 && pos < RC_KECCAK256_RATE) {
			k->st[pos >> 3] ^= load64le(p);
			pos += 8;
			p += 8;
			len -= 8;
		}
		while (len && pos < RC_KECCAK256_RATE) {
			xor_byte(k->st, pos++, *p++);
			len--;
		}
		if (pos < RC_KECCAK256_RATE) {
			k->pos = pos;
			return;
		}
		permute(k);
		pos = 0;
	}
	/* Hot path: whole blocks straight from the input. */
	while (len >= RC_KECCAK256_RATE) {
		for (size_t i = 0; i < LANES_PER_BLOCK; i++)
			k->st[i] ^= load64le(p + 8 * i);
		permute(k);
		p += RC_KECCAK256_RATE;
		len -= RC_KECCAK256_RATE;
	}
	size_t lanes = len >> 3;
	for (size_t i = 0; i < lanes; i++)
		k->st[i] ^= load64le(p + 8 * i);
	for (pos = lanes * 8; pos < len; pos++)
		xor_byte(k->st, pos, p[pos]);
	k->pos = len;
}

void rc_keccak_final(struct rc_keccak *k, uint8_t out[RC_KECCAK256_LEN])
{
	/* Keccak pad10*1 with the 0x01 domain byte; both land in one byte when pos == rate-1. */
	xor_byte(k->st, k->pos, 0x01);
	xor_byte(k->st, RC_KECCAK256_RATE - 1, 0x80);
	permute(k);
	for (size_t i = 0; i < RC_KECCAK256_LEN; i++)
		out[i] = (uint8_t)(k->st[i >> 3] >> (8 * (i & 7)));
}

void rc_keccak256(const void *data, size_t len, uint8_t out[RC_KECCAK256_LEN])
{
	struct rc_keccak k;
	rc_keccak_init(&k);
	rc_keccak_update(&k, data, len);
	rc_keccak_final(&k, out);
}
