/*
 * pv_link: the provider's integration-test consumer on top of router-core's consumer link
 * (rc_link), i.e. the code the gateway uses. Same command line and output as pv_consumer
 * (bin_pv_consumer.c), which stays for what a well-behaved link cannot send (a prompt signed by
 * another key, raw malformed bytes):
 *
 *   pv_link ping HOST:PORT [PROVIDER_ADDR]             "pong version=V"
 *   pv_link request HOST:PORT USER_KEY BIDID           "provider_pub=0x.. provider_addr=0x.. ..."
 *   pv_link prompt HOST:PORT USER_KEY PROVIDER_PUB SESSIONID REQUEST_FILE [--ts MS]
 *                  [--stop-after N]                    "CHUNK <json>" lines, then "DONE",
 *                                                      "STOPPED" or "ERROR [signed ]<text>"
 *   pv_link report HOST:PORT USER_KEY PROVIDER_PUB SESSIONID   "tps=N ttft=N in=N out=N chain=N"
 * Exit: 0 ok, 1 the provider refused or failed (ERROR line), 2 usage, 3 link failure (reason
 * on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_gojson.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_link.h>
#include <router-core/rc_morpheus.h>

static int fail(const struct rc_link_err *e)
{
	if (e->reason == RC_LINK_PROVIDER_ERROR) {
		const char *t = e->text;
		if (!strncmp(t, "provider error: ", 16))
			t += 16;
		printf("ERROR %s%s\n", e->signed_error ? "signed " : "", t);
		return 1;
	}
	fprintf(stderr, "pv_link: %s: %s\n", rc_link_reason_name(e->reason), e->text);
	return 3;
}

static void print_hex0x(const char *label, const uint8_t *b, size_t n)
{
	char s[300];
	rc_hex_encode_0x(b, n, s, sizeof s);
	printf("%s=%s", label, s);
}

struct prompt_state {
	long stop_after, chunks;
	int stopped;
};

static int on_chunk(void *ud, enum rc_link_chunk kind, const uint8_t *data, size_t len)
{
	struct prompt_state *st = ud;
	if (kind != RC_LINK_CHUNK_DATA)
		return 0; /* a signed error: reported through the return code */
	printf("CHUNK %.*s\n", (int)len, (const char *)data);
	fflush(stdout);
	if (st->stop_after > 0 && ++st->chunks >= st->stop_after) {
		st->stopped = 1;
		return 1;
	}
	return 0;
}

static uint32_t word_u32(const uint8_t *blob, int i)
{
	const uint8_t *w = blob + 32 * i + 28;
	return (uint32_t)w[0] << 24 | (uint32_t)w[1] << 16 | (uint32_t)w[2] << 8 | w[3];
}

/* Length of the valid UTF-8 sequence at p (Go's utf8.DecodeRune rules), 0 if invalid. */
/*
 * The request body a Go consumer sends has been through json.Marshal, which turns each invalid
 * UTF-8 byte into U+FFFD. rc_link signs the message as given, and a message with raw invalid
 * bytes cannot verify on any provider (the signer's bytes hold the escape "\ufffd", the
 * verifier re-encodes the decoded rune verbatim), so do what the Go consumer does first.
 */
static void go_sanitize(struct rc_buf *b)
{
	struct rc_buf o = RC_BUF_INIT;
	if (b->ptr && rc_gojson_append_valid_utf8(&o, b->ptr, b->len) != RC_OK)
		abort();
	rc_buf_release(b);
	*b = o;
}

static int read_file(const char *path, struct rc_buf *out)
{
	FILE *f = fopen(path, "rb");
	char b[4096];
	size_t n;
	if (!f)
		return -1;
	while ((n = fread(b, 1, sizeof b, f)) > 0)
		rc_buf_append(out, b, n);
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	struct rc_secp_privkey k;
	struct rc_link_err e;
	struct rc_link *l = NULL;
	int rc = 2;
	memset(&e, 0, sizeof e);
	if (argc < 3) {
		fprintf(stderr, "usage: pv_link ping|request|prompt|report HOST:PORT ...\n");
		return 2;
	}
	const char *cmd = argv[1], *ep = argv[2];
	if (!strcmp(cmd, "ping")) {
		uint8_t addr[20];
		char version[64] = "";
		rc_secp_privkey_generate(&k);
		l = rc_link_new(ep, &k, NULL);
		if (argc > 3 && rc_hex_decode_exact(argv[3], strlen(argv[3]), addr, 20, NULL))
			return 2;
		if (!l)
			return 2;
		rc = rc_link_ping(l, argc > 3 ? addr : NULL, version, sizeof version, &e) ? fail(&e)
		                                                                          : 0;
		if (!rc)
			printf("pong version=%s\n", version);
		goto out;
	}
	if (argc < 5 || rc_secp_privkey_from_hex(&k, argv[3], strlen(argv[3]), NULL) ||
	    !(l = rc_link_new(ep, &k, NULL))) {
		fprintf(stderr, "pv_link: bad arguments\n");
		return 2;
	}
	if (!strcmp(cmd, "request") && argc == 5) {
		uint8_t bid[32], paddr[20];
		struct rc_link_session s;
		struct rc_morpheus_approval ap;
		struct rc_errinfo ei;
		if (rc_hex_decode_exact(argv[4], strlen(argv[4]), bid, 32, NULL))
			goto out;
		if (rc_link_handshake(l, RC_STR_LIT(""), bid, NULL, 0, &s, &e)) {
			rc = fail(&e);
			goto out;
		}
		rc_secp_pubkey_to_address(s.provider_key, paddr);
		if (rc_morpheus_verify_blob(s.approval, sizeof s.approval, s.approval_sig, paddr) ||
		    rc_morpheus_approval_decode(s.approval, sizeof s.approval, &ap, &ei)) {
			fprintf(stderr, "pv_link: approval does not verify\n");
			rc = 3;
			goto out;
		}
		print_hex0x("provider_pub", s.provider_key, 65);
		print_hex0x(" provider_addr", paddr, 20);
		print_hex0x(" approval", s.approval, 128);
		print_hex0x(" approval_sig", s.approval_sig, 65);
		printf(" chain_id=%llu\n", (unsigned long long)ap.chain_id);
		rc = 0;
		goto out;
	}
	uint8_t pub[65], sid[32];
	if (argc < 6 || rc_hex_decode_exact(argv[4], strlen(argv[4]), pub, 65, NULL) ||
	    rc_hex_decode_exact(argv[5], strlen(argv[5]), sid, 32, NULL) ||
	    rc_link_set_provider_key(l, pub)) {
		fprintf(stderr, "pv_link: bad provider key or session id\n");
		goto out;
	}
	if (!strcmp(cmd, "prompt") && argc >= 7) {
		struct prompt_state st = {0, 0, 0};
		struct rc_buf body = RC_BUF_INIT;
		struct rc_link_stream out;
		uint64_t ts = 0;
		for (int i = 7; i + 1 < argc; i += 2) {
			if (!strcmp(argv[i], "--ts"))
				ts = strtoull(argv[i + 1], NULL, 10);
			else if (!strcmp(argv[i], "--stop-after"))
				st.stop_after = strtol(argv[i + 1], NULL, 10);
		}
		if (read_file(argv[6], &body))
			goto out;
		go_sanitize(&body);
		int prc = rc_link_prompt(l, RC_STR_LIT(""), sid, rc_buf_str(&body), ts, on_chunk,
		                         &st, &out, &e);
		rc_buf_release(&body);
		if (st.stopped) {
			printf("STOPPED\n");
			rc = 0;
		} else if (prc)
			rc = fail(&e);
		else {
			fprintf(stderr, "pv_link: chunks=%llu first_ms=%llu\n",
			        (unsigned long long)out.chunks, (unsigned long long)out.first_ms);
			printf(out.done ? "DONE\n" : "EOF\n");
			rc = 0;
		}
	} else if (!strcmp(cmd, "report") && argc == 6) {
		struct rc_link_receipt r;
		uint8_t paddr[20];
		if (rc_link_report(l, RC_STR_LIT(""), sid, 0, &r, &e)) {
			rc = fail(&e);
			goto out;
		}
		rc_secp_pubkey_to_address(pub, paddr);
		if (rc_morpheus_verify_blob(r.receipt, sizeof r.receipt, r.signed_report, paddr)) {
			fprintf(stderr, "pv_link: receipt signature does not verify\n");
			rc = 3;
			goto out;
		}
		printf("tps=%u ttft=%u in=%u out=%u chain=%u\n", word_u32(r.receipt, 3),
		       word_u32(r.receipt, 4), word_u32(r.receipt, 5), word_u32(r.receipt, 6),
		       word_u32(r.receipt, 1));
		rc = 0;
	} else
		fprintf(stderr, "pv_link: bad command line\n");
out:
	rc_link_free(l);
	rc_secp_privkey_release(&k);
	return rc;
}
