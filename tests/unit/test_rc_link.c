/*
 * rc_link: the consumer link against a small provider started inside the test (a thread on
 * 127.0.0.1, port 0) that answers with real signatures and encryption (anvil dev keys of §2.9)
 * and, on demand, lies: bad signature, garbage, truncated chunk, wrong id, compressed or off-curve
 * key, signed and unsigned errors, hangs before and during the stream, an early close, a huge
 * value. Plus the pure reader fed byte by byte, and cancellation from another thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <router-core/rc_link.h>
#include <router-core/rc_morpheus.h>

/* Hardhat/Anvil development keys #0 (consumer) and #1 (provider): public test keys. */
static const char USER_PRIV[] = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
static const char PROVIDER_PRIV[] =
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

enum mode {
	M_NORMAL,
	M_BAD_SIG,
	M_GARBAGE,
	M_TRUNCATED,
	M_WRONG_ID,
	M_COMPRESSED_KEY,
	M_OFFCURVE_KEY,
	M_SIGNED_ERROR,
	M_UNSIGNED_ERROR,
	M_HANG_FIRST,
	M_HANG_MID,
	M_CLOSE_MID,
	M_HUGE,
	M_CLOSE_SILENT,
	M_BAD_CIPHERTEXT,
	M_OTHER_BID,
};

#define NCHUNKS 5

struct prov {
	int lfd, lfd6; /* 127.0.0.1 and, if the machine has it, [::1] on the same port */
	uint16_t port;
	pthread_t th;
	atomic_int mode;
	atomic_int stop;
	atomic_int requests;     /* requests answered */
	atomic_int bad_requests; /* requests whose consumer signature did not verify */
	struct rc_secp_privkey key, user;
	uint8_t pub[65], user_pub[65];
};

static struct prov P;

/* Checks on the provider thread abort: cmocka's asserts may only fail on the test's thread. */
#define PCHECK(x)                                                                                  \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "test provider: '%s' failed\n", #x);                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Write in two pieces with a pause, so the consumer sees values split across reads. */
static void write_split(int fd, const char *p, size_t n)
{
	size_t half = n / 3;
	write_all(fd, p, half);
	usleep(1000);
	write_all(fd, p + half, n - half);
}

/* Wait until the consumer closes (or 5 s, or the test stops). */
static void hang(int fd)
{
	char buf[256];
	for (int i = 0; i < 500 && !atomic_load(&P.stop); i++) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 10) > 0 && recv(fd, buf, sizeof buf, 0) <= 0)
			return;
	}
}

static void chunk_text(char *buf, size_t cap, int i)
{
	snprintf(buf, cap,
	         "{\"choices\":[{\"delta\":{\"content\":\"tok%d\"},\"index\":0}],\"object\":\"chat."
	         "completion.chunk\"}",
	         i);
}

static void seal(struct rc_buf *out, struct rc_buf *sc, struct rc_str id, const char *plain,
                 const struct rc_secp_privkey *signer)
{
	rc_buf_reset(out);
	PCHECK((rc_morrpc_seal_chunk(out, sc, id, P.user_pub, (const uint8_t *)plain, strlen(plain),
	                             1735689700500ull, signer, NULL, NULL)) == RC_OK);
}

static void answer_prompt(int fd, struct rc_str id, enum mode mode)
{
	struct rc_buf out = RC_BUF_INIT, sc = RC_BUF_INIT;
	char text[256];
	for (int i = 0; i < NCHUNKS; i++) {
		chunk_text(text, sizeof text, i);
		if (i == 2 && mode == M_BAD_SIG) {
			seal(&out, &sc, id, text, &P.user); /* signed by the wrong key */
		} else if (i == 2 && mode == M_WRONG_ID) {
			seal(&out, &sc, RC_STR_LIT("deadbeef"), text, &P.key);
		} else if (i == 2 && mode == M_GARBAGE) {
			rc_buf_reset(&out);
			rc_buf_append(&out, "}{garbage", 9);
		} else if (i == 2 && mode == M_BAD_CIPHERTEXT) {
			/* signed correctly, but encrypted to the provider's own key: MAC fails */
			struct rc_morrpc_body b = {.type = RC_MORRPC_PROMPT_RES};
			rc_buf_reset(&out);
			PCHECK((rc_morrpc_seal_chunk(&out, &sc, id, P.pub, (const uint8_t *)"x", 1,
			                             7, &P.key, NULL, NULL)) == RC_OK);
			(void)b;
		} else if (i == 2 && mode == M_SIGNED_ERROR) {
			static const char e[] =
			        "{\"providerModelError\":{\"error\":{\"message\":\"rate "
			        "limited\"}}}";
			rc_buf_reset(&out);
			PCHECK((rc_morrpc_seal_error(&out, &sc, id, P.user_pub, (const uint8_t *)e,
			                             strlen(e), 9, &P.key, NULL, NULL)) == RC_OK);
		} else if (i == 2 && mode == M_HUGE) {
			rc_buf_reset(&out);
			rc_buf_append(&out, "\"", 1);
			for (int k = 0; k < 100000; k++)
				rc_buf_putc(&out, 'a');
			rc_buf_append(&out, "\"", 1);
		} else {
			seal(&out, &sc, id, text, &P.key);
		}
		if (i == 2 && mode == M_TRUNCATED) {
			write_all(fd, out.ptr, out.len / 2);
			goto done;
		}
		write_split(fd, out.ptr, out.len);
		if (i == 2 && mode == M_SIGNED_ERROR)
			goto done;
		if (i == 1 && mode == M_HANG_MID) {
			hang(fd);
			goto done;
		}
		if (i == 1 && mode == M_CLOSE_MID)
			goto done;
	}
	seal(&out, &sc, id, "\"[DONE]\"", &P.key);
	write_all(fd, out.ptr, out.len);
	/* bytes after [DONE] must be ignored */
	write_all(fd, "\n{\"junk\":", 9);
done:
	rc_buf_release(&out);
	rc_buf_release(&sc);
}

static void answer_handshake(int fd, struct rc_str id, const struct rc_morrpc_body *req,
                             enum mode mode)
{
	struct rc_buf out = RC_BUF_INIT, sc = RC_BUF_INIT;
	struct rc_morrpc_body b = {.type = RC_MORRPC_SESSION_RES};
	struct rc_morpheus_approval a = {.chain_id = 42161, .timestamp_ms = 1735689600123ull};
	memcpy(a.bid_id, req->u.session_req.bid_id, 32);
	if (mode == M_OTHER_BID)
		a.bid_id[0] ^= 1;
	memcpy(a.user, req->u.session_req.user, 20);
	rc_morpheus_approval_encode(&a, b.u.session_res.approval);
	PCHECK((rc_secp_sign_eth_message(&P.key, b.u.session_res.approval, 128,
	                                 b.u.session_res.approval_sig)) == RC_OK);
	memcpy(b.u.session_res.provider_key, P.pub, 65);
	memcpy(b.u.session_res.user, req->u.session_req.user, 20);
	b.u.session_res.timestamp = 1735689600123ull;
	PCHECK((rc_morrpc_sign(&b, &P.key, &sc)) == RC_OK);
	PCHECK((rc_morrpc_encode_response(&b, id, &out)) == RC_OK);
	if (mode == M_COMPRESSED_KEY || mode == M_OFFCURVE_KEY) {
		/* replace "0x04<128 hex>" of the key with a compressed or off-curve key */
		char *k = strstr(out.ptr, "\"message\":\"0x04");
		PCHECK(k != NULL);
		k += 13;
		if (mode == M_OFFCURVE_KEY) {
			k[128] = k[128] == '0' ? '1' : '0'; /* flip the last digit of Y */
		} else {
			char comp[67];
			comp[0] = '0';
			comp[1] = (P.pub[64] & 1) ? '3' : '2';
			memcpy(comp + 2, k + 2, 64);
			memmove(k, comp, 66);
			memmove(k + 66, k + 130, strlen(k + 130) + 1);
			out.len = strlen(out.ptr);
		}
	}
	write_split(fd, out.ptr, out.len);
	rc_buf_release(&out);
	rc_buf_release(&sc);
}

static void answer_report(int fd, struct rc_str id, const struct rc_morrpc_body *req,
                          enum mode mode)
{
	struct rc_buf out = RC_BUF_INIT, sc = RC_BUF_INIT;
	struct rc_morrpc_body b = {.type = RC_MORRPC_REPORT_RES};
	struct rc_morpheus_receipt rc = {.chain_id = 42161,
	                                 .timestamp_ms = 1735690000250ull,
	                                 .tps_scaled1000 = 42500,
	                                 .ttft_ms = 350,
	                                 .tokens_in = 120,
	                                 .tokens_out = 800};
	PCHECK((rc_hex_decode_exact(req->u.report_req.message.ptr, req->u.report_req.message.len,
	                            rc.session_id, 32, NULL)) == RC_OK);
	rc_morpheus_receipt_encode(&rc, b.u.report_res.receipt);
	PCHECK((rc_secp_sign_eth_message(&P.key, b.u.report_res.receipt, 224,
	                                 b.u.report_res.signed_report)) == RC_OK);
	b.u.report_res.timestamp = 1735690000250ull;
	PCHECK((rc_morrpc_sign(&b, mode == M_BAD_SIG ? &P.user : &P.key, &sc)) == RC_OK);
	PCHECK((rc_morrpc_encode_response(&b, id, &out)) == RC_OK);
	write_all(fd, out.ptr, out.len);
	rc_buf_release(&out);
	rc_buf_release(&sc);
}

static void answer_ping(int fd, struct rc_str id, const struct rc_morrpc_body *req)
{
	struct rc_buf out = RC_BUF_INIT, sc = RC_BUF_INIT;
	struct rc_morrpc_body b = *req;
	b.type = RC_MORRPC_PONG_RES;
	b.u.ping.version = RC_STR_LIT("v7.0.0");
	PCHECK((rc_morrpc_sign(&b, &P.key, &sc)) == RC_OK);
	PCHECK((rc_morrpc_encode_response(&b, id, &out)) == RC_OK);
	write_all(fd, out.ptr, out.len);
	rc_buf_release(&out);
	rc_buf_release(&sc);
}

static void serve(int fd)
{
	struct rc_jsonstream js;
	char buf[4096];
	struct rc_str v = {NULL, 0};
	struct rc_buf sc = RC_BUF_INIT;
	enum mode mode = (enum mode)atomic_load(&P.mode);
	rc_jsonstream_init(&js, 1 << 20, 64);
	while (!v.ptr) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 5000) <= 0)
			goto out;
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		size_t used;
		if (n <= 0 || rc_jsonstream_feed(&js, buf, (size_t)n, &used, &v, NULL) != RC_OK)
			goto out;
	}
	struct rc_morrpc_msg m;
	struct rc_morrpc_body req;
	if (rc_morrpc_parse_request(&m, v.ptr, v.len, NULL) != RC_OK)
		goto out;
	if (rc_morrpc_decode(&req, m.type, m.params, NULL) != RC_OK) {
		atomic_fetch_add(&P.bad_requests, 1);
		goto msg_out;
	}
	/* the consumer's signatures must verify as a reference provider checks them (§2.3) */
	if (m.type == RC_MORRPC_SESSION_REQ &&
	    rc_morrpc_verify(&req, req.u.session_req.key, &sc) != RC_OK)
		atomic_fetch_add(&P.bad_requests, 1);
	if ((m.type == RC_MORRPC_PROMPT_REQ || m.type == RC_MORRPC_REPORT_REQ) &&
	    rc_morrpc_verify(&req, P.user_pub, &sc) != RC_OK)
		atomic_fetch_add(&P.bad_requests, 1);
	atomic_fetch_add(&P.requests, 1);
	if (mode == M_HANG_FIRST) {
		hang(fd);
	} else if (mode == M_CLOSE_SILENT) {
		/* nothing */
	} else if (mode == M_UNSIGNED_ERROR) {
		char e[256];
		int n = snprintf(
		        e, sizeof e,
		        "{\"id\":\"%.*s\",\"result\":null,\"error\":{\"message\":\"no "
		        "capacity\",\"code\":400,\"data\":{\"timestamp\":1,\"signature\":\"0x"
		        "00\"}}}",
		        (int)m.id.len, m.id.ptr);
		write_all(fd, e, (size_t)n);
	} else if (m.type == RC_MORRPC_SESSION_REQ) {
		answer_handshake(fd, m.id, &req, mode);
	} else if (m.type == RC_MORRPC_PROMPT_REQ) {
		answer_prompt(fd, m.id, mode);
	} else if (m.type == RC_MORRPC_REPORT_REQ) {
		answer_report(fd, m.id, &req, mode);
	} else if (m.type == RC_MORRPC_PING_REQ) {
		answer_ping(fd, m.id, &req);
	}
msg_out:
	rc_morrpc_msg_release(&m);
out:
	rc_jsonstream_release(&js);
	rc_buf_release(&sc);
}

static void *provider_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&P.stop)) {
		struct pollfd p[2] = {{P.lfd, POLLIN, 0}, {P.lfd6, POLLIN, 0}};
		if (poll(p, P.lfd6 >= 0 ? 2 : 1, 20) <= 0)
			continue;
		int fd = accept(p[0].revents ? P.lfd : P.lfd6, NULL, NULL);
		if (fd < 0)
			continue;
		serve(fd);
		close(fd);
	}
	return NULL;
}

static int setup(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	(void)state;
	if (rc_secp_privkey_from_hex(&P.key, PROVIDER_PRIV, 64, NULL) ||
	    rc_secp_privkey_from_hex(&P.user, USER_PRIV, 64, NULL) ||
	    rc_secp_pubkey(&P.key, P.pub) || rc_secp_pubkey(&P.user, P.user_pub))
		return -1;
	P.lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (P.lfd < 0 || bind(P.lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(P.lfd, 16) != 0 || getsockname(P.lfd, (struct sockaddr *)&sa, &sl) != 0)
		return -1;
	P.port = ntohs(sa.sin_port);
	struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6,
	                           .sin6_addr = IN6ADDR_LOOPBACK_INIT,
	                           .sin6_port = htons(P.port)};
	int one = 1;
	P.lfd6 = socket(AF_INET6, SOCK_STREAM, 0);
	if (P.lfd6 >= 0 &&
	    (setsockopt(P.lfd6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0 ||
	     bind(P.lfd6, (struct sockaddr *)&sa6, sizeof sa6) != 0 || listen(P.lfd6, 16) != 0)) {
		close(P.lfd6);
		P.lfd6 = -1;
	}
	return pthread_create(&P.th, NULL, provider_main, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	atomic_store(&P.stop, 1);
	pthread_join(P.th, NULL);
	close(P.lfd);
	if (P.lfd6 >= 0)
		close(P.lfd6);
	rc_secp_privkey_release(&P.key);
	rc_secp_privkey_release(&P.user);
	return 0;
}

/* ---- consumer side helpers --------------------------------------------------------------------
 */

struct collect {
	int n, errors, stop_after;
	char last[512];
};

static int on_chunk(void *ud, enum rc_link_chunk kind, const uint8_t *data, size_t len)
{
	struct collect *c = ud;
	if (kind == RC_LINK_CHUNK_ERROR) {
		c->errors++;
	} else {
		char want[256];
		chunk_text(want, sizeof want, c->n);
		if (len != strlen(want) || memcmp(data, want, len) != 0)
			fail_msg("chunk %d: got %.*s", c->n, (int)len, (const char *)data);
		c->n++;
	}
	snprintf(c->last, sizeof c->last, "%.*s", (int)len, (const char *)data);
	return c->stop_after && c->n >= c->stop_after;
}

static struct rc_link *new_link(const struct rc_link_opts *o)
{
	char ep[32];
	snprintf(ep, sizeof ep, "127.0.0.1:%u", P.port);
	struct rc_link *l = rc_link_new(ep, &P.user, o);
	assert_non_null(l);
	return l;
}

static const uint8_t BID[32] = {0x69, 0x47, 0x14, 0xf9, 1,  2,  3,  4,  5,  6,  7,
                                8,    9,    10,   11,   12, 13, 14, 15, 16, 17, 18,
                                19,   20,   21,   22,   23, 24, 25, 26, 27, 28};
static const uint8_t SID[32] = {0x26, 0x6c, 0xda, 0x2d, 1,  2,  3,  4,  5,  6,  7,
                                8,    9,    10,   11,   12, 13, 14, 15, 16, 17, 18,
                                19,   20,   21,   22,   23, 24, 25, 26, 27, 28};
static const char PROMPT[] = "{\"messages\":[{\"content\":\"hi <&>\",\"role\":\"user\"}],"
                             "\"model\":\"\",\"stream\":true}";

static int prompt(struct rc_link *l, struct collect *c, struct rc_link_stream *st,
                  struct rc_link_err *e)
{
	return rc_link_prompt(l, (struct rc_str){NULL, 0}, SID, RC_STR_LIT(PROMPT), 0, on_chunk, c,
	                      st, e);
}

static void set_mode(enum mode m)
{
	atomic_store(&P.mode, (int)m);
}

static void expect_prompt_fails(enum mode m, int rc, enum rc_link_reason why, int chunks)
{
	struct rc_link *l = new_link(&(struct rc_link_opts){
	        .first_timeout_ms = 3000, .idle_timeout_ms = 3000, .max_value = 65536});
	struct collect c = {0};
	struct rc_link_err e;
	struct rc_link_stream st;
	assert_int_equal(rc_link_set_provider_key(l, P.pub), RC_OK);
	set_mode(m);
	int got = prompt(l, &c, &st, &e);
	if (got != rc || e.reason != why)
		fail_msg("mode %d: rc %d reason %s (%s), want %d %s", m, got,
		         rc_link_reason_name(e.reason), e.text, rc, rc_link_reason_name(why));
	assert_int_equal(e.rc, rc);
	assert_int_equal(c.n, chunks);
	assert_true(e.text[0] != '\0');
	rc_link_free(l);
	set_mode(M_NORMAL);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_rc_link__full_session(void **state)
{
	(void)state;
	struct rc_link *l = new_link(NULL);
	struct rc_link_session s;
	struct rc_link_err e;
	struct rc_u256 spend;
	rc_u256_from_u64(&spend, 1000000000000000000ull);
	set_mode(M_NORMAL);
	int before_bad = atomic_load(&P.bad_requests);

	assert_int_equal(rc_link_handshake(l, RC_STR_LIT("a1b2c3d4"), BID, &spend, 0, &s, &e),
	                 RC_OK);
	assert_int_equal(e.reason, RC_LINK_OK);
	assert_memory_equal(s.provider_key, P.pub, 65);
	uint8_t addr[20];
	assert_int_equal(rc_secp_privkey_to_address(&P.key, addr), RC_OK);
	assert_int_equal(rc_morpheus_verify_blob(s.approval, 128, s.approval_sig, addr), RC_OK);

	struct collect c = {0};
	struct rc_link_stream st;
	assert_int_equal(prompt(l, &c, &st, &e), RC_OK);
	assert_int_equal(c.n, NCHUNKS);
	assert_int_equal(st.chunks, NCHUNKS);
	assert_true(st.done);
	assert_true(st.bytes > 0);

	struct rc_link_receipt r;
	assert_int_equal(rc_link_report(l, (struct rc_str){NULL, 0}, SID, 0, &r, &e), RC_OK);
	assert_memory_equal(r.receipt, SID, 32);
	assert_int_equal(rc_morpheus_verify_blob(r.receipt, 224, r.signed_report, addr), RC_OK);

	char version[16];
	assert_int_equal(rc_link_ping(l, addr, version, sizeof version, &e), RC_OK);
	assert_string_equal(version, "v7.0.0");
	/* a pong checked against another address fails */
	assert_int_equal(rc_link_ping(l, BID, NULL, 0, &e), RC_ECRYPTO);
	assert_int_equal(e.reason, RC_LINK_BAD_SIGNATURE);

	assert_int_equal(atomic_load(&P.bad_requests), before_bad);
	rc_link_free(l);

	/* a host name (localhost may resolve to ::1 first: the dial tries every address) and,
	 * when the machine has it, IPv6 */
	char ep[64];
	snprintf(ep, sizeof ep, "localhost:%u", P.port);
	l = rc_link_new(ep, &P.user, NULL);
	assert_non_null(l);
	assert_int_equal(rc_link_ping(l, addr, NULL, 0, &e), RC_OK);
	rc_link_free(l);
	if (P.lfd6 >= 0) {
		snprintf(ep, sizeof ep, "[::1]:%u", P.port);
		l = rc_link_new(ep, &P.user, NULL);
		assert_non_null(l);
		assert_int_equal(rc_link_ping(l, addr, NULL, 0, &e), RC_OK);
		rc_link_free(l);
	}
}

static void test_rc_link__lying_provider_in_stream(void **state)
{
	(void)state;
	expect_prompt_fails(M_BAD_SIG, RC_ECRYPTO, RC_LINK_BAD_SIGNATURE, 2);
	expect_prompt_fails(M_GARBAGE, RC_EPARSE, RC_LINK_GARBAGE, 2);
	expect_prompt_fails(M_TRUNCATED, RC_ETRUNC, RC_LINK_TRUNCATED, 2);
	expect_prompt_fails(M_WRONG_ID, RC_EPROTO, RC_LINK_WRONG_ID, 2);
	expect_prompt_fails(M_HUGE, RC_ERANGE, RC_LINK_OVERSIZE, 2);
	expect_prompt_fails(M_BAD_CIPHERTEXT, RC_ECRYPTO, RC_LINK_BAD_CIPHERTEXT, 2);
	expect_prompt_fails(M_CLOSE_SILENT, RC_EPROTO, RC_LINK_CLOSED_EARLY, 0);
}

static void test_rc_link__provider_errors(void **state)
{
	(void)state;
	struct rc_link *l = new_link(NULL);
	struct collect c = {0};
	struct rc_link_err e;
	assert_int_equal(rc_link_set_provider_key(l, P.pub), RC_OK);
	set_mode(M_SIGNED_ERROR);
	assert_int_equal(prompt(l, &c, NULL, &e), RC_EPROTO);
	assert_int_equal(e.reason, RC_LINK_PROVIDER_ERROR);
	assert_true(e.signed_error);
	assert_int_equal(c.errors, 1);
	assert_non_null(strstr(c.last, "providerModelError"));
	assert_non_null(strstr(e.text, "rate limited"));

	set_mode(M_UNSIGNED_ERROR);
	c = (struct collect){0};
	assert_int_equal(prompt(l, &c, NULL, &e), RC_EPROTO);
	assert_int_equal(e.reason, RC_LINK_PROVIDER_ERROR);
	assert_false(e.signed_error);
	assert_string_equal(e.text, "provider error: no capacity");
	assert_int_equal(c.errors, 0);

	struct rc_link_session s;
	assert_int_equal(rc_link_handshake(l, (struct rc_str){NULL, 0}, BID, NULL, 0, &s, &e),
	                 RC_EPROTO);
	assert_int_equal(e.reason, RC_LINK_PROVIDER_ERROR);
	set_mode(M_NORMAL);
	rc_link_free(l);
}

static void test_rc_link__handshake_rejects_bad_keys(void **state)
{
	(void)state;
	struct rc_link *l = new_link(NULL);
	struct rc_link_session s;
	struct rc_link_err e;
	struct collect c = {0};
	/* no key yet: prompt refuses to run */
	assert_int_equal(prompt(l, &c, NULL, &e), RC_EINVAL);
	assert_int_equal(e.reason, RC_LINK_BAD_ARGS);

	set_mode(M_COMPRESSED_KEY);
	assert_int_equal(rc_link_handshake(l, (struct rc_str){NULL, 0}, BID, NULL, 0, &s, &e),
	                 RC_ECRYPTO);
	assert_int_equal(e.reason, RC_LINK_BAD_KEY);
	set_mode(M_OFFCURVE_KEY);
	assert_int_equal(rc_link_handshake(l, (struct rc_str){NULL, 0}, BID, NULL, 0, &s, &e),
	                 RC_ECRYPTO);
	assert_int_equal(e.reason, RC_LINK_BAD_KEY);
	set_mode(M_OTHER_BID);
	assert_int_equal(rc_link_handshake(l, (struct rc_str){NULL, 0}, BID, NULL, 0, &s, &e),
	                 RC_EPROTO);
	assert_int_equal(e.reason, RC_LINK_MISMATCH);
	/* report signed by someone else */
	set_mode(M_BAD_SIG);
	struct rc_link_receipt r;
	assert_int_equal(rc_link_set_provider_key(l, P.pub), RC_OK);
	assert_int_equal(rc_link_report(l, (struct rc_str){NULL, 0}, SID, 0, &r, &e), RC_ECRYPTO);
	assert_int_equal(e.reason, RC_LINK_BAD_SIGNATURE);
	set_mode(M_NORMAL);
	/* rc_link_set_provider_key validates too */
	uint8_t bad[65];
	memcpy(bad, P.pub, 65);
	bad[64] ^= 1;
	assert_int_equal(rc_link_set_provider_key(l, bad), RC_ECRYPTO);
	bad[0] = 2;
	assert_int_equal(rc_link_set_provider_key(l, bad), RC_ECRYPTO);
	rc_link_free(l);
}

static void test_rc_link__timeouts(void **state)
{
	(void)state;
	struct rc_link *l =
	        new_link(&(struct rc_link_opts){.first_timeout_ms = 300, .idle_timeout_ms = 300});
	struct collect c = {0};
	struct rc_link_err e;
	assert_int_equal(rc_link_set_provider_key(l, P.pub), RC_OK);
	set_mode(M_HANG_FIRST);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(prompt(l, &c, NULL, &e), RC_ETIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(e.reason, RC_LINK_FIRST_TIMEOUT);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 250 && ms < 3000);

	set_mode(M_HANG_MID);
	c = (struct collect){0};
	assert_int_equal(prompt(l, &c, NULL, &e), RC_ETIMEOUT);
	assert_int_equal(e.reason, RC_LINK_IDLE_TIMEOUT);
	assert_int_equal(c.n, 2);

	/* closing mid-stream after whole chunks is an end, as for the reference consumer */
	set_mode(M_CLOSE_MID);
	c = (struct collect){0};
	struct rc_link_stream st;
	assert_int_equal(prompt(l, &c, &st, &e), RC_OK);
	assert_int_equal(c.n, 2);
	assert_false(st.done);
	set_mode(M_NORMAL);
	rc_link_free(l);
}

static void test_rc_link__dial_failures(void **state)
{
	(void)state;
	struct rc_link_err e;
	struct rc_link_session s;
	/* a port nobody listens on: bind one, learn it, close it */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	char ep[64];
	snprintf(ep, sizeof ep, "127.0.0.1:%u", ntohs(sa.sin_port));
	struct rc_link *l = rc_link_new(ep, &P.user, NULL);
	assert_non_null(l);
	assert_int_equal(rc_link_handshake(l, (struct rc_str){NULL, 0}, BID, NULL, 0, &s, &e),
	                 RC_EIO);
	assert_int_equal(e.reason, RC_LINK_DIAL);
	rc_link_free(l);

	/* TEST-NET-1 never answers: either a dial timeout or an unreachable network */
	l = rc_link_new("192.0.2.1:3333", &P.user, &(struct rc_link_opts){.dial_timeout_ms = 200});
	assert_non_null(l);
	int rc = rc_link_handshake(l, (struct rc_str){NULL, 0}, BID, NULL, 0, &s, &e);
	assert_true((rc == RC_ETIMEOUT && e.reason == RC_LINK_DIAL_TIMEOUT) ||
	            (rc == RC_EIO && e.reason == RC_LINK_DIAL));
	rc_link_free(l);

	l = rc_link_new("no-such-host.invalid:3333", &P.user, NULL);
	assert_non_null(l);
	assert_int_equal(rc_link_handshake(l, (struct rc_str){NULL, 0}, BID, NULL, 0, &s, &e),
	                 RC_ENOTFOUND);
	assert_int_equal(e.reason, RC_LINK_RESOLVE);
	rc_link_free(l);

	/* endpoint forms */
	static const char *const bad[] = {"",        "host", "host:",    ":1",        "h:0",
	                                  "h:65536", "h:1x", "::1:3333", "[::1]3333", "[::1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_null(rc_link_new(bad[i], &P.user, NULL));
	static const char *const good[] = {"localhost:3333", "[::1]:3333", "10.0.0.1:1"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		l = rc_link_new(good[i], &P.user, NULL);
		assert_non_null(l);
		rc_link_free(l);
	}
	rc_link_free(NULL);
}

struct canceller {
	struct rc_link *l;
	int pipe_w;
};

static void *cancel_later(void *arg)
{
	struct canceller *c = arg;
	usleep(200 * 1000);
	if (c->pipe_w >= 0) {
		ssize_t n = write(c->pipe_w, "x", 1);
		(void)n;
	} else {
		rc_link_cancel(c->l);
	}
	return NULL;
}

static void test_rc_link__cancel_from_another_thread(void **state)
{
	(void)state;
	struct rc_link *l = new_link(NULL);
	struct collect c = {0};
	struct rc_link_err e;
	pthread_t th;
	assert_int_equal(rc_link_set_provider_key(l, P.pub), RC_OK);
	set_mode(M_HANG_MID);
	struct canceller cc = {l, -1};
	assert_int_equal(pthread_create(&th, NULL, cancel_later, &cc), 0);
	assert_int_equal(prompt(l, &c, NULL, &e), RC_EIO);
	pthread_join(th, NULL);
	assert_int_equal(e.reason, RC_LINK_CANCELLED);
	assert_int_equal(c.n, 2);
	/* sticky until uncancelled */
	set_mode(M_NORMAL);
	assert_int_equal(prompt(l, &c, NULL, &e), RC_EIO);
	assert_int_equal(e.reason, RC_LINK_CANCELLED);
	rc_link_uncancel(l);
	c = (struct collect){0};
	assert_int_equal(prompt(l, &c, NULL, &e), RC_OK);
	assert_int_equal(c.n, NCHUNKS);
	/* the callback stops the stream */
	c = (struct collect){.stop_after = 3};
	assert_int_equal(prompt(l, &c, NULL, &e), RC_EIO);
	assert_int_equal(e.reason, RC_LINK_CANCELLED);
	assert_int_equal(c.n, 3);
	rc_link_free(l);

	/* a caller-owned fd (the gateway's "client went away" pipe) */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	l = new_link(&(struct rc_link_opts){.cancel_fd = pfd[0]});
	assert_int_equal(rc_link_set_provider_key(l, P.pub), RC_OK);
	set_mode(M_HANG_FIRST);
	cc = (struct canceller){l, pfd[1]};
	assert_int_equal(pthread_create(&th, NULL, cancel_later, &cc), 0);
	c = (struct collect){0};
	assert_int_equal(prompt(l, &c, NULL, &e), RC_EIO);
	pthread_join(th, NULL);
	assert_int_equal(e.reason, RC_LINK_CANCELLED);
	set_mode(M_NORMAL);
	rc_link_free(l);
	close(pfd[0]);
	close(pfd[1]);
}

/* The pure reader: a whole stream fed one byte at a time gives the same chunks. */
static void test_rc_link__reader_byte_by_byte(void **state)
{
	(void)state;
	struct rc_buf wire = RC_BUF_INIT, out = RC_BUF_INIT, sc = RC_BUF_INIT;
	char text[256];
	for (int i = 0; i < NCHUNKS; i++) {
		chunk_text(text, sizeof text, i);
		seal(&out, &sc, RC_STR_LIT("0badf00d"), text, &P.key);
		rc_buf_append(&wire, out.ptr, out.len);
		rc_buf_append(&wire, i & 1 ? "\n" : "", i & 1);
	}
	seal(&out, &sc, RC_STR_LIT("0badf00d"), "\"[DONE]\"", &P.key);
	rc_buf_append(&wire, out.ptr, out.len);

	struct collect c = {0};
	struct rc_link_reader r;
	struct rc_link_err e;
	struct rc_link_expect x = {.op = RC_LINK_OP_PROMPT,
	                           .id = RC_STR_LIT("0badf00d"),
	                           .user = &P.user,
	                           .provider_pub = P.pub,
	                           .on_chunk = on_chunk,
	                           .ud = &c};
	assert_int_equal(rc_link_reader_init(&r, &x), RC_OK);
	for (size_t i = 0; i < wire.len; i++)
		assert_int_equal(rc_link_reader_feed(&r, wire.ptr + i, 1, &e), RC_OK);
	assert_true(r.done);
	assert_int_equal(c.n, NCHUNKS);
	assert_int_equal(rc_link_reader_end(&r, &e), RC_OK);
	rc_link_reader_release(&r);

	/* cut anywhere inside the last value: truncated at EOF */
	c = (struct collect){0};
	assert_int_equal(rc_link_reader_init(&r, &x), RC_OK);
	assert_int_equal(rc_link_reader_feed(&r, wire.ptr, wire.len - 10, &e), RC_OK);
	assert_false(r.done);
	assert_int_equal(rc_link_reader_end(&r, &e), RC_ETRUNC);
	assert_int_equal(e.reason, RC_LINK_TRUNCATED);
	/* sticky, with the same reason */
	memset(&e, 0, sizeof e);
	assert_int_equal(rc_link_reader_feed(&r, "x", 1, &e), RC_ETRUNC);
	assert_int_equal(e.reason, RC_LINK_TRUNCATED);
	assert_int_equal(rc_link_reader_end(&r, NULL), RC_ETRUNC);
	rc_link_reader_release(&r);

	/* misuse */
	assert_int_equal(rc_link_reader_init(&r, &(struct rc_link_expect){.op = RC_LINK_OP_PROMPT}),
	                 RC_EINVAL);
	assert_int_equal(rc_link_reader_init(&r, &(struct rc_link_expect){.op = 99}), RC_EINVAL);
	assert_string_equal(rc_link_reason_name(RC_LINK_BAD_KEY), "bad_key");
	assert_string_equal(rc_link_reason_name((enum rc_link_reason)999), "unknown");
	rc_buf_release(&wire);
	rc_buf_release(&out);
	rc_buf_release(&sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rc_link__full_session),
	        cmocka_unit_test(test_rc_link__lying_provider_in_stream),
	        cmocka_unit_test(test_rc_link__provider_errors),
	        cmocka_unit_test(test_rc_link__handshake_rejects_bad_keys),
	        cmocka_unit_test(test_rc_link__timeouts),
	        cmocka_unit_test(test_rc_link__dial_failures),
	        cmocka_unit_test(test_rc_link__cancel_from_another_thread),
	        cmocka_unit_test(test_rc_link__reader_byte_by_byte),
	};
	return cmocka_run_group_tests_name("rc_link", tests, setup, teardown);
}
