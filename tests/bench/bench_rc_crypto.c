/*
 * bench_rc_crypto: the cost of router-core's Ethereum primitives next to the libraries under
 * them, so a regression in our glue shows up as a ratio, not as a guess.
 *
 *   - Keccak-256 (our sponge over nettle's permutation) vs OpenSSL EVP SHA3-256 (same
 *     Keccak-f[1600], different padding) on 32 B, 136 B, 1 KiB, 64 KiB; ratio = ours/OpenSSL
 *     throughput (target >= 0.9). A third column runs nettle's own SHA3-256 sponge over the very
 *     permutation we use, which separates the cost of our sponge from that of the permutation;
 *   - sign (recoverable, RFC 6979), recover and raw-x ECDH through rc_secp vs the same
 *     libsecp256k1 calls on a private context; ratio = ours/direct (target >= 0.95);
 *   - decoding a getModelActiveBids-shaped reply of 255 bids (built with rc_abi_encode).
 *
 * Each row runs for about 0.5 s (iterations doubled until then). Prints figures, never fails on
 * time. CLOCK_MONOTONIC throughout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nettle/sha3.h>
#include <openssl/evp.h>
#include <secp256k1.h>
#include <secp256k1_ecdh.h>
#include <secp256k1_recovery.h>
#include <sodium.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_morpheus.h>
#include <router-core/rc_secp.h>

#define TARGET_SECONDS 0.5

static volatile uint8_t sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef void (*bench_fn)(void *ctx, size_t iters);

/* Operations per second of fn, measured over ~TARGET_SECONDS. */
static double rate(bench_fn fn, void *ctx)
{
	size_t iters = 1;
	fn(ctx, 1); /* warm-up: lazy contexts, caches */
	for (;;) {
		double t0 = now();
		fn(ctx, iters);
		double dt = now() - t0;
		if (dt >= TARGET_SECONDS)
			return (double)iters / dt;
		/* jump close to the target once the timer is meaningful */
		if (dt > 0.01)
			iters = (size_t)((double)iters * TARGET_SECONDS * 1.1 / dt) + 1;
		else
			iters *= 4;
	}
}

/* ---- keccak -------------------------------------------------------------------------------- */

struct hash_ctx {
	const uint8_t *data;
	size_t len;
	EVP_MD_CTX *evp;
	EVP_MD *md;
};

static void run_ours(void *p, size_t iters)
{
	struct hash_ctx *c = p;
	uint8_t out[32];
	for (size_t i = 0; i < iters; i++) {
		rc_keccak256(c->data, c->len, out);
		sink ^= out[0];
	}
}

static void run_openssl(void *p, size_t iters)
{
	struct hash_ctx *c = p;
	uint8_t out[32];
	unsigned int n;
	for (size_t i = 0; i < iters; i++) {
		if (!EVP_DigestInit_ex2(c->evp, c->md, NULL) ||
		    !EVP_DigestUpdate(c->evp, c->data, c->len) ||
		    !EVP_DigestFinal_ex(c->evp, out, &n))
			abort();
		sink ^= out[0];
	}
}

static void run_nettle(void *p, size_t iters)
{
	struct hash_ctx *c = p;
	struct sha3_256_ctx ctx;
	uint8_t out[32];
	for (size_t i = 0; i < iters; i++) {
		sha3_256_init(&ctx);
		sha3_256_update(&ctx, c->len, c->data);
		sha3_256_digest(&ctx, sizeof out, out);
		sink ^= out[0];
	}
}

static void bench_keccak(void)
{
	static const size_t sizes[] = {32, 136, 1024, 65536};
	uint8_t *data = malloc(65536);
	for (size_t i = 0; i < 65536; i++)
		data[i] = (uint8_t)(i * 131 + 7);
	struct hash_ctx c = {.data = data, .evp = EVP_MD_CTX_new(),
			     .md = EVP_MD_fetch(NULL, "SHA3-256", NULL)};
	if (!c.evp || !c.md)
		abort();
	printf("%-34s %14s %14s %8s %14s %8s\n", "keccak-256 vs EVP SHA3-256", "ours MB/s",
	       "openssl MB/s", "ratio", "nettle-sha3", "ratio");
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		c.len = sizes[i];
		double a = rate(run_ours, &c), b = rate(run_openssl, &c), n = rate(run_nettle, &c);
		char label[40];
		snprintf(label, sizeof label, "  %zu B", sizes[i]);
		printf("%-34s %14.1f %14.1f %8.2f %14.1f %8.2f\n", label, a * (double)c.len / 1e6,
		       b * (double)c.len / 1e6, a / b, n * (double)c.len / 1e6, a / n);
	}
	EVP_MD_free(c.md);
	EVP_MD_CTX_free(c.evp);
	free(data);
}

/* ---- secp256k1 ----------------------------------------------------------------------------- */

struct ec_ctx {
	secp256k1_context *raw; /* our own context for the direct calls */
	struct rc_secp_privkey key;
	uint8_t hash[32], sig[65], pub[65];
	secp256k1_pubkey pk;
	secp256k1_ecdsa_recoverable_signature rsig;
};

static void sign_ours(void *p, size_t iters)
{
	struct ec_ctx *c = p;
	uint8_t sig[65];
	for (size_t i = 0; i < iters; i++) {
		c->hash[0] = (uint8_t)i;
		if (rc_secp_sign_hash(&c->key, c->hash, sig) != RC_OK)
			abort();
		sink ^= sig[0];
	}
}

static void sign_direct(void *p, size_t iters)
{
	struct ec_ctx *c = p;
	secp256k1_ecdsa_recoverable_signature rs;
	uint8_t sig[64];
	int recid;
	for (size_t i = 0; i < iters; i++) {
		c->hash[0] = (uint8_t)i;
		if (!secp256k1_ecdsa_sign_recoverable(c->raw, &rs, c->hash, c->key.d, NULL, NULL))
			abort();
		secp256k1_ecdsa_recoverable_signature_serialize_compact(c->raw, sig, &recid, &rs);
		sink ^= sig[0];
	}
}

static void recover_ours(void *p, size_t iters)
{
	struct ec_ctx *c = p;
	uint8_t pub[65];
	for (size_t i = 0; i < iters; i++) {
		if (rc_secp_recover(c->hash, c->sig, pub) != RC_OK)
			abort();
		sink ^= pub[1];
	}
}

static void recover_direct(void *p, size_t iters)
{
	struct ec_ctx *c = p;
	secp256k1_ecdsa_recoverable_signature rs;
	secp256k1_pubkey pk;
	uint8_t pub[65];
	for (size_t i = 0; i < iters; i++) {
		size_t n = 65;
		if (!secp256k1_ecdsa_recoverable_signature_parse_compact(c->raw, &rs, c->sig,
									 c->sig[64]) ||
		    !secp256k1_ecdsa_recover(c->raw, &pk, &rs, c->hash))
			abort();
		secp256k1_ec_pubkey_serialize(c->raw, pub, &n, &pk, SECP256K1_EC_UNCOMPRESSED);
		sink ^= pub[1];
	}
}

static int copy_x(unsigned char *out, const unsigned char *x, const unsigned char *y, void *d)
{
	(void)y;
	(void)d;
	memcpy(out, x, 32);
	return 1;
}

static void ecdh_ours(void *p, size_t iters)
{
	struct ec_ctx *c = p;
	uint8_t x[32];
	for (size_t i = 0; i < iters; i++) {
		if (rc_secp_ecdh_x(&c->key, c->pub, x) != RC_OK)
			abort();
		sink ^= x[0];
	}
}

static void ecdh_direct(void *p, size_t iters)
{
	struct ec_ctx *c = p;
	secp256k1_pubkey pk;
	uint8_t x[32];
	for (size_t i = 0; i < iters; i++) {
		/* the same work as ours: parse the 65-byte key, then multiply */
		if (!secp256k1_ec_pubkey_parse(c->raw, &pk, c->pub, 65) ||
		    !secp256k1_ecdh(c->raw, x, &pk, c->key.d, copy_x, NULL))
			abort();
		sink ^= x[0];
	}
}

static void bench_secp(void)
{
	struct ec_ctx c;
	uint8_t seed[32];
	memset(&c, 0, sizeof c);
	c.raw = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
	randombytes_buf(seed, sizeof seed);
	if (!secp256k1_context_randomize(c.raw, seed))
		abort();
	if (rc_secp_privkey_from_hex(&c.key,
				     "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
				     64, NULL) != RC_OK)
		abort();
	rc_keccak256("bench", 5, c.hash);
	if (rc_secp_sign_hash(&c.key, c.hash, c.sig) != RC_OK)
		abort();
	/* a peer's public key for ECDH */
	struct rc_secp_privkey peer;
	rc_secp_privkey_from_hex(&peer,
				 "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", 64,
				 NULL);
	rc_secp_pubkey(&peer, c.pub);
	rc_secp_privkey_release(&peer);

	static const struct {
		const char *name;
		bench_fn ours, direct;
	} rows[] = {
		{"  sign (recoverable, RFC 6979)", sign_ours, sign_direct},
		{"  recover (65-byte pubkey out)", recover_ours, recover_direct},
		{"  ECDH raw x", ecdh_ours, ecdh_direct},
	};
	printf("\n%-34s %14s %14s %8s\n", "secp256k1 via rc_secp vs direct", "ours op/s",
	       "direct op/s", "ratio");
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		double a = rate(rows[i].ours, &c), b = rate(rows[i].direct, &c);
		printf("%-34s %14.0f %14.0f %8.2f\n", rows[i].name, a, b, a / b);
	}
	rc_secp_privkey_release(&c.key);
	secp256k1_context_destroy(c.raw);
}

/* ---- ABI ----------------------------------------------------------------------------------- */

struct abi_ctx {
	struct rc_abi_type *type;
	uint8_t *data;
	size_t len;
};

static void decode_bids(void *p, size_t iters)
{
	struct abi_ctx *c = p;
	for (size_t i = 0; i < iters; i++) {
		struct rc_abi_value *v;
		if (rc_abi_decode(c->type, c->data, c->len, 0, &v, NULL) != RC_OK)
			abort();
		sink ^= v->u.list.items[1].u.list.items[254].u.list.items[0].u.word[31];
		rc_abi_value_free(v);
	}
}

static void bench_abi(void)
{
	enum { N = 255 };
	static const char type[] = "(bytes32[]," RC_MORPHEUS_BID_TYPE "[],uint256)";
	struct abi_ctx c;
	static struct rc_abi_value ids[N], bids[N], fields[N][6];
	static uint8_t id[N][32];
	struct rc_abi_value top[3], root;
	uint8_t provider[20];
	if (rc_abi_type_parse(type, sizeof type - 1, &c.type, NULL) != RC_OK)
		abort();
	for (int i = 0; i < N; i++) {
		memset(id[i], i + 1, 32);
		memset(provider, 0x70 + (i & 15), 20);
		rc_abi_set_fixed_bytes(&ids[i], id[i], 32);
		rc_abi_set_address(&fields[i][0], provider);
		rc_abi_set_fixed_bytes(&fields[i][1], id[i], 32);
		rc_abi_set_uint(&fields[i][2], 10000000000000ull + (uint64_t)i);
		rc_abi_set_uint(&fields[i][3], (uint64_t)i);
		rc_abi_set_uint(&fields[i][4], 1735689600 + (uint64_t)i);
		rc_abi_set_uint(&fields[i][5], 0);
		rc_abi_set_tuple(&bids[i], fields[i], 6);
	}
	rc_abi_set_array(&top[0], ids, N);
	rc_abi_set_array(&top[1], bids, N);
	rc_abi_set_uint(&top[2], N);
	rc_abi_set_tuple(&root, top, 3);
	if (rc_abi_encoded_size(c.type, &root, &c.len) != RC_OK || !(c.data = malloc(c.len)) ||
	    rc_abi_encode(c.type, &root, c.data, c.len, &c.len) != RC_OK)
		abort();
	double r = rate(decode_bids, &c);
	printf("\n%-34s %14s %14s %8s\n", "ABI decode", "decodes/s", "us/decode", "ns/bid");
	char label[48];
	snprintf(label, sizeof label, "  255 bids (%zu B reply)", c.len);
	printf("%-34s %14.0f %14.1f %8.0f\n", label, r, 1e6 / r, 1e9 / r / N);
	free(c.data);
	rc_abi_type_free(c.type);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	printf("bench_rc_crypto (~%.1f s per row, CLOCK_MONOTONIC)\n\n", TARGET_SECONDS);
	bench_keccak();
	bench_secp();
	bench_abi();
	return 0;
}
