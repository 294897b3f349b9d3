/*
 * Fuzz the JSON-RPC reply parser: single replies, batches of three, receipts and logs, and the
 * result helpers. Invariants: the only results are RC_OK, RC_ENOMEM, RC_EPROTO and the node-error
 * codes; a success always yields a result; every error text is a NUL-terminated printable line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_rpc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const struct rc_rpc_error *e)
{
	const char *end = memchr(e->message, '\0', sizeof e->message);
	if (!end)
		abort();
	for (const char *p = e->message; p < end; p++)
		if (*p < 0x20 || *p > 0x7e)
			abort();
	if (e->has_revert && !memchr(e->revert_text, '\0', sizeof e->revert_text))
		abort();
	if (e->revert_len > sizeof e->revert_data)
		abort();
}

static int known_rc(int rc)
{
	return rc == RC_OK || rc == RC_ENOMEM || rc == RC_EPROTO || rc == RC_ERPC ||
	       rc == RC_EREVERT || rc == RC_ENONCE || rc == RC_EUNDERPRICED || rc == RC_EKNOWN ||
	       rc == RC_EFUNDS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	json_t *r = NULL;
	struct rc_rpc_error e;
	memset(&e, 0, sizeof e);
	int rc = rc_rpc_parse_reply(s, size, 1, &r, &e);
	if (!known_rc(rc) || (rc == RC_OK) != (r != NULL))
		abort();
	check_err(&e);
	if (r) {
		uint64_t v;
		struct rc_u256 u;
		struct rc_buf b = RC_BUF_INIT;
		(void)rc_rpc_result_u64(r, &v);
		(void)rc_rpc_result_u256(r, &u);
		(void)rc_rpc_result_bytes(r, &b);
		rc_buf_release(&b);
		struct rc_rpc_receipt rec;
		if (rc_rpc_parse_receipt(r, &rec) == RC_OK)
			rc_rpc_receipt_release(&rec);
		else if (rec.logs)
			abort();
		json_decref(r);
	}
	struct rc_rpc_req reqs[3];
	memset(reqs, 0, sizeof reqs);
	rc = rc_rpc_parse_batch(s, size, 1, reqs, 3, &e);
	if (!known_rc(rc))
		abort();
	for (int i = 0; i < 3; i++) {
		if (!known_rc(reqs[i].rc) || (reqs[i].rc == RC_OK) != (reqs[i].result != NULL))
			abort();
		check_err(&reqs[i].err);
	}
	rc_rpc_reqs_release(reqs, 3);
	return 0;
}
