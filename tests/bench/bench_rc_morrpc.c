/*
 * Per-chunk cost of the MOR-RPC streaming path (morpheus-protocol §2.5.3), against the sum of the
 * raw primitives it cannot avoid, measured in the same process:
 *
 *   provider (rc_morrpc_seal_chunk: ECIES-encrypt to the consumer + sign + wire bytes)
 *     raw = CSPRNG(48) + ephemeral pubkey + ECDH + 2 x SHA-256 (KDF) + AES-128-CTR(chunk)
 *           + HMAC-SHA-256(IV||C) + keccak256(signed bytes) + ECDSA sign
 *   consumer (rc_morrpc_parse_response + rc_morrpc_open_chunk: parse, re-serialize, verify,
 *             hex-decode, ECIES-decrypt)
 *     raw = keccak256(signed bytes) + ECDSA verify + parse R + ECDH + 2 x SHA-256
 *           + HMAC-SHA-256(IV||C) + AES-128-CTR(chunk)
 *
 * Raw primitives are called directly on libsecp256k1, nettle and rc_keccak (the libraries the
 * codec uses), so the ratio ours/raw is the overhead of the codec itself: JSON, hex, copies,
 * checks. Each figure is the best of several rounds (least disturbed by the shared machine).
 * Figures and ratios only; nothing passes or fails here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nettle/aes.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha2.h>
#include <secp256k1.h>
#include <secp256k1_ecdh.h>
#include <secp256k1_recovery.h>
#include <sodium.h>

#include <router-core/rc_ecies.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_morrpc.h>

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

struct raw {
	double rand, pubkey, ecdh, kdf, aes, hmac, keccak, sign, verify, parse_pub;
};

static void measure_raw(secp256k1_context *ctx, const uint8_t sk[32], const uint8_t pub65[65],
                        size_t len, size_t signed_len, struct raw *r)
{
	static uint8_t buf[4096], out[4096];
	uint8_t seed[48], k32[32], z[32], hash[32], sig64[65];
	int iters_ec = 2000, iters_sym = 20000;
	secp256k1_pubkey pk, eph;
	secp256k1_ecdsa_recoverable_signature rsig;
	secp256k1_ecdsa_signature vsig;
	memset(buf, 'a', sizeof buf);
	tu_check(secp256k1_ec_pubkey_parse(ctx, &pk, pub65, 65), "parse");

	TU_MEASURE(r->rand, iters_sym, randombytes_buf(seed, sizeof seed));
	TU_MEASURE(r->pubkey, iters_ec, {
		size_t n = 65;
		seed[0] = (uint8_t)i_;
		tu_check(secp256k1_ec_pubkey_create(ctx, &eph, sk), "create");
		secp256k1_ec_pubkey_serialize(ctx, out, &n, &eph, SECP256K1_EC_UNCOMPRESSED);
	});
	TU_MEASURE(r->ecdh, iters_ec, tu_check(secp256k1_ecdh(ctx, z, &pk, sk, copy_x, NULL), "ecdh"));
	TU_MEASURE(r->parse_pub, iters_ec,
	        tu_check(secp256k1_ec_pubkey_parse(ctx, &eph, pub65, 65), "p"));
	TU_MEASURE(r->kdf, iters_sym, {
		struct sha256_ctx h;
		sha256_init(&h);
		sha256_update(&h, 4, (const uint8_t *)"\0\0\0\1");
		sha256_update(&h, 32, z);
		sha256_digest(&h, 32, k32);
		sha256_init(&h);
		sha256_update(&h, 16, k32 + 16);
		sha256_digest(&h, 32, k32);
	});
	TU_MEASURE(r->aes, iters_sym, {
		struct aes128_ctx aes;
		uint8_t ctrb[16] = {0};
		aes128_set_encrypt_key(&aes, k32);
		ctr_crypt(&aes, nettle_aes128.encrypt, 16, ctrb, len, out, buf);
	});
	TU_MEASURE(r->hmac, iters_sym, {
		struct hmac_sha256_ctx h;
		hmac_sha256_set_key(&h, 32, k32);
		hmac_sha256_update(&h, 16 + len, buf);
		hmac_sha256_digest(&h, 32, k32);
	});
	TU_MEASURE(r->keccak, iters_sym, rc_keccak256(buf, signed_len, hash));
	TU_MEASURE(r->sign, iters_ec, {
		int recid;
		hash[0] = (uint8_t)i_;
		tu_check(secp256k1_ecdsa_sign_recoverable(ctx, &rsig, hash, sk, NULL, NULL), "sign");
		secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, sig64, &recid, &rsig);
	});
	tu_check(secp256k1_ecdsa_sign(ctx, &vsig, hash, sk, NULL, NULL), "sign");
	TU_MEASURE(r->verify, iters_ec,
	        tu_check(secp256k1_ecdsa_verify(ctx, &vsig, hash, &pk) || i_ >= 0, "verify"));
}

int main(void)
{
	struct rc_secp_privkey user, provider;
	uint8_t user_pub[65], provider_pub[65];
	tu_check(sodium_init() >= 0, "sodium_init");
	tu_check(rc_secp_privkey_from_hex(&user, USER_PRIV, 64, NULL) == RC_OK, "user key");
	tu_check(rc_secp_privkey_from_hex(&provider, PROVIDER_PRIV, 64, NULL) == RC_OK,
	      "provider key");
	tu_check(rc_secp_pubkey(&user, user_pub) == RC_OK &&
	              rc_secp_pubkey(&provider, provider_pub) == 0,
	      "pubkeys");
	secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
	tu_check(ctx != NULL, "context");

	static const size_t sizes[] = {100, 1024};
	struct rc_buf out = RC_BUF_INIT, scratch = RC_BUF_INIT, plain = RC_BUF_INIT,
	              sc2 = RC_BUF_INIT, sbytes = RC_BUF_INIT;
	printf("MOR-RPC per streamed chunk, best of %d rounds (us per chunk)\n\n", TU_BENCH_ROUNDS);
	printf("%-9s %-9s %10s %10s %8s   %s\n", "chunk", "side", "ours", "raw sum", "ours/raw",
	       "raw = ");
	for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
		size_t len = sizes[si];
		char chunk[2048];
		tu_make_chunk(chunk, len);

		/* one sealed chunk to size the signed bytes and to open on the consumer side */
		rc_buf_reset(&out);
		tu_check(rc_morrpc_seal_chunk(&out, &scratch, RC_STR_LIT("0badf00d"), user_pub,
		                           (const uint8_t *)chunk, len, 1735689700500ull, &provider,
		                           NULL, NULL) == RC_OK,
		      "seal");
		struct rc_buf wire = RC_BUF_INIT;
		tu_check(rc_buf_append(&wire, out.ptr, out.len) == RC_OK, "copy");
		struct rc_morrpc_msg m;
		struct rc_morrpc_body b;
		tu_check(rc_morrpc_parse_response(&m, wire.ptr, wire.len, NULL) == RC_OK, "parse");
		tu_check(rc_morrpc_decode(&b, RC_MORRPC_PROMPT_RES, m.result, NULL) == RC_OK,
		      "decode");
		rc_buf_reset(&sbytes);
		tu_check(rc_morrpc_signed_bytes(&b, &sbytes) == RC_OK, "signed bytes");
		rc_morrpc_msg_release(&m);

		struct raw r;
		uint8_t sk[32];
		memcpy(sk, provider.d, 32);
		measure_raw(ctx, sk, user_pub, len, sbytes.len, &r);

		double prov, cons;
		TU_MEASURE(prov, 2000, {
			rc_buf_reset(&out);
			tu_check(rc_morrpc_seal_chunk(&out, &scratch, RC_STR_LIT("0badf00d"), user_pub,
			                           (const uint8_t *)chunk, len, 1735689700500ull,
			                           &provider, NULL, NULL) == RC_OK,
			      "seal");
		});
		TU_MEASURE(cons, 2000, {
			struct rc_morrpc_msg mm;
			struct rc_morrpc_body bb;
			tu_check(rc_morrpc_parse_response(&mm, wire.ptr, wire.len, NULL) == RC_OK,
			      "parse");
			tu_check(rc_morrpc_open_chunk(&mm, provider_pub, &user, &sc2, &plain, &bb,
			                           NULL) == RC_OK,
			      "open");
			rc_morrpc_msg_release(&mm);
		});
		tu_check(plain.len == len && memcmp(plain.ptr, chunk, len) == 0, "round trip");
		/* the consumer hot path: rc_morrpc_open_chunk_bytes (what rc_link uses per chunk)
		 */
		double cons_fast;
		TU_MEASURE(cons_fast, 2000, {
			struct rc_morrpc_chunk_info info;
			tu_check(rc_morrpc_open_chunk_bytes(wire.ptr, wire.len, RC_STR_LIT("0badf00d"),
			                                 provider_pub, &user, &sc2, &plain, &info,
			                                 NULL) == RC_OK &&
			              info.fast,
			      "open_chunk_bytes");
		});
		tu_check(plain.len == len && memcmp(plain.ptr, chunk, len) == 0, "round trip");

		double raw_prov =
		        r.rand + r.pubkey + r.ecdh + r.kdf + r.aes + r.hmac + r.keccak + r.sign;
		double raw_cons =
		        r.keccak + r.verify + r.parse_pub + r.ecdh + r.kdf + r.hmac + r.aes;
		char label[32];
		snprintf(label, sizeof label, "%zu B", len);
		printf("%-9s %-9s %10.2f %10.2f %8.2f   sign %.1f + eph pubkey %.1f + ecdh %.1f + "
		       "sym %.2f + keccak %.2f\n",
		       label, "provider", prov, raw_prov, prov / raw_prov, r.sign, r.pubkey, r.ecdh,
		       r.rand + r.kdf + r.aes + r.hmac, r.keccak);
		printf("%-9s %-9s %10.2f %10.2f %8.2f   verify %.1f + parse R %.1f + ecdh %.1f + "
		       "sym %.2f + keccak %.2f\n",
		       label, "consumer", cons, raw_cons, cons / raw_cons, r.verify, r.parse_pub,
		       r.ecdh, r.kdf + r.aes + r.hmac, r.keccak);
		printf("%-9s %-9s %10.2f %10.2f %8.2f   same raw; rc_morrpc_open_chunk_bytes (no "
		       "jansson, plain verify)\n",
		       label, "cons-fast", cons_fast, raw_cons, cons_fast / raw_cons);
		printf("%-9s %-9s wire %zu bytes, signed bytes %zu bytes\n", "", "", wire.len,
		       sbytes.len);
		rc_buf_release(&wire);
	}
	printf("\nraw: libsecp256k1 (sign_recoverable / ecdsa_verify / pubkey_create / ecdh "
	       "raw-x),\n"
	       "nettle (SHA-256, AES-128-CTR, HMAC-SHA-256), rc_keccak, libsodium randombytes.\n"
	       "ours: the whole codec call incl. JSON parse/serialize, hex and every check.\n");
	rc_buf_release(&out);
	rc_buf_release(&scratch);
	rc_buf_release(&plain);
	rc_buf_release(&sc2);
	rc_buf_release(&sbytes);
	rc_secp_privkey_release(&user);
	rc_secp_privkey_release(&provider);
	secp256k1_context_destroy(ctx);
	return 0;
}
