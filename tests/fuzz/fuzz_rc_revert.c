/*
 * Fuzz revert-data decoding. Invariants: the text is always a NUL-terminated printable line;
 * RC_OK and RC_EPARSE are the only results; a decoded known error re-encodes through rc_abi
 * (from its signature and decoded arguments) to data that decodes to the same text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_revert.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const struct rc_revert *r)
{
	const char *end = memchr(r->text, '\0', sizeof r->text);
	if (!end || end == r->text)
		abort();
	for (const char *p = r->text; p < end; p++)
		if (*p < 0x20 || *p > 0x7e)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_revert r, r2;
	int rc = rc_revert_decode(data, size, &r, NULL);
	check_text(&r);
	if (rc == RC_EPARSE) {
		if (r.kind != RC_REVERT_UNKNOWN)
			abort();
		return 0;
	}
	if (rc != RC_OK)
		abort();
	if (r.kind == RC_REVERT_EMPTY || r.kind == RC_REVERT_UNKNOWN)
		return 0;
	if (!r.signature || !r.name)
		abort();
	/* Rebuild the arguments from what was decoded and encode them canonically. */
	const char *lp = strchr(r.signature, '(');
	struct rc_abi_value args[RC_REVERT_MAX_ARGS];
	size_t nargs = 0;
	struct rc_abi_type *t = NULL;
	if (lp[1] != ')') {
		if (rc_abi_type_parse(lp, strlen(lp), &t, NULL) != RC_OK)
			abort();
		const struct rc_abi_type *at = t->child;
		for (size_t w = 0; at; at = at->next, nargs++) {
			if (at->kind == RC_ABI_STRING) {
				rc_abi_set_string(&args[nargs], r.message.ptr, r.message.len);
			} else {
				memset(&args[nargs], 0, sizeof args[nargs]);
				args[nargs].kind = at->kind;
				memcpy(args[nargs].u.word, r.args[w++], 32);
			}
		}
		rc_abi_type_free(t);
	}
	struct rc_buf b = RC_BUF_INIT;
	struct rc_str sig = {r.signature, strlen(r.signature)};
	if (rc_abi_encode_call(sig, args, nargs, &b, NULL) != RC_OK)
		abort();
	if (rc_revert_decode((const uint8_t *)b.ptr, b.len, &r2, NULL) != RC_OK ||
	    strcmp(r.text, r2.text) != 0 || r.kind != r2.kind)
		abort();
	rc_buf_release(&b);
	return 0;
}
