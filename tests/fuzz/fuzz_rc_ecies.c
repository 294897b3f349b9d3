/*
 * Fuzz rc_ecies_decrypt on arbitrary blobs (it must fail cleanly with the documented codes, and
 * succeed only with the exact output length), and the encrypt/decrypt round trip on arbitrary
 * plaintexts and ephemeral keys taken from the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_ecies.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Hardhat/Anvil account #0 (public development key): the vectors' recipient. */
static const uint8_t USER_PRIV[32] = {0xac, 0x09, 0x74, 0xbe, 0xc3, 0x9a, 0x17, 0xe3,
                                      0x6b, 0xa4, 0xa6, 0xb4, 0xd2, 0x38, 0xff, 0x94,
                                      0x4b, 0xac, 0xb4, 0x78, 0xcb, 0xed, 0x5e, 0xfc,
                                      0xae, 0x78, 0x4d, 0x7b, 0xf4, 0xf2, 0xff, 0x80};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[1 << 16], ct[(1 << 16) + RC_ECIES_OVERHEAD];
	struct rc_secp_privkey k;
	uint8_t pub[65];
	size_t n;
	if (size > sizeof out || rc_secp_privkey_from_bytes(&k, USER_PRIV) != RC_OK ||
	    rc_secp_pubkey(&k, pub) != RC_OK)
		return 0;

	/* 1. decrypt the input as a blob */
	int rc = rc_ecies_decrypt(&k, data, size, out, sizeof out, &n, NULL);
	if (rc == RC_OK) {
		if (n != size - RC_ECIES_OVERHEAD)
			abort();
	} else if (rc != RC_ETRUNC && rc != RC_EPARSE && rc != RC_ECRYPTO) {
		abort();
	} else if ((rc == RC_ETRUNC) != (size < RC_ECIES_OVERHEAD)) {
		abort();
	}

	/* 2. round trip: first 48 bytes (if any) pick the ephemeral key and IV, the rest is text */
	if (size >= 48) {
		const uint8_t *eph = data, *iv = data + 32, *msg = data + 48;
		size_t len = size - 48;
		rc = rc_ecies_encrypt_fixed(pub, msg, len, eph, iv, ct, sizeof ct, &n);
		if (rc == RC_OK) {
			size_t m;
			if (n != len + RC_ECIES_OVERHEAD ||
			    rc_ecies_decrypt(&k, ct, n, out, sizeof out, &m, NULL) != RC_OK ||
			    m != len || memcmp(out, msg, len) != 0)
				abort();
			ct[n - 1] ^= 1; /* any change to the tag must be caught */
			if (rc_ecies_decrypt(&k, ct, n, out, sizeof out, &m, NULL) != RC_ECRYPTO)
				abort();
		} else if (rc != RC_EINVAL) { /* only an invalid scalar can fail here */
			abort();
		}
	}
	rc_secp_privkey_release(&k);
	return 0;
}
