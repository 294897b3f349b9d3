/*
 * Key store benchmark: the verify path against its floor (one HMAC-SHA-256 of the secret), cache
 * misses through SQLite, junk floods, verification with 1,000 vs 100,000 keys in the store, and
 * `morgatectl key create` end to end. Prints figures and ratios; never passes or fails on time.
 *
 * usage: bench_ks_verify [MORGATECTL]   (key create timing needs the CLI's path)
 */
#include <fcntl.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../../keystore/src/ks_internal.h"
#include "testutil.h"

extern char **environ;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile uint64_t sink;

/* Run fn(i) for about `secs` seconds; returns operations per second. */
static double rate(double secs, void (*fn)(void *ctx, long i), void *ctx)
{
	long n = 0, batch = 1000;
	double t0 = now_s(), t;
	do {
		for (long i = 0; i < batch; i++)
			fn(ctx, n + i);
		n += batch;
		t = now_s();
	} while (t - t0 < secs);
	return n / (t - t0);
}

struct bctx {
	struct ks_store *ks;
	char (*keys)[KS_KEY_LEN + 1];
	long nkeys;
	struct ks_hmac hmac;
	uint8_t pepper[32];
	int errors;
};

static void op_hmac_openssl(void *c, long i)
{
	struct bctx *b = c;
	uint8_t out[32];
	unsigned len;
	HMAC(EVP_sha256(), b->pepper, 32, (const uint8_t *)b->keys[i % b->nkeys] + 20, 43, out, &len);
	sink += out[0];
}

static void op_hmac_ours(void *c, long i)
{
	struct bctx *b = c;
	uint8_t out[32];
	ks_hmac(&b->hmac, b->keys[i % b->nkeys] + 20, 43, out);
	sink += out[0];
}

static void op_verify(void *c, long i)
{
	struct bctx *b = c;
	struct ks_key_info info;
	if (ks_key_verify(b->ks, b->keys[i % b->nkeys], KS_KEY_LEN, &info) != KS_OK)
		b->errors++;
	sink += info.tenant_id;
}

static void op_verify_miss(void *c, long i)
{
	struct bctx *b = c;
	ks_cache_invalidate(b->ks); /* every lookup goes to SQLite */
	if (ks_key_verify(b->ks, b->keys[(i * 7919) % b->nkeys], KS_KEY_LEN, NULL) != KS_OK)
		b->errors++;
}

static char junk[4096][80];
static void op_garbage(void *c, long i)
{
	struct bctx *b = c;
	if (ks_key_verify(b->ks, junk[i & 4095], 20 + (size_t)(i & 63), NULL) != KS_EMALFORMED)
		b->errors++;
}

static char unknown[4096][KS_KEY_LEN + 1];
static void op_unknown(void *c, long i)
{
	struct bctx *b = c;
	if (ks_key_verify(b->ks, unknown[i & 4095], KS_KEY_LEN, NULL) != KS_EUNKNOWN)
		b->errors++;
}

struct thr {
	struct bctx *b;
	long offset; /* where in the key list this thread starts */
	double ops;
};

static void op_verify_from(void *c, long i)
{
	struct thr *t = c;
	op_verify(t->b, i + t->offset);
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	t->ops = rate(1.0, op_verify_from, t);
	return NULL;
}

/* Two threads verifying: disjoint keys (offset half the list apart) or the very same key
 * sequence in lockstep (a single hot key hammered from both cores). */
static double two_threads(struct bctx *b, long offset)
{
	struct thr th[2] = {{b, 0, 0}, {b, offset, 0}};
	pthread_t pt[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&pt[i], NULL, thr_main, &th[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(pt[i], NULL);
	return th[0].ops + th[1].ops;
}

static long file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Fill the store to n keys; keeps the first `keep` key strings for verifying. */
static void fill(struct bctx *b, long n, long keep)
{
	struct ks_key_spec spec = {.tenant = "bench"};
	struct ks_err err;
	char key[KS_KEY_LEN + 1];
	for (long i = b->nkeys; i < n; i++) {
		if (ks_key_create(b->ks, &spec, key, NULL, &err) != KS_OK) {
			fprintf(stderr, "fill: %s\n", err.msg);
			exit(1);
		}
		if (i < keep)
			memcpy(b->keys[i], key, sizeof key);
	}
	b->nkeys = n < keep ? n : keep;
}

static double key_create_ms(const char *ctl, const char *db, int runs)
{
	double best[64];
	int nrun = runs > 64 ? 64 : runs;
	for (int r = 0; r < nrun; r++) {
		char *argv[] = {(char *)ctl, "--db", (char *)db, "key", "create", "--tenant", "bench",
				NULL};
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		pid_t pid;
		double t0 = now_s();
		if (posix_spawn(&pid, ctl, &fa, NULL, argv, environ) != 0)
			return -1;
		int st;
		waitpid(pid, &st, 0);
		best[r] = (now_s() - t0) * 1e3;
		posix_spawn_file_actions_destroy(&fa);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return -1;
	}
	/* median */
	for (int i = 0; i < nrun; i++)
		for (int j = i + 1; j < nrun; j++)
			if (best[j] < best[i]) {
				double t = best[i];
				best[i] = best[j];
				best[j] = t;
			}
	return best[nrun / 2];
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	char dir[256], db[300], wal[320];
	tu_mkdtemp(dir, sizeof dir, "bench-ks");
	tu_path(db, sizeof db, dir, "ks.db");
	snprintf(wal, sizeof wal, "%s-wal", db);
	struct bctx b = {0};
	b.keys = calloc(100000, sizeof *b.keys);
	struct ks_options o = {.db_path = db, .flags = KS_OPEN_CREATE | KS_OPEN_MIGRATE,
			       .cache_entries = 200000};
	struct ks_err err;
	if (ks_open(&o, &b.ks, &err) != KS_OK) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	ks_tenant_create(b.ks, "bench", NULL, NULL, &err);
	randombytes_buf(b.pepper, sizeof b.pepper);
	ks_hmac_init(&b.hmac, b.pepper);
	for (int i = 0; i < 4096; i++) {
		randombytes_buf(junk[i], sizeof junk[i]);
		ks_key_generate(unknown[i]);
	}
	memcpy(junk[0], "sk-mor-", 7); /* some junk starts like a key */

	printf("keystore verify benchmark (1 thread unless noted; %d cores)\n",
	       (int)sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-52s %14s %10s\n", "operation", "ops/s", "ns/op");
#define ROW(name, r) printf("%-52s %14.0f %10.1f\n", name, (r), 1e9 / (r))

	fill(&b, 1000, 1000);
	double h_ssl = rate(0.5, op_hmac_openssl, &b);
	double h_ours = rate(0.5, op_hmac_ours, &b);
	ROW("floor: HMAC-SHA-256 of a secret (OpenSSL HMAC())", h_ssl);
	ROW("floor: HMAC-SHA-256, precomputed pad states", h_ours);
	for (long i = 0; i < b.nkeys; i++) /* warm the cache */
		op_verify(&b, i);
	double hit1k = rate(1.0, op_verify, &b);
	ROW("verify, cache hit (1,000 keys)", hit1k);
	double miss1k = rate(1.0, op_verify_miss, &b);
	ROW("verify, cache miss: SQLite lookup (1,000 keys)", miss1k);

	long db_before = file_size(db), wal_before = file_size(wal);
	double garbage = rate(1.0, op_garbage, &b);
	ROW("flood: random garbage (malformed)", garbage);
	double unk = rate(1.0, op_unknown, &b);
	ROW("flood: well-formed unknown keys", unk);
	int wrote = file_size(db) != db_before || file_size(wal) != wal_before;

	ROW("verify, cache hit, 2 threads, different keys (total)", two_threads(&b, 500));
	ROW("verify, cache hit, 2 threads, same keys in lockstep", two_threads(&b, 0));

	double t0 = now_s();
	fill(&b, 100000, 100000);
	double fill_s = now_s() - t0;
	for (long i = 0; i < b.nkeys; i++) /* every key once: the whole store in the cache */
		op_verify(&b, i);
	double hit100k = rate(1.0, op_verify, &b);
	ROW("verify, cache hit (100,000 keys, all cached)", hit100k);
	double miss100k = rate(1.0, op_verify_miss, &b);
	ROW("verify, cache miss: SQLite lookup (100,000 keys)", miss100k);
	/* The same 1,000 hot keys as above, now in a store of 100,000. */
	b.nkeys = 1000;
	for (long i = 0; i < b.nkeys; i++)
		op_verify(&b, i);
	double hot_hit = rate(1.0, op_verify, &b);
	ROW("verify, cache hit (1,000 hot keys of 100,000)", hot_hit);
	double hot_miss = rate(1.0, op_verify_miss, &b);
	ROW("verify, cache miss (1,000 hot keys of 100,000)", hot_miss);

	printf("\nratios and checks\n");
	double floor = h_ours > h_ssl ? h_ours : h_ssl;
	printf("  cache hit cost / HMAC floor (fastest HMAC)      %6.2fx   (target <= 3x)\n",
	       floor / hit1k);
	printf("  cache hit cost / OpenSSL HMAC() one-shot         %6.2fx\n", h_ssl / hit1k);
	printf("  same 1k hot keys, store of 100k vs 1k: hit       %6.2fx   (1.0 = no slowdown)\n",
	       hit1k / hot_hit);
	printf("  same 1k hot keys, store of 100k vs 1k: miss      %6.2fx\n", miss1k / hot_miss);
	printf("  all 100k keys hot vs 1k hot: hit                 %6.2fx   (CPU caches, not the store)\n",
	       hit1k / hit100k);
	printf("  all 100k keys vs 1k: miss                        %6.2fx\n", miss1k / miss100k);
	printf("  junk floods wrote to the store                   %s\n", wrote ? "YES" : "no");
	printf("  verify errors (wrong verdicts)                   %d\n", b.errors);
	printf("  filling 99,000 keys through ks_key_create        %.1f s (%.0f us/key)\n", fill_s,
	       fill_s / 99000 * 1e6);
	if (argc > 1) {
		double ms = key_create_ms(argv[1], db, 21);
		printf("  morgatectl key create, end to end (median of 21) %6.1f ms   (target < 50 ms, "
		       "100,000 keys in the store)\n", ms);
	}
	ks_close(b.ks);
	ks_hmac_release(&b.hmac);
	free(b.keys);
	tu_rmrf(dir);
	return b.errors ? 1 : 0;
}
