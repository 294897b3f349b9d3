/*
 * router-core: secp256k1 keys, Ethereum signatures and ECDH, on top of libsecp256k1.
 *
 * Formats used everywhere in this API (and on the Morpheus wire, morpheus-protocol §2.3/§2.9):
 *   - private key: 32 bytes big-endian scalar in 1..n-1, held in struct rc_secp_privkey;
 *   - public key: 65 bytes uncompressed, 0x04 || X || Y;
 *   - address: the last 20 bytes of keccak256(X || Y);
 *   - signature: 65 bytes r || s || v, s always low (s <= n/2), and v either the raw recovery
 *     id 0/1 (go-ethereum crypto.Sign, MOR-RPC messages) or 27/28 (EIP-191 personal messages,
 *     what OpenZeppelin ECDSA.recover expects for approvals and receipts, §3.6).
 * Signing is deterministic (RFC 6979 with libsecp256k1's default nonce function), so a given key
 * and hash always give the same signature, byte-identical to go-ethereum and `cast`.
 *
 * Thread-safety: every function is thread-safe. The library keeps one global libsecp256k1
 * context, created on first use under pthread_once, randomized once (side-channel blinding) from
 * libsodium's CSPRNG, and only read afterwards; libsecp256k1 documents concurrent read-only use
 * of a context as safe. The context is never freed (process lifetime).
 *
 * Secrets: a struct rc_secp_privkey is wiped by rc_secp_privkey_release() (sodium_memzero);
 * no function here logs or prints key material.
 */
#ifndef RC_SECP_H
#define RC_SECP_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

#define RC_SECP_PRIVKEY_LEN 32
#define RC_SECP_PUBKEY_LEN 65 /* 0x04 || X || Y */
#define RC_SECP_SIG_LEN 65    /* r || s || v */
#define RC_SECP_HASH_LEN 32
#define RC_SECP_ADDR_LEN 20

/*
 * A private key. Caller-allocated; filled by one of the rc_secp_privkey_from_* /
 * rc_secp_privkey_generate functions, which only succeed for a valid scalar. Wipe it with
 * rc_secp_privkey_release() when done (also after a failed load, which is harmless). Do not
 * copy it around: each copy is one more secret to wipe.
 */
struct rc_secp_privkey {
	uint8_t d[RC_SECP_PRIVKEY_LEN];
};

/*
 * Load a private key from 64 hex digits, optional "0x"/"0X" prefix, either case. Returns RC_OK,
 * RC_EPARSE (not hex, wrong length; err says where, if non-NULL) or RC_ECRYPTO (zero or >= the
 * group order). The hex text is borrowed for the call; on failure *out is zeroed.
 */
int rc_secp_privkey_from_hex(struct rc_secp_privkey *out, const char *hex, size_t len,
                             struct rc_errinfo *err);

/* Load a private key from 32 big-endian bytes. RC_OK or RC_ECRYPTO (invalid scalar; *out zeroed).
 */
int rc_secp_privkey_from_bytes(struct rc_secp_privkey *out, const uint8_t d[RC_SECP_PRIVKEY_LEN]);

/* Fresh random key from libsodium's CSPRNG. RC_OK, or RC_ECRYPTO if the library cannot start. */
int rc_secp_privkey_generate(struct rc_secp_privkey *out);

/* Wipe *k (sodium_memzero). NULL is a no-op. */
void rc_secp_privkey_release(struct rc_secp_privkey *k);

/* Uncompressed public key (0x04||X||Y) of k into pub. RC_OK or RC_ECRYPTO (not a valid key). */
int rc_secp_pubkey(const struct rc_secp_privkey *k, uint8_t pub[RC_SECP_PUBKEY_LEN]);

/*
 * Validate a serialized public key (33-byte compressed or 65-byte uncompressed) and write its
 * 65-byte uncompressed form to out. RC_OK, or RC_ECRYPTO (not a point on the curve / bad
 * prefix / other length). Use it on every public key that comes from outside.
 */
int rc_secp_pubkey_parse(const uint8_t *in, size_t len, uint8_t out[RC_SECP_PUBKEY_LEN]);

/*
 * Ethereum address of a 65-byte uncompressed public key: keccak256(X||Y)[12:]. Pure hashing,
 * the point is not validated (use rc_secp_pubkey_parse() on untrusted keys first). Returns
 * RC_OK, or RC_EINVAL if pub[0] != 0x04.
 */
int rc_secp_pubkey_to_address(const uint8_t pub[RC_SECP_PUBKEY_LEN],
                              uint8_t addr[RC_SECP_ADDR_LEN]);

/* Address of a private key's public key. RC_OK or RC_ECRYPTO. */
int rc_secp_privkey_to_address(const struct rc_secp_privkey *k, uint8_t addr[RC_SECP_ADDR_LEN]);

/*
 * Sign a 32-byte hash: RFC 6979 nonce, low-S, sig = r||s||v with v = recovery id 0 or 1
 * ("raw", go-ethereum crypto.Sign; used for MOR-RPC messages over keccak256 of the signed
 * bytes, §2.3). RC_OK or RC_ECRYPTO.
 */
int rc_secp_sign_hash(const struct rc_secp_privkey *k, const uint8_t hash[RC_SECP_HASH_LEN],
                      uint8_t sig[RC_SECP_SIG_LEN]);

/*
 * EIP-191 personal-message hash of a message, the way Morpheus approvals and receipts are
 * signed (morpheus-protocol §3.6, OpenZeppelin toEthSignedMessageHash(bytes32)):
 *   hash = keccak256("\x19Ethereum Signed Message:\n32" || keccak256(msg)).
 * Note the inner keccak: the prefix always says 32, whatever len is. Never fails.
 */
void rc_secp_eth_message_hash(const void *msg, size_t len, uint8_t hash[RC_SECP_HASH_LEN]);

/*
 * Sign msg as an EIP-191 personal message (rc_secp_eth_message_hash, then rc_secp_sign_hash)
 * with v = 27 or 28. This is the approvalSig / signedReport flavour. RC_OK or RC_ECRYPTO.
 */
int rc_secp_sign_eth_message(const struct rc_secp_privkey *k, const void *msg, size_t len,
                             uint8_t sig[RC_SECP_SIG_LEN]);

/*
 * Recover the public key that signed hash. v may be 0, 1, 27 or 28; r and s must be in range;
 * a high s is accepted here (like the EVM's ecrecover). RC_OK, or RC_ECRYPTO (bad v, r, s or no
 * key recovers).
 */
int rc_secp_recover(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[RC_SECP_SIG_LEN],
                    uint8_t pub[RC_SECP_PUBKEY_LEN]);

/* rc_secp_recover() then derive the address. RC_OK or RC_ECRYPTO. */
int rc_secp_recover_address(const uint8_t hash[RC_SECP_HASH_LEN],
                            const uint8_t sig[RC_SECP_SIG_LEN], uint8_t addr[RC_SECP_ADDR_LEN]);

/*
 * Check that sig over hash was made by the key with this address. Stricter than recovery: s
 * must be low (as go-ethereum VerifySignature and OpenZeppelin ECDSA require). v may be
 * 0/1/27/28. RC_OK when it matches, RC_ECRYPTO otherwise (malformed signature or other signer).
 */
int rc_secp_verify_address(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[RC_SECP_SIG_LEN],
                           const uint8_t addr[RC_SECP_ADDR_LEN]);

/* As rc_secp_verify_address(), against a 65-byte uncompressed public key. */
int rc_secp_verify_pubkey(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[RC_SECP_SIG_LEN],
                          const uint8_t pub[RC_SECP_PUBKEY_LEN]);

/*
 * Plain ECDSA verification against a known key, as go-ethereum's crypto.VerifySignature: r||s
 * are sig[0..64) (a recovery byte after them, if any, is not read), s must be low, pub is a
 * 65-byte uncompressed key (validated). Cheaper than rc_secp_verify_pubkey(), which goes through
 * public-key recovery: use it on hot paths where the signer's key is known. RC_OK, or
 * RC_ECRYPTO (malformed r/s, high s, invalid key, other signer).
 */
int rc_secp_verify_rs(const uint8_t hash[RC_SECP_HASH_LEN], const uint8_t sig[64],
                      const uint8_t pub[RC_SECP_PUBKEY_LEN]);

/*
 * ECDH, raw x: x = X coordinate of k * pub, 32 bytes big-endian, unhashed (go-ethereum ECIES,
 * morpheus-protocol §2.4; libsecp256k1's default would return SHA-256 of the point). pub is a
 * 65-byte uncompressed key and is validated. RC_OK or RC_ECRYPTO. The output is secret: wipe it.
 */
int rc_secp_ecdh_x(const struct rc_secp_privkey *k, const uint8_t pub[RC_SECP_PUBKEY_LEN],
                   uint8_t x[32]);

#endif
