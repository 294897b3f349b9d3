/*
 * router-core ECIES, go-ethereum flavour (crypto/ecies with ECIES_AES128_SHA256, s1 = s2 = nil):
 * how a Morpheus provider encrypts every response chunk to the consumer (morpheus-protocol §2.4).
 *
 *   blob = R(65: 0x04||X||Y) || IV(16) || C || tag(32)        113 bytes of overhead
 *   z    = X coordinate of r*Pub (32 bytes, not hashed)
 *   K    = SHA-256(00 00 00 01 || z);  Ke = K[0:16];  Km = SHA-256(K[16:32])
 *   C    = AES-128-CTR(Ke, IV, plaintext)   (IV is the whole initial counter block)
 *   tag  = HMAC-SHA-256(Km, IV || C)
 *
 * On the wire the blob travels as lowercase hex without "0x" (rc_morrpc does that part).
 *
 * All functions are pure apart from the CSPRNG draw of rc_ecies_encrypt(), allocate nothing,
 * wipe their intermediate secrets, and are thread-safe. Buffers are borrowed for the call and
 * must not overlap.
 */
#ifndef RC_ECIES_H
#define RC_ECIES_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>
#include <router-core/rc_secp.h>

#define RC_ECIES_PUB_LEN 65
#define RC_ECIES_IV_LEN 16
#define RC_ECIES_TAG_LEN 32
#define RC_ECIES_OVERHEAD (RC_ECIES_PUB_LEN + RC_ECIES_IV_LEN + RC_ECIES_TAG_LEN) /* 113 */

/*
 * Encrypt len bytes at msg to the 65-byte uncompressed public key pub, with a fresh ephemeral
 * key and IV from libsodium's CSPRNG. Writes len + RC_ECIES_OVERHEAD bytes to out (capacity
 * out_cap) and that count to *out_len.
 * Returns RC_OK, RC_ERANGE (out_cap too small), RC_EINVAL (pub is not a valid uncompressed
 * point: go-ethereum's crypto.UnmarshalPubkey accepts nothing else) or RC_ECRYPTO (the CSPRNG
 * or libsecp256k1 failed).
 */
int rc_ecies_encrypt(const uint8_t pub[RC_ECIES_PUB_LEN], const uint8_t *msg, size_t len,
                     uint8_t *out, size_t out_cap, size_t *out_len);

/*
 * As rc_ecies_encrypt() with a caller-chosen ephemeral private key (32 bytes big-endian) and IV:
 * deterministic, for test vectors only. Reusing an (eph, iv) pair leaks plaintext, so production
 * code must call rc_ecies_encrypt(). Extra error: RC_EINVAL when eph is not a valid scalar.
 */
int rc_ecies_encrypt_fixed(const uint8_t pub[RC_ECIES_PUB_LEN], const uint8_t *msg, size_t len,
                           const uint8_t eph[32], const uint8_t iv[RC_ECIES_IV_LEN], uint8_t *out,
                           size_t out_cap, size_t *out_len);

/*
 * Decrypt blob (blob_len bytes) with the recipient's private key k. Writes
 * blob_len - RC_ECIES_OVERHEAD bytes to out (capacity out_cap) and that count to *out_len.
 * The MAC is checked, in constant time, before anything is decrypted; on any failure out is
 * left untouched.
 * Returns RC_OK;
 *   RC_ETRUNC  blob shorter than RC_ECIES_OVERHEAD;
 *   RC_EPARSE  the ephemeral key is not an uncompressed (0x04) point on the curve;
 *   RC_ECRYPTO the MAC does not match (tampered, truncated, or encrypted to another key);
 *   RC_ERANGE  out_cap too small;
 *   RC_EINVAL  NULL arguments.
 * err (optional) gets the offset of the offending part in blob and a short text.
 */
int rc_ecies_decrypt(const struct rc_secp_privkey *k, const uint8_t *blob, size_t blob_len,
                     uint8_t *out, size_t out_cap, size_t *out_len, struct rc_errinfo *err);

#endif
