/*
 * secp256k1 keys, signatures and ECDH through libsecp256k1.
 *
 * One process-wide context: creating one costs far more than a signature, and libsecp256k1
 * allows concurrent use of a context through const pointers, which is all we do after the
 * one-time pthread_once setup. The context is randomized (blinding of the signing and pubkey
 * generation multiplications against timing/power side channels) with 32 bytes from libsodium.
 *
 * Signatures are what go-ethereum's crypto.Sign produces: libsecp256k1's recoverable signing with
 * the default RFC 6979 nonce (so vectors in morpheus-vectors.txt reproduce exactly, §2.9), which
 * already emits low-S. v is the recovery id (0/1) for MOR-RPC and +27 for EIP-191 messages.
 */
#include <pthread.h>
#include <string.h>

#include <secp256k1.h>
#include <secp256k1_ecdh.h>
#include <secp256k1_recovery.h>
#include <sodium.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_secp.h>

static secp256k1_context *g_ctx;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void ctx_setup(void)
{
	uint8_t seed[32];
	if (sodium_init() < 0)
		return;
	secp256k1_context *c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
	if (!c)
		return;
	randombytes_buf(seed, sizeof seed);
	if (!secp256k1_context_randomize(c, seed)) {
		secp256k1_context_destroy(c);
		c = NULL;
	}
	sodium_memzero(seed, sizeof seed);
	g_ctx = c;
}

/* The shared context, or NULL if libsodium or libsecp256k1 could not start. */
static const secp256k1_context *ctx(void)
{
	pthread_once(&g_once, ctx_setup);
	return g_ctx;
}

int rc_secp_privkey_from_bytes(struct rc_secp_privkey *out, const uint8_t d[RC_SECP_PRIVKEY_LEN])
{
	const secp256k1_context *c = ctx();
	if (!c || !secp256k1_ec_seckey_verify(c, d)) {
		sodium_memzero(out, sizeof *out);
		return RC_ECRYPTO;
	}
	memmove(out->d, d, RC_SECP_PRIVKEY_LEN);
	return RC_OK;
}

int rc_secp_privkey_from_hex(struct rc_secp_privkey *out, const char *hex, size_t len,
                             struct rc_errinfo *err)
{
	uint8_t d[RC_SECP_PRIVKEY_LEN];
	int rc = rc_hex_decode_exact(hex, len, d, sizeof d, err);
	if (rc == RC_OK)
		rc = rc_secp_privkey_from_bytes(out, d);
	else
		sodium_memzero(out, sizeof *out);
	sodium_memzero(d, sizeof d);
	return rc;
}

int rc_secp_privkey_generate(struct rc_secp_privkey *out)
{
	const secp256k1_context *c = ctx();
	if (!c)
		return RC_ECRYPTO;
	/* A uniformly random 32-byte string is invalid with probability ~2^-128; loop anyway. */
	do
		randombytes_buf(out->d, sizeof out->d);
	while (!secp256k1_ec_seckey_verify(c, out->d));
	return RC_OK;
}

void rc_secp_privkey_release(struct rc_secp_privkey *k)
{
	if (k)
		sodium_memzero(k, sizeof *k);
}

static int serialize_pub(const secp256k1_context *c, const secp256k1_pubkey *pk,
                         uint8_t pub[RC_SECP_PUBKEY_LEN])
{
	size_t n = RC_SECP_PUBKEY_LEN;
	secp256k1_ec_pubkey_serialize(c, pub, &n, pk, SECP256K1_EC_UNCOMPRESSED);
	return n == RC_SECP_PUBKEY_LEN ? RC_OK : RC_ECRYPTO;
}

int rc_secp_pubkey(const struct rc_secp_privkey *k, uint8_t pub[RC_SECP_PUBKEY_LEN])
{
	const secp256k1_context *c = ctx();
	secp256k1_pubkey pk;
	if (!c || !secp256k1_ec_pubkey_create(c, &pk, k->d))
		return RC_ECRYPTO;
	return serialize_pub(c, &pk, pub);
}

int rc_secp_pubkey_parse(const uint8_t *in, size_t len, uint8_t out[RC_SECP_PUBKEY_LEN])
{
	const secp256k1_context *c = ctx();
	secp256k1_pubkey pk;
	/* Only the two standard forms: libsecp256k1 would also take "hybrid" 0x06/0x07 keys. */
	if (!c || !in || !((len == 33 && (in[0] == 2 || in[0] == 3)) || (len == 65 && in[0] == 4)))
		return RC_ECRYPTO;
	if (!secp256k1_ec_pubkey_parse(c, &pk, in, len))
		return RC_ECRYPTO;
	return serialize_pub(c, &pk, out);
}

int rc_secp_pubkey_to_address(const uint8_t pub[RC_SECP_PUBKEY_LEN], uint8_t addr[RC_SECP_ADDR_LEN])
{
	uint8_t h[RC_KECCAK256_LEN];
	if (pub[0] != 4)
		return RC_EINVAL;
	rc_keccak256(pub + 1, RC_SECP_PUBKEY_LEN - 1, h);
	memcpy(addr, h + 12, RC_SECP_ADDR_LEN);
	return RC_OK;
}

int rc_secp_privkey_to_address(const struct rc_secp_privkey *k, uint8_t addr[RC_SECP_ADDR_LEN])
{
	uint8_t pub[RC_SECP_PUBKEY_LEN];
	int rc = rc_secp_pubkey(k, pub);
	return rc ? rc : rc_secp_pubkey_to_address(pub, addr);
}

int rc_secp_sign_hash(const struct rc_secp_privkey *k, const uint8_t hash[RC_SECP_HASH_LEN],
                      uint8_t sig[RC_SECP_SIG_LEN])
{
	const secp256k1_context *c = ctx();
	secp256k1_ecdsa_recoverable_signature rs;
	int recid = 0;
	/* NULL nonce function = secp256k1_nonce_function_rfc6979, as go-ethereum uses. */
	if (!c || !secp256k1_ecdsa_sign_recoverable(c, &rs, hash, k->d, NULL, NULL))
		return RC_ECRYPTO;
	secp256k1_ecdsa_recoverable_signature_serialize_compact(c, sig, &recid, &rs);
	sig[64] = (uint8_t)recid;
	return RC_OK;
}

void rc_secp_eth_message_hash(const void *msg, size_t len, uint8_t hash[RC_SECP_HASH_LEN])
{
	/* morpheus-protocol §3.6: ECDSA.recover(toEthSignedMessageHash(keccak256(approval))). */
	static const char prefix[] = "\x19"
	                             "Ethereum Signed Message:\n32";
	uint8_t inner[RC_KECCAK256_LEN];
	struct rc_keccak k;
	rc_keccak256(msg, len, inner);
	rc_keccak_init(&k);
	rc_keccak_update(&k, prefix, sizeof prefix - 1);
	rc_keccak_update(&k, inner, sizeof inner);
	rc_keccak_final(&k, hash);
}

int rc_secp_sign_eth_message(const struct rc_secp_privkey *k, const void *msg, size_t len,
                             uint8_t sig[RC_SECP_SIG_LEN])
{
	uint8_t h[RC_SECP_HASH_LEN];
	rc_secp_eth_message_hash(msg, len, h);
	int rc = rc_secp_sign_hash(k, h, sig);
	if (rc == RC_OK)
		sig[64] += 27;
	return rc;
}

/* Parse r||s||v (v 0/1/27/28) into libsecp256k1's form; 0 if malformed. */
static int parse_sig(const secp256k1_context *c, const uint8_t sig[RC_SECP_SIG_LEN],
                     secp256k1_ecdsa_recoverable_signature *rs)
{
	int v = sig[64];
	if (v >= 27)
		v -= 27;
	/* Recovery ids 2 and 3 (r >= n) have probability ~2^-127; Ethereum never emits them. */
	if (v != 0 && v != 1)
		return 0;
	return secp256k1_ecdsa_recoverable_signature_parse_compact(c, rs, sig, v);
}

int rc_secp_recover(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[RC_SECP_SIG_LEN],
                    uint8_t pub[RC_SECP_PUBKEY_LEN])
{
	const secp256k1_context *c = ctx();
	secp256k1_ecdsa_recoverable_signature rs;
	secp256k1_pubkey pk;
	if (!c || !parse_sig(c, sig, &rs) || !secp256k1_ecdsa_recover(c, &pk, &rs, hash))
		return RC_ECRYPTO;
	return serialize_pub(c, &pk, pub);
}

int rc_secp_recover_address(const uint8_t hash[RC_SECP_HASH_LEN],
                            const uint8_t sig[RC_SECP_SIG_LEN], uint8_t addr[RC_SECP_ADDR_LEN])
{
	uint8_t pub[RC_SECP_PUBKEY_LEN];
	int rc = rc_secp_recover(hash, sig, pub);
	return rc ? rc : rc_secp_pubkey_to_address(pub, addr);
}

/* s <= n/2, checked the way libsecp256k1 does: normalizing a low-S signature is a no-op. */
static int is_low_s(const secp256k1_context *c, const uint8_t sig[RC_SECP_SIG_LEN])
{
	secp256k1_ecdsa_signature s;
	if (!secp256k1_ecdsa_signature_parse_compact(c, &s, sig))
		return 0;
	return !secp256k1_ecdsa_signature_normalize(c, NULL, &s);
}

int rc_secp_verify_pubkey(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[RC_SECP_SIG_LEN],
                          const uint8_t pub[RC_SECP_PUBKEY_LEN])
{
	const secp256k1_context *c = ctx();
	uint8_t got[RC_SECP_PUBKEY_LEN];
	if (!c || !is_low_s(c, sig) || rc_secp_recover(hash, sig, got) != RC_OK)
		return RC_ECRYPTO;
	/* Public data, but compare in constant time anyway: it costs nothing here. */
	return sodium_memcmp(got, pub, RC_SECP_PUBKEY_LEN) == 0 ? RC_OK : RC_ECRYPTO;
}

int rc_secp_verify_address(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[RC_SECP_SIG_LEN],
                           const uint8_t addr[RC_SECP_ADDR_LEN])
{
	const secp256k1_context *c = ctx();
	uint8_t got[RC_SECP_ADDR_LEN];
	if (!c || !is_low_s(c, sig) || rc_secp_recover_address(hash, sig, got) != RC_OK)
		return RC_ECRYPTO;
	return sodium_memcmp(got, addr, RC_SECP_ADDR_LEN) == 0 ? RC_OK : RC_ECRYPTO;
}

int rc_secp_verify_rs(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[64],
                      const uint8_t pub[RC_SECP_PUBKEY_LEN])
{
	const secp256k1_context *c = ctx();
	secp256k1_ecdsa_signature s;
	secp256k1_pubkey pk;
	if (!c || !hash || !sig || !pub || pub[0] != 4 ||
	    !secp256k1_ec_pubkey_parse(c, &pk, pub, RC_SECP_PUBKEY_LEN))
		return RC_ECRYPTO;
	/* parse_compact refuses r or s >= n; verify itself refuses a high s (not normalized). */
	if (!secp256k1_ecdsa_signature_parse_compact(c, &s, sig))
		return RC_ECRYPTO;
	return secp256k1_ecdsa_verify(c, &s, hash, &pk) ? RC_OK : RC_ECRYPTO;
}

/* libsecp256k1's default ECDH hash is SHA-256(compressed point); ECIES wants the bare x. */
static int ecdh_copy_x(unsigned char *out, const unsigned char *x32, const unsigned char *y32,
                       void *data)
{
	(void)y32;
	(void)data;
	memcpy(out, x32, 32);
	return 1;
}

int rc_secp_ecdh_x(const struct rc_secp_privkey *k, const uint8_t pub[RC_SECP_PUBKEY_LEN],
                   uint8_t x[32])
{
	const secp256k1_context *c = ctx();
	secp256k1_pubkey pk;
	if (!c || pub[0] != 4 || !secp256k1_ec_pubkey_parse(c, &pk, pub, RC_SECP_PUBKEY_LEN))
		return RC_ECRYPTO;
	if (!secp256k1_ecdh(c, x, &pk, k->d, ecdh_copy_x, NULL))
		return RC_ECRYPTO;
	return RC_OK;
}
