/*
 * router-core: Keccak-256, the Ethereum hash (the original Keccak submission padding 0x01..0x80,
 * not FIPS-202 SHA3-256, which pads with 0x06 and gives different digests).
 *
 * Two ways in: the one-shot rc_keccak256() for a whole buffer, and the incremental
 * init/update/final triple for data that arrives in pieces (signed JSON, transaction fields).
 * Both give the same digest for the same bytes, however the input is split.
 *
 * No allocation, no I/O, no global state: every function is thread-safe as long as one
 * struct rc_keccak is not used by two threads at once.
 */
#ifndef RC_KECCAK_H
#define RC_KECCAK_H

#include <stddef.h>
#include <stdint.h>

#define RC_KECCAK256_LEN 32   /* digest bytes */
#define RC_KECCAK256_RATE 136 /* sponge block bytes (1600 - 2*256 bits) */

/*
 * Incremental hashing state. Caller-allocated (stack or embedded), no destructor needed; the
 * fields are private. It is plain data: copying it forks the hash (hash a common prefix once,
 * then finish several copies).
 */
struct rc_keccak {
	uint64_t st[25]; /* Keccak-f[1600] state, lanes as little-endian 64-bit words */
	size_t pos;      /* bytes absorbed into the current block, 0..RC_KECCAK256_RATE-1 */
};

/* Start a new Keccak-256 computation in *k. Never fails. */
void rc_keccak_init(struct rc_keccak *k);

/*
 * Absorb len bytes at data (borrowed for the call; may be NULL when len is 0). Any split of the
 * input over several calls gives the same digest. Never fails.
 */
void rc_keccak_update(struct rc_keccak *k, const void *data, size_t len);

/*
 * Finish: write the 32-byte digest to out. *k is spent afterwards (call rc_keccak_init() to
 * reuse it). Never fails.
 */
void rc_keccak_final(struct rc_keccak *k, uint8_t out[RC_KECCAK256_LEN]);

/* One-shot Keccak-256 of len bytes at data into out (out may alias data). Never fails. */
void rc_keccak256(const void *data, size_t len, uint8_t out[RC_KECCAK256_LEN]);

#endif
