/*
 * Consumer cost per streamed chunk through the link (morpheus-protocol §2.5.3), against the sum
 * of the raw primitives a consumer cannot avoid, measured in the same process:
 *
 *   raw = keccak256(signed bytes) + ECDSA verify + parse R + ECDH + 2 x SHA-256 (KDF)
 *         + HMAC-SHA-256(IV||C) + AES-128-CTR(chunk)
 *
 * Rows:
 *   reader       rc_link_reader_feed() of one chunk's wire bytes: value splitting, id check,
 *                verify, hex, decrypt, callback (what rc_link does per chunk after recv())
 *   open_bytes   rc_morrpc_open_chunk_bytes() alone (the jansson-free chunk opener)
 *   general      rc_morrpc_parse_response() + rc_morrpc_open_chunk() (jansson, recovery-based
 *                verify: the path before this benchmark existed, for comparison)
 * Then chunks per second through a real rc_link_prompt() over loopback from a provider thread
 * that writes pre-sealed chunks (so the figure is the consumer's, not the provider's).
 * Each per-chunk figure is the best of several rounds. Figures and ratios only.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nettle/aes.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha2.h>
#include <secp256k1.h>
#include <secp256k1_ecdh.h>

#include <router-core/rc_keccak.h>
#include <router-core/rc_link.h>

/* Hardhat/Anvil development keys #0 (consumer) and #1 (provider): public test keys. */
static const char USER_PRIV[] = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
static const char PROVIDER_PRIV[] =
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

#include "benchutil.h"

static int copy_x(unsigned char *out, const unsigned char *x, const unsigned char *y, void *d)
{
	(void)y;
	(void)d;
	memcpy(out, x, 32);
	return 1;
}

/* Raw consumer primitives for a chunk of len bytes with signed bytes of signed_len. */
static double raw_consumer(secp256k1_context *ctx, const uint8_t sk[32], const uint8_t pub65[65],
                           size_t len, size_t signed_len)
{
	static uint8_t buf[4096], out[4096];
	uint8_t k32[32], z[32], hash[32];
	secp256k1_pubkey pk, eph;
	secp256k1_ecdsa_signature vsig;
	double ecdh, parse, kdf, aes, hmac, keccak, verify;
	memset(buf, 'a', sizeof buf);
	memset(hash, 7, sizeof hash);
	tu_check(secp256k1_ec_pubkey_parse(ctx, &pk, pub65, 65), "parse");
	TU_MEASURE(ecdh, 2000, tu_check(secp256k1_ecdh(ctx, z, &pk, sk, copy_x, NULL), "ecdh"));
	TU_MEASURE(parse, 2000, tu_check(secp256k1_ec_pubkey_parse(ctx, &eph, pub65, 65), "p"));
	TU_MEASURE(kdf, 20000, {
		struct sha256_ctx h;
		sha256_init(&h);
		sha256_update(&h, 4, (const uint8_t *)"\0\0\0\1");
		sha256_update(&h, 32, z);
		sha256_digest(&h, 32, k32);
		sha256_init(&h);
		sha256_update(&h, 16, k32 + 16);
		sha256_digest(&h, 32, k32);
	});
	TU_MEASURE(aes, 20000, {
		struct aes128_ctx a;
		uint8_t ctrb[16] = {0};
		aes128_set_encrypt_key(&a, k32);
		ctr_crypt(&a, nettle_aes128.encrypt, 16, ctrb, len, out, buf);
	});
	TU_MEASURE(hmac, 20000, {
		struct hmac_sha256_ctx h;
		hmac_sha256_set_key(&h, 32, k32);
		hmac_sha256_update(&h, 16 + len, buf);
		hmac_sha256_digest(&h, 32, k32);
	});
	TU_MEASURE(keccak, 20000, rc_keccak256(buf, signed_len, hash));
	tu_check(secp256k1_ecdsa_sign(ctx, &vsig, hash, sk, NULL, NULL), "sign");
	TU_MEASURE(verify, 2000,
	        tu_check(secp256k1_ecdsa_verify(ctx, &vsig, hash, &pk) || i_ >= 0, "verify"));
	return ecdh + parse + kdf + aes + hmac + keccak + verify;
}

static int count_chunk(void *ud, enum rc_link_chunk kind, const uint8_t *p, size_t len)
{
	(void)kind;
	(void)p;
	(void)len;
	(*(unsigned long *)ud)++;
	return 0;
}

/* ---- loopback provider: writes a pre-sealed answer to every connection ---------------------- */

struct lp {
	int lfd;
	struct rc_buf answer;
	volatile int stop;
};

static void *lp_main(void *arg)
{
	struct lp *p = arg;
	char buf[4096];
	while (!p->stop) {
		struct pollfd pf = {p->lfd, POLLIN, 0};
		if (poll(&pf, 1, 20) <= 0)
			continue;
		int fd = accept(p->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		/* read the request (one value; small), then stream the answer */
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		(void)n;
		size_t off = 0;
		while (off < p->answer.len) {
			ssize_t w =
			        send(fd, p->answer.ptr + off, p->answer.len - off, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		close(fd);
	}
	return NULL;
}

int main(void)
{
	struct rc_secp_privkey user, provider;
	uint8_t user_pub[65], provider_pub[65];
	tu_check(rc_secp_privkey_from_hex(&user, USER_PRIV, 64, NULL) == RC_OK, "user key");
	tu_check(rc_secp_privkey_from_hex(&provider, PROVIDER_PRIV, 64, NULL) == RC_OK, "prov key");
	tu_check(rc_secp_pubkey(&user, user_pub) == RC_OK, "pub");
	tu_check(rc_secp_pubkey(&provider, provider_pub) == RC_OK, "pub");
	secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
	tu_check(ctx != NULL, "context");

	static const size_t sizes[] = {100, 1024};
	struct rc_buf out = RC_BUF_INIT, sc = RC_BUF_INIT, sc2 = RC_BUF_INIT, pl = RC_BUF_INIT;
	printf("consumer cost per streamed chunk, best of %d rounds (us per chunk)\n\n", TU_BENCH_ROUNDS);
	printf("%-8s %-12s %10s %10s %9s\n", "chunk", "path", "ours", "raw sum", "ours/raw");
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		size_t len = sizes[si];
		char chunk[2048], label[16];
		tu_make_chunk(chunk, len);
		snprintf(label, sizeof label, "%zu B", len);
		rc_buf_reset(&out);
		tu_check(rc_morrpc_seal_chunk(&out, &sc, RC_STR_LIT("0badf00d"), user_pub,
		                           (const uint8_t *)chunk, len, 1735689700500ull, &provider,
		                           NULL, NULL) == RC_OK,
		      "seal");
		/* signed bytes: {"message":"<hex>","timestamp":1735689700500} */
		size_t signed_len = 12 + 2 * (len + 113) + 14 + 13 + 1;
		double raw = raw_consumer(ctx, user.d, provider_pub, len, signed_len);

		unsigned long got = 0;
		struct rc_link_reader r;
		struct rc_link_err e;
		struct rc_link_expect x = {.op = RC_LINK_OP_PROMPT,
		                           .id = RC_STR_LIT("0badf00d"),
		                           .user = &user,
		                           .provider_pub = provider_pub,
		                           .on_chunk = count_chunk,
		                           .ud = &got};
		tu_check(rc_link_reader_init(&r, &x) == RC_OK, "reader");
		double t_reader, t_bytes, t_general;
		TU_MEASURE(t_reader, 2000,
		        tu_check(rc_link_reader_feed(&r, out.ptr, out.len, &e) == RC_OK, "feed"));
		tu_check(got == 2000 * TU_BENCH_ROUNDS, "chunks delivered");
		rc_link_reader_release(&r);
		struct rc_morrpc_chunk_info info;
		TU_MEASURE(t_bytes, 2000,
		        tu_check(rc_morrpc_open_chunk_bytes(out.ptr, out.len, RC_STR_LIT("0badf00d"),
		                                         provider_pub, &user, &sc2, &pl, &info,
		                                         NULL) == RC_OK &&
		                      info.fast,
		              "open_bytes"));
		tu_check(pl.len == len && memcmp(pl.ptr, chunk, len) == 0, "round trip");
		TU_MEASURE(t_general, 2000, {
			struct rc_morrpc_msg m;
			struct rc_morrpc_body b;
			tu_check(rc_morrpc_parse_response(&m, out.ptr, out.len, NULL) == RC_OK,
			      "parse");
			tu_check(rc_morrpc_open_chunk(&m, provider_pub, &user, &sc2, &pl, &b, NULL) ==
			              RC_OK,
			      "open");
			rc_morrpc_msg_release(&m);
		});
		printf("%-8s %-12s %10.2f %10.2f %9.2f\n", label, "reader", t_reader, raw,
		       t_reader / raw);
		printf("%-8s %-12s %10.2f %10.2f %9.2f\n", label, "open_bytes", t_bytes, raw,
		       t_bytes / raw);
		printf("%-8s %-12s %10.2f %10.2f %9.2f\n", label, "general", t_general, raw,
		       t_general / raw);
	}

	/* loopback: chunks per second through rc_link_prompt() */
	enum { N = 4000 };
	struct lp p = {.lfd = socket(AF_INET, SOCK_STREAM, 0)};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	tu_check(p.lfd >= 0 && bind(p.lfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	              listen(p.lfd, 8) == 0 && getsockname(p.lfd, (struct sockaddr *)&sa, &sl) == 0,
	      "listen");
	char chunk[128];
	tu_make_chunk(chunk, 100);
	for (int i = 0; i <= N; i++) {
		rc_buf_reset(&out);
		tu_check(rc_morrpc_seal_chunk(&out, &sc, RC_STR_LIT("0badf00d"), user_pub,
		                           (const uint8_t *)(i < N ? chunk : "\"[DONE]\""),
		                           i < N ? 100 : 8, 1735689700500ull + (uint64_t)i,
		                           &provider, NULL, NULL) == RC_OK,
		      "seal");
		tu_check(rc_buf_append(&p.answer, out.ptr, out.len) == RC_OK, "append");
	}
	pthread_t th;
	tu_check(pthread_create(&th, NULL, lp_main, &p) == 0, "thread");
	char ep[32];
	snprintf(ep, sizeof ep, "127.0.0.1:%u", ntohs(sa.sin_port));
	struct rc_link *l = rc_link_new(ep, &user, NULL);
	tu_check(l != NULL && rc_link_set_provider_key(l, provider_pub) == RC_OK, "link");
	static const uint8_t sid[32] = {1};
	double best = 1e30;
	for (int round = 0; round < 3; round++) {
		unsigned long got = 0;
		struct rc_link_stream st;
		struct rc_link_err e;
		double t0 = tu_now_us();
		int rc = rc_link_prompt(l, RC_STR_LIT("0badf00d"), sid, RC_STR_LIT("{}"), 0,
		                        count_chunk, &got, &st, &e);
		double t = tu_now_us() - t0;
		if (rc != RC_OK)
			fprintf(stderr, "prompt: %s: %s\n", rc_link_reason_name(e.reason), e.text);
		tu_check(rc == RC_OK && got == N && st.done, "prompt");
		if (t < best)
			best = t;
	}
	printf("\nloopback, one rc_link_prompt() of %d chunks of 100 B (pre-sealed by a provider "
	       "thread):\n  %.0f chunks/s, %.2f us per chunk on the consumer\n",
	       N, N / (best / 1e6), best / N);
	printf("\nraw: libsecp256k1 (ecdsa_verify, pubkey_parse, ecdh raw-x), nettle (SHA-256,\n"
	       "AES-128-CTR, HMAC-SHA-256), rc_keccak. ours: the whole call incl. every check.\n");
	p.stop = 1;
	pthread_join(th, NULL);
	close(p.lfd);
	rc_link_free(l);
	rc_buf_release(&p.answer);
	rc_buf_release(&out);
	rc_buf_release(&sc);
	rc_buf_release(&sc2);
	rc_buf_release(&pl);
	rc_secp_privkey_release(&user);
	rc_secp_privkey_release(&provider);
	secp256k1_context_destroy(ctx);
	return 0;
}
