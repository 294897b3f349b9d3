/*
 * Fuzz every MOR-RPC decoder. The input is parsed as a request and as a response; every body it
 * holds is decoded as every message type. Whatever decodes must be stable: encoding it to the wire
 * and parsing + decoding that again gives the same canonical signed bytes (the property that
 * makes signatures verifiable across implementations). Signature checks and chunk opening run
 * too, and must fail cleanly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_morrpc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Hardhat/Anvil development keys #0 (consumer) and #1 (provider). */
static const uint8_t USER_PRIV[32] = {0xac, 0x09, 0x74, 0xbe, 0xc3, 0x9a, 0x17, 0xe3,
                                      0x6b, 0xa4, 0xa6, 0xb4, 0xd2, 0x38, 0xff, 0x94,
                                      0x4b, 0xac, 0xb4, 0x78, 0xcb, 0xed, 0x5e, 0xfc,
                                      0xae, 0x78, 0x4d, 0x7b, 0xf4, 0xf2, 0xff, 0x80};
static const uint8_t PROVIDER_PRIV[32] = {0x59, 0xc6, 0x99, 0x5e, 0x99, 0x8f, 0x97, 0xa5,
                                          0xa0, 0x04, 0x49, 0x66, 0xf0, 0x94, 0x53, 0x89,
                                          0xdc, 0x9e, 0x86, 0xda, 0xe8, 0x8c, 0x7a, 0x84,
                                          0x12, 0xf4, 0x60, 0x3b, 0x6b, 0x78, 0x69, 0x0d};

static struct rc_buf a, b2, scratch, plain;

static void check_stable(const struct rc_morrpc_body *d)
{
	struct rc_morrpc_msg m2;
	struct rc_morrpc_body d2;
	int req = rc_morrpc_method_name(d->type) != NULL;
	rc_buf_reset(&a);
	rc_buf_reset(&b2);
	if (rc_morrpc_signed_bytes(d, &a) != RC_OK)
		abort();
	if ((req ? rc_morrpc_encode_request(d, RC_STR_LIT("id"), &b2)
	         : rc_morrpc_encode_response(d, RC_STR_LIT("id"), &b2)) != RC_OK)
		abort();
	int rc = req ? rc_morrpc_parse_request(&m2, b2.ptr, b2.len, NULL)
	             : rc_morrpc_parse_response(&m2, b2.ptr, b2.len, NULL);
	if (rc != RC_OK)
		abort();
	const json_t *obj = req ? m2.params : d->type == RC_MORRPC_ERROR ? m2.error : m2.result;
	if (rc_morrpc_decode(&d2, d->type, obj, NULL) != RC_OK)
		abort();
	rc_buf_reset(&b2);
	if (rc_morrpc_signed_bytes(&d2, &b2) != RC_OK || a.len != b2.len ||
	    memcmp(a.ptr, b2.ptr, a.len) != 0 || d2.sig_len != d->sig_len ||
	    memcmp(d2.sig, d->sig, d->sig_len) != 0)
		abort();
	rc_morrpc_msg_release(&m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rc_secp_privkey user, provider;
	static uint8_t user_pub[65], provider_pub[65];
	static int init;
	if (!init) {
		if (rc_secp_privkey_from_bytes(&user, USER_PRIV) ||
		    rc_secp_privkey_from_bytes(&provider, PROVIDER_PRIV) ||
		    rc_secp_pubkey(&user, user_pub) || rc_secp_pubkey(&provider, provider_pub))
			abort();
		init = 1;
	}
	struct rc_morrpc_msg m;
	struct rc_morrpc_body d;
	if (rc_morrpc_parse_request(&m, (const char *)data, size, NULL) == RC_OK) {
		for (int t = RC_MORRPC_PING_REQ; t <= RC_MORRPC_REPORT_RES; t++) {
			if (rc_morrpc_decode(&d, (enum rc_morrpc_type)t, m.params, NULL) != RC_OK)
				continue;
			check_stable(&d);
			int rc = rc_morrpc_verify(&d, user_pub, &scratch);
			if (rc != RC_OK && rc != RC_ECRYPTO)
				abort();
		}
		rc_morrpc_msg_release(&m);
	}
	if (rc_morrpc_parse_response(&m, (const char *)data, size, NULL) == RC_OK) {
		for (int t = RC_MORRPC_PING_REQ; t <= RC_MORRPC_REPORT_RES; t++) {
			const json_t *o = t == RC_MORRPC_ERROR ? m.error : m.result;
			if (o && rc_morrpc_decode(&d, (enum rc_morrpc_type)t, o, NULL) == RC_OK)
				check_stable(&d);
		}
		int rc = rc_morrpc_open_chunk(&m, provider_pub, &user, &scratch, &plain, &d, NULL);
		if (rc == RC_OK && (d.type != RC_MORRPC_PROMPT_RES && d.type != RC_MORRPC_ERROR))
			abort();
		/* any 20 bytes serve as the address: only a clean failure matters */
		if (rc_morrpc_verify_address(&d, USER_PRIV, &scratch) == RC_EINVAL)
			abort();
		rc_morrpc_msg_release(&m);
	}
	return 0;
}
