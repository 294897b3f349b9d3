/*
 * Fuzz the consumer link's response processing (struct rc_link_reader): arbitrary provider bytes
 * for any of the four exchanges, fed in pieces of a fuzzer-chosen size, then EOF. Whatever comes
 * in must end in RC_OK or a clean error with a reason, never a crash, a leak or a callback after
 * the end. Also: the hot-path chunk opener must agree with the general one (parse + open_chunk)
 * on every input, code and plaintext.
 *
 * Input: byte 0 picks the exchange (low 2 bits) and whether the callback stops early (bit 2);
 * byte 1 is the feed size (0 = everything at once); the rest is what the provider "sent".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_link.h>

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
static const uint8_t NONCE[8] = {1, 2, 3, 4, 5, 6, 7, 8};

struct cb_state {
	int ended;
	int stop;
	unsigned long calls;
};

static int on_chunk(void *ud, enum rc_link_chunk kind, const uint8_t *p, size_t len)
{
	struct cb_state *s = ud;
	if (s->ended || (kind != RC_LINK_CHUNK_DATA && kind != RC_LINK_CHUNK_ERROR) || (!p && len))
		abort();
	s->calls++;
	return s->stop && s->calls >= 2;
}

static struct rc_buf sc1, pl1, sc2, pl2;

/* Hot path vs general path on the whole input as one response. */
static void compare_paths(const char *json, size_t len, const uint8_t *provider_pub,
                          const struct rc_secp_privkey *user)
{
	struct rc_morrpc_chunk_info info;
	struct rc_morrpc_msg m;
	struct rc_morrpc_body b;
	int a = rc_morrpc_open_chunk_bytes(json, len, (struct rc_str){NULL, 0}, provider_pub, user,
	                                   &sc1, &pl1, &info, NULL);
	int g = rc_morrpc_parse_response(&m, json, len, NULL);
	if (g == RC_OK) {
		g = rc_morrpc_open_chunk(&m, provider_pub, user, &sc2, &pl2, &b, NULL);
		rc_morrpc_msg_release(&m);
	}
	if (a != g)
		abort();
	if (a == RC_OK && (pl1.len != pl2.len || memcmp(pl1.ptr, pl2.ptr, pl1.len) != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rc_secp_privkey user;
	static uint8_t provider_pub[65], provider_addr[20], user_pub[65], user_addr[20];
	static int init;
	if (!init) {
		struct rc_secp_privkey prov;
		if (rc_secp_privkey_from_bytes(&user, USER_PRIV) ||
		    rc_secp_privkey_from_bytes(&prov, PROVIDER_PRIV) ||
		    rc_secp_pubkey(&prov, provider_pub) || rc_secp_pubkey(&user, user_pub) ||
		    rc_secp_pubkey_to_address(provider_pub, provider_addr) ||
		    rc_secp_pubkey_to_address(user_pub, user_addr))
			abort();
		rc_secp_privkey_release(&prov);
		init = 1;
	}
	if (size < 2)
		return 0;
	struct cb_state st = {0, (data[0] >> 2) & 1, 0};
	size_t step = data[1] ? data[1] : size;
	const char *p = (const char *)data + 2;
	size_t n = size - 2;
	struct rc_link_expect x = {.op = (enum rc_link_op)((data[0] & 3) + 1),
	                           .id = RC_STR_LIT("0badf00d"),
	                           .user = &user,
	                           .user_addr = user_addr,
	                           .provider_pub = provider_pub,
	                           .provider_addr = provider_addr,
	                           .nonce = NONCE,
	                           .nonce_len = sizeof NONCE,
	                           .max_value = 1 << 16,
	                           .on_chunk = on_chunk,
	                           .ud = &st};
	if (x.op == RC_LINK_OP_PING)
		x.id = RC_STR_LIT("0");
	struct rc_link_reader r;
	struct rc_link_err e;
	if (rc_link_reader_init(&r, &x) != RC_OK)
		abort();
	int rc = RC_OK;
	for (size_t off = 0; off < n && rc == RC_OK && !r.done; off += step) {
		size_t k = n - off < step ? n - off : step;
		rc = rc_link_reader_feed(&r, p + off, k, &e);
		if (rc != RC_OK && (e.rc != rc || e.reason == RC_LINK_OK || !e.text[0]))
			abort();
	}
	if (rc == RC_OK) {
		rc = rc_link_reader_end(&r, &e);
		if (rc != RC_OK && (e.rc != rc || e.reason == RC_LINK_OK))
			abort();
		if (rc == RC_OK && !r.done && !(x.op == RC_LINK_OP_PROMPT && r.stream.chunks > 0))
			abort();
	}
	st.ended = 1;
	rc_link_reader_release(&r);
	if (x.op == RC_LINK_OP_PROMPT)
		compare_paths(p, n, provider_pub, &user);
	return 0;
}
