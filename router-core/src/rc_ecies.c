/*
 * go-ethereum-compatible ECIES (morpheus-protocol §2.4; oracle ../shared/vectors/ecies.py).
 *
 * The traps (§7 item 6) are all in the key schedule: the shared secret is the raw x coordinate
 * (libsecp256k1's default ECDH callback would hash the point, which is why rc_secp_ecdh_x
 * exists), the KDF is one block of NIST concat-KDF with counter 00000001 and no shared info, the
 * MAC key is SHA-256 of the second KDF half rather than the half itself, and the MAC covers
 * IV||C with no s2 suffix. Get any of them wrong and the reference consumer reports "invalid
 * message" for every chunk.
 *
 * Symmetric primitives come from nettle: caller-allocated contexts, no allocation and no
 * provider lookups per call (OpenSSL 3's EVP fetches and allocates a cipher context each
 * time), with AES-NI/SHA-NI picked at run time. This file runs once per streamed chunk on both
 * sides, so that matters.
 */
#include <string.h>

#include <nettle/aes.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha2.h>
#include <sodium.h>

#include <router-core/rc_ecies.h>

struct keys {
	uint8_t ke[16]; /* AES-128 key */
	uint8_t km[32]; /* HMAC-SHA-256 key */
};

/* K = SHA-256(00000001 || z); Ke = K[0:16]; Km = SHA-256(K[16:32]). */
static void derive_keys(const uint8_t z[32], struct keys *out)
{
	static const uint8_t counter[4] = {0, 0, 0, 1};
	struct sha256_ctx h;
	uint8_t k[32];
	sha256_init(&h);
	sha256_update(&h, sizeof counter, counter);
	sha256_update(&h, 32, z);
	sha256_digest(&h, sizeof k, k);
	memcpy(out->ke, k, 16);
	sha256_init(&h);
	sha256_update(&h, 16, k + 16);
	sha256_digest(&h, sizeof out->km, out->km);
	sodium_memzero(k, sizeof k);
	sodium_memzero(&h, sizeof h);
}

static void mac(const uint8_t km[32], const uint8_t *iv_c, size_t n, uint8_t tag[32])
{
	struct hmac_sha256_ctx h;
	hmac_sha256_set_key(&h, 32, km);
	hmac_sha256_update(&h, n, iv_c);
	hmac_sha256_digest(&h, 32, tag);
	sodium_memzero(&h, sizeof h);
}

/* AES-128-CTR; the IV is the full 16-byte counter block, incremented big-endian (Go's NewCTR). */
static void ctr(const uint8_t ke[16], const uint8_t iv[16], const uint8_t *in, size_t n,
                uint8_t *out)
{
	struct aes128_ctx aes;
	uint8_t block[AES_BLOCK_SIZE];
	memcpy(block, iv, sizeof block);
	aes128_set_encrypt_key(&aes, ke);
	ctr_crypt(&aes, nettle_aes128.encrypt, AES_BLOCK_SIZE, block, n, out, in);
	sodium_memzero(&aes, sizeof aes);
}

int rc_ecies_encrypt_fixed(const uint8_t pub[RC_ECIES_PUB_LEN], const uint8_t *msg, size_t len,
                           const uint8_t eph[32], const uint8_t iv[RC_ECIES_IV_LEN], uint8_t *out,
                           size_t out_cap, size_t *out_len)
{
	if (!pub || (!msg && len) || !eph || !iv || !out || !out_len)
		return RC_EINVAL;
	if (len > SIZE_MAX - RC_ECIES_OVERHEAD || out_cap < len + RC_ECIES_OVERHEAD)
		return RC_ERANGE;
	if (pub[0] != 0x04)
		return RC_EINVAL;

	struct rc_secp_privkey r;
	uint8_t z[32];
	struct keys k;
	int rc = rc_secp_privkey_from_bytes(&r, eph);
	if (rc != RC_OK) {
		rc = RC_EINVAL;
		goto out;
	}
	if (rc_secp_pubkey(&r, out) != RC_OK) {
		rc = RC_ECRYPTO;
		goto out;
	}
	if (rc_secp_ecdh_x(&r, pub, z) != RC_OK) {
		rc = RC_EINVAL; /* pub is not on the curve */
		goto out;
	}
	derive_keys(z, &k);
	uint8_t *ivp = out + RC_ECIES_PUB_LEN;
	memcpy(ivp, iv, RC_ECIES_IV_LEN);
	ctr(k.ke, iv, msg, len, ivp + RC_ECIES_IV_LEN);
	mac(k.km, ivp, RC_ECIES_IV_LEN + len, ivp + RC_ECIES_IV_LEN + len);
	*out_len = len + RC_ECIES_OVERHEAD;
	rc = RC_OK;
out:
	rc_secp_privkey_release(&r);
	sodium_memzero(z, sizeof z);
	sodium_memzero(&k, sizeof k);
	return rc;
}

int rc_ecies_encrypt(const uint8_t pub[RC_ECIES_PUB_LEN], const uint8_t *msg, size_t len,
                     uint8_t *out, size_t out_cap, size_t *out_len)
{
	struct rc_secp_privkey r;
	uint8_t iv[RC_ECIES_IV_LEN];
	if (rc_secp_privkey_generate(&r) != RC_OK)
		return RC_ECRYPTO;
	randombytes_buf(iv, sizeof iv); /* rc_secp_privkey_generate ran sodium_init() */
	int rc = rc_ecies_encrypt_fixed(pub, msg, len, r.d, iv, out, out_cap, out_len);
	rc_secp_privkey_release(&r);
	return rc;
}

static int dec_fail(struct rc_errinfo *err, int rc, size_t off, const char *text)
{
	if (err) {
		err->offset = off;
		memset(err->text, 0, sizeof err->text);
		memcpy(err->text, text, strnlen(text, sizeof err->text - 1));
	}
	return rc;
}

int rc_ecies_decrypt(const struct rc_secp_privkey *key, const uint8_t *blob, size_t blob_len,
                     uint8_t *out, size_t out_cap, size_t *out_len, struct rc_errinfo *err)
{
	if (!key || (!blob && blob_len) || !out_len || (!out && out_cap))
		return dec_fail(err, RC_EINVAL, 0, "invalid argument");
	if (blob_len < RC_ECIES_OVERHEAD)
		return dec_fail(err, RC_ETRUNC, blob_len, "ciphertext shorter than 113 bytes");
	size_t n = blob_len - RC_ECIES_OVERHEAD;
	/* Go reads the prefix as 2, 3 or 4 but then parses 65 bytes, so only 0x04 can work (§2.4);
	 * libsecp256k1 would also take the hybrid forms 0x06/0x07, which Go refuses. */
	if (blob[0] != 0x04)
		return dec_fail(err, RC_EPARSE, 0, "ephemeral key is not an uncompressed point");

	uint8_t z[32], tag[32];
	struct keys k;
	int rc;
	if (rc_secp_ecdh_x(key, blob, z) != RC_OK) {
		rc = dec_fail(err, RC_EPARSE, 0, "ephemeral key is not on the curve");
		goto out;
	}
	derive_keys(z, &k);
	const uint8_t *iv = blob + RC_ECIES_PUB_LEN;
	mac(k.km, iv, RC_ECIES_IV_LEN + n, tag);
	if (!memeql_sec(tag, iv + RC_ECIES_IV_LEN + n, sizeof tag)) {
		rc = dec_fail(err, RC_ECRYPTO, blob_len - RC_ECIES_TAG_LEN, "message tag mismatch");
		goto out;
	}
	if (out_cap < n) {
		rc = dec_fail(err, RC_ERANGE, 0, "output buffer too small");
		goto out;
	}
	ctr(k.ke, iv, iv + RC_ECIES_IV_LEN, n, out);
	*out_len = n;
	rc = RC_OK;
out:
	sodium_memzero(z, sizeof z);
	sodium_memzero(&k, sizeof k);
	return rc;
}
