/*
 * router-core: the encrypted wallet key file (one secp256k1 private key under a passphrase).
 *
 * Format, version 1: six "\n"-terminated ASCII lines, in this order, nothing else:
 *
 *     morgate-keyfile 1
 *     address 0x<40 lower-case hex digits>
 *     kdf argon2id13 opslimit=<decimal> memlimit=<decimal bytes> salt=<32 hex digits>
 *     aead xchacha20poly1305-ietf nonce=<48 hex digits>
 *     ciphertext <96 hex digits>
 *     check <32 hex digits>
 *
 *   - key  = Argon2id (libsodium crypto_pwhash, ARGON2ID13) of the passphrase with the stored
 *            opslimit, memlimit and 16-byte salt, 32 bytes;
 *   - ciphertext = XChaCha20-Poly1305-IETF of the 32-byte private key (32 + 16-byte tag), with
 *            the first four lines, exactly as stored, as associated data: an edited address or
 *            KDF parameter fails authentication;
 *   - check = unkeyed BLAKE2b-128 (crypto_generichash) of everything before the "check" line.
 *            It tells accidental corruption (RC_EPARSE) from a wrong passphrase (RC_ECRYPTO).
 *   - the address is the key's address, readable without the passphrase.
 *
 * Errors when opening: RC_EPARSE (not a key file, damaged, checksum mismatch, address not the
 * key's; err says where), RC_ENOTSUP (another format version, KDF or cipher, or KDF limits
 * outside opslimit 1..16 / memlimit 8 KiB..4 GiB), RC_ECRYPTO (wrong passphrase, or a file
 * deliberately edited with its checksum fixed up), RC_ENOMEM, RC_EIO (file functions; errno
 * kept).
 *
 * Thread-safety: all functions are thread-safe (libsodium is initialised once, internally).
 * Secrets (derived key, plaintext) are wiped with sodium_memzero before returning.
 */
#ifndef RC_KEYFILE_H
#define RC_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>
#include <router-core/rc_secp.h>

/* Argon2id cost. Stored in the file, so a file opens with whatever it was written with. */
struct rc_keyfile_params {
	unsigned long long opslimit;
	size_t memlimit; /* bytes */
};

/* libsodium's "moderate" (3 passes, 256 MiB, ~1 s here): what a wallet should use. */
#define RC_KEYFILE_PARAMS_DEFAULT ((struct rc_keyfile_params){3, 268435456})
/* The minimum libsodium allows (1 pass, 8 KiB). Offers no protection: for tests only. */
#define RC_KEYFILE_PARAMS_TEST_ONLY ((struct rc_keyfile_params){1, 8192})

/*
 * Encrypt key under the passphrase (passlen bytes at pass, any bytes) and append the key file
 * text to out. params NULL means RC_KEYFILE_PARAMS_DEFAULT. Salt and nonce are fresh random.
 * RC_OK, RC_EINVAL (params outside the supported range), RC_ECRYPTO or RC_ENOMEM.
 */
int rc_keyfile_seal(const struct rc_secp_privkey *key, const char *pass, size_t passlen,
                    const struct rc_keyfile_params *params, struct rc_buf *out);

/*
 * Decrypt key file text (len bytes at text) into *key (release it with
 * rc_secp_privkey_release()). addr, if not NULL, gets the key's address. Errors: see above; on
 * error *key is zeroed.
 */
int rc_keyfile_open(const char *text, size_t len, const char *pass, size_t passlen,
                    struct rc_secp_privkey *key, uint8_t addr[20], struct rc_errinfo *err);

#define RC_KEYFILE_OVERWRITE 1u /* rc_keyfile_write: replace an existing file */

/*
 * Seal key and store it at path atomically: written to a temporary file (mode 0600) in the same
 * directory, fsynced, then renamed over path (only if flags has RC_KEYFILE_OVERWRITE; otherwise
 * an existing path gives RC_EIO with errno EEXIST), then the directory is fsynced. A failure
 * leaves no temporary file behind. Errors as rc_keyfile_seal(), plus RC_EIO.
 */
int rc_keyfile_write(const char *path, const struct rc_secp_privkey *key, const char *pass,
                     size_t passlen, const struct rc_keyfile_params *params, unsigned flags);

/* Read path (at most 4 KiB) and rc_keyfile_open() it. RC_EIO if it cannot be read. */
int rc_keyfile_read(const char *path, const char *pass, size_t passlen, struct rc_secp_privkey *key,
                    uint8_t addr[20], struct rc_errinfo *err);

#endif
