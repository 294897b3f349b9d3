/*
 * ks_watch: a stand-in for the gateway's verify path in integration tests. Verifies one key
 * (read from a file, never argv) in a loop for a number of seconds (ending half a second after it
 * first sees the key revoked) on its own key store handle,
 * printing "<unix_ms> <verdict>" each time the verdict changes, then "total N errors E" where
 * errors are store failures (locked, I/O), as opposed to verdicts.
 *
 * usage: ks_watch DB KEY_FILE SECONDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keystore/ks.h>

static long long now_ms(int clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ks_watch DB KEY_FILE SECONDS\n");
		return 2;
	}
	char key[256] = {0};
	FILE *f = fopen(argv[2], "r");
	if (!f || !fgets(key, sizeof key, f)) {
		fprintf(stderr, "ks_watch: cannot read '%s'\n", argv[2]);
		return 2;
	}
	fclose(f);
	key[strcspn(key, "\r\n")] = '\0';
	struct ks_options o = {.db_path = argv[1]};
	struct ks_store *ks = NULL;
	struct ks_err err = {{0}};
	int rc = ks_open(&o, &ks, &err);
	if (rc != KS_OK) {
		fprintf(stderr, "ks_watch: %s\n", err.msg);
		return 1;
	}
	long long end = now_ms(CLOCK_MONOTONIC) + atoll(argv[3]) * 1000;
	long long total = 0, errors = 0;
	int last = 1;
	while (now_ms(CLOCK_MONOTONIC) < end) {
		rc = ks_key_verify(ks, key, strlen(key), NULL);
		total++;
		if (rc != KS_OK && rc != KS_EMALFORMED && rc != KS_EUNKNOWN && rc != KS_EREVOKED &&
		    rc != KS_EEXPIRED && rc != KS_ETENANT_DISABLED) {
			errors++;
			continue;
		}
		if (rc != last) {
			/* the revocation is what the test waits for: stop half a second after it */
			if (rc == KS_EREVOKED && end - now_ms(CLOCK_MONOTONIC) > 500)
				end = now_ms(CLOCK_MONOTONIC) + 500;
			printf("%lld %s\n", now_ms(CLOCK_REALTIME), rc == KS_OK ? "ok" : ks_strerror(rc));
			fflush(stdout);
			last = rc;
		}
		struct timespec ts = {0, 200000}; /* 5k verifies/s: a busy gateway, not a spin */
		nanosleep(&ts, NULL);
	}
	printf("total %lld errors %lld\n", total, errors);
	ks_close(ks);
	return 0;
}
