/*
 * ks_session_seed: write one session record into a key store through ks_session_put, as the
 * gateway's session pool does, for the `morgatectl sessions` integration tests.
 *
 * usage: ks_session_seed DB LOCAL_ID FIELD=VALUE...
 *   text fields: id model model_id bid_id provider endpoint provider_key stake price state
 *                open_tx close_tx
 *   numbers:     opened_at ends_at closed_at dispute requests failures updated_at
 * Unset fields are empty/0, except state (default "open") and model (default "demo-model").
 * Exit status: 0 written, 1 refused by the store (message on stderr), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keystore/ks.h>

#define TEXT(f) {#f, offsetof(struct ks_session, f), sizeof(((struct ks_session *)0)->f), 0}
#define NUM(f) {#f, offsetof(struct ks_session, f), sizeof(((struct ks_session *)0)->f), 1}

static const struct field {
	const char *name;
	size_t off, size;
	int num;
} fields[] = {
	TEXT(id),       TEXT(model),    TEXT(model_id), TEXT(bid_id),    TEXT(provider),
	TEXT(endpoint), TEXT(provider_key), TEXT(stake), TEXT(price),    TEXT(state),
	TEXT(open_tx),  TEXT(close_tx), NUM(opened_at), NUM(ends_at),    NUM(closed_at),
	NUM(dispute),   NUM(requests),  NUM(failures),  NUM(updated_at),
};

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: ks_session_seed DB LOCAL_ID FIELD=VALUE...\n");
		return 2;
	}
	struct ks_session s;
	memset(&s, 0, sizeof s);
	s.local_id = (int64_t)strtoull(argv[2], NULL, 10);
	strcpy(s.state, "open");
	strcpy(s.model, "demo-model");
	for (int i = 3; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		const struct field *f = fields;
		const struct field *end = fields + sizeof fields / sizeof fields[0];
		while (eq && f < end &&
		       !(strlen(f->name) == (size_t)(eq - argv[i]) &&
			 memcmp(f->name, argv[i], (size_t)(eq - argv[i])) == 0))
			f++;
		if (!eq || f == end) {
			fprintf(stderr, "ks_session_seed: unknown field in '%s'\n", argv[i]);
			return 2;
		}
		char *dst = (char *)&s + f->off;
		if (f->num) {
			long long v = strtoll(eq + 1, NULL, 10);
			if (f->size == sizeof(int))
				*(int *)(void *)dst = (int)v;
			else
				*(int64_t *)(void *)dst = v;
		} else {
			/* copied without a terminator check on purpose: an over-long value fills the
			 * array with no NUL, which the store must refuse */
			size_t n = strlen(eq + 1);
			memset(dst, 0, f->size);
			memcpy(dst, eq + 1, n < f->size ? n : f->size);
		}
	}
	struct ks_options o = {.db_path = argv[1], .flags = KS_OPEN_NO_LAST_USED, .readers = 1};
	struct ks_store *ks = NULL;
	struct ks_err err = {{0}};
	int rc = ks_open(&o, &ks, &err);
	if (rc == KS_OK)
		rc = ks_session_put(ks, &s, &err);
	ks_close(ks);
	if (rc != KS_OK) {
		fprintf(stderr, "ks_session_seed: %s\n", err.msg[0] ? err.msg : ks_strerror(rc));
		return 1;
	}
	return 0;
}
