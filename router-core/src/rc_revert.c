/*
 * Revert data decoding.
 *
 * The table holds the selectors as printed in morpheus-protocol §3.5 (test_rc_revert checks each
 * one against keccak256 of its signature, so a typo cannot hide). Arguments are decoded with
 * rc_abi, so hostile revert data from an RPC node gets the same bounds checks as any return data.
 * The text is built for logs and API errors: printable ASCII only (a contract's reason string is
 * untrusted bytes and is escaped), bounded, never an error of its own.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_revert.h>

struct known {
	uint32_t selector;
	enum rc_revert_kind kind;
	const char *name, *signature;
};

/* clang-format off */
#define E(sel, kind, name, args) {sel, kind, name, name args}

/* morpheus-protocol §3.5, plus Solidity's two built-ins. */
static const struct known known[] = {
	E(0x08c379a0, RC_REVERT_ERROR_STRING, "Error", "(string)"),
	E(0x4e487b71, RC_REVERT_PANIC, "Panic", "(uint256)"),
	/* Nov-2024 Go bindings (triple s) */
	E(0x69edda4d, RC_REVERT_CUSTOM, "SesssionApproveExpired", "()"),
	E(0xa468d1f9, RC_REVERT_CUSTOM, "SesssionApprovedForAnotherChainId", "()"),
	E(0xc5bbe0c3, RC_REVERT_CUSTOM, "SesssionReceiptExpired", "()"),
	E(0xd3dd539c, RC_REVERT_CUSTOM, "SesssionReceiptForAnotherChainId", "()"),
	/* current Solidity source */
	E(0x4db74c88, RC_REVERT_CUSTOM, "SessionApproveExpired", "()"),
	E(0xadf95488, RC_REVERT_CUSTOM, "SessionApprovedForAnotherChainId", "()"),
	E(0xb55af04a, RC_REVERT_CUSTOM, "SessionReceiptExpired", "()"),
	E(0x4069702a, RC_REVERT_CUSTOM, "SessionReceiptForAnotherChainId", "()"),
	E(0x453ede6a, RC_REVERT_CUSTOM, "SessionProviderSignatureMismatch", "()"),
	E(0x684df34c, RC_REVERT_CUSTOM, "SessionDuplicateApproval", "()"),
	E(0xf4d7eed5, RC_REVERT_CUSTOM, "SessionTooShort", "()"),
	E(0xe9fb372e, RC_REVERT_CUSTOM, "SessionAlreadyClosed", "()"),
	E(0x1de03f33, RC_REVERT_CUSTOM, "SessionBidNotFound", "()"),
	E(0x63e209ea, RC_REVERT_CUSTOM, "SessionStakeTooLow", "()"),
	E(0xc41b8c4d, RC_REVERT_CUSTOM, "SessionUserAmountToWithdrawIsZero", "()"),
	E(0xf0f669df, RC_REVERT_CUSTOM, "SessionMaxDurationTooShort", "()"),
	E(0x49470e18, RC_REVERT_CUSTOM, "SessionApprovedForAnotherUser", "()"),
	E(0x2e980d14, RC_REVERT_CUSTOM, "InsufficientRightsForOperation", "(address,address)"),
	E(0x118cdaa7, RC_REVERT_CUSTOM, "OwnableUnauthorizedAccount", "(address)"),
	E(0x8d0285d4, RC_REVERT_CUSTOM, "MarketplaceProviderNotFound", "()"),
	E(0x0e68881c, RC_REVERT_CUSTOM, "MarketplaceModelNotFound", "()"),
	E(0x33ac0973, RC_REVERT_CUSTOM, "MarketplaceActiveBidNotFound", "()"),
	E(0x9c7f2f48, RC_REVERT_CUSTOM, "MarketplaceBidPricePerSecondInvalid", "()"),
	E(0xbcc35dcc, RC_REVERT_CUSTOM, "ProviderStakeTooLow", "(uint256,uint256)"),
	E(0xf6c1fedc, RC_REVERT_CUSTOM, "ProviderHasActiveBids", "()"),
	E(0xb1cd0903, RC_REVERT_CUSTOM, "ProviderNotFound", "()"),
	E(0x2f7895f5, RC_REVERT_CUSTOM, "ModelStakeTooLow", "(uint256,uint256)"),
	E(0x633910a0, RC_REVERT_CUSTOM, "ModelHasActiveBids", "()"),
};
/* clang-format on */

/* Solidity panic codes (docs: "Panic via assert and Error via require"). */
static const char *panic_reason(uint64_t code)
{
	switch (code) {
	case 0x00:
		return "generic compiler panic";
	case 0x01:
		return "assert failed";
	case 0x11:
		return "arithmetic overflow or underflow";
	case 0x12:
		return "division or modulo by zero";
	case 0x21:
		return "invalid enum value";
	case 0x22:
		return "corrupt storage byte array";
	case 0x31:
		return "pop on an empty array";
	case 0x32:
		return "array index out of bounds";
	case 0x41:
		return "too much memory allocated";
	case 0x51:
		return "call to a zero-initialized function";
	}
	return "unknown panic code";
}

/* Bounded appender over out->text; silently truncates. */
struct text {
	char *p;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void add(struct text *t, const char *fmt, ...)
{
	if (t->len >= t->cap - 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n < t->cap - t->len ? (size_t)n : t->cap - 1 - t->len;
}

/* Append untrusted bytes as an escaped, quoted string, leaving room for a closing suffix. */
static void add_quoted(struct text *t, const uint8_t *s, size_t n, size_t reserve)
{
	add(t, "\"");
	for (size_t i = 0; i < n; i++) {
		if (t->len + 8 + reserve >= t->cap) {
			add(t, "...");
			break;
		}
		uint8_t c = s[i];
		if (c == '"' || c == '\\')
			add(t, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			add(t, "%c", c);
		else
			add(t, "\\x%02x", c);
	}
	add(t, "\"");
}

static void add_word(struct text *t, const char *type, const uint8_t w[32])
{
	if (!strcmp(type, "address")) {
		add(t, "0x");
		for (int i = 12; i < 32; i++)
			add(t, "%02x", w[i]);
		return;
	}
	struct rc_u256 v;
	char dec[RC_U256_DEC_SIZE];
	rc_u256_from_be(&v, w, 32);
	rc_u256_format_dec(&v, dec, sizeof dec);
	add(t, "%s", dec);
}

static int malformed(struct rc_revert *out, struct text *t, struct rc_errinfo *err, size_t off,
                     const char *why)
{
	out->kind = RC_REVERT_UNKNOWN;
	out->nargs = 0;
	out->message = (struct rc_str){NULL, 0};
	t->len = 0;
	if (out->signature)
		add(t, "malformed %s revert data: %s", out->signature, why);
	else
		add(t, "malformed revert data: %s", why);
	if (err) {
		err->offset = off;
		snprintf(err->text, sizeof err->text, "%s", why);
	}
	return RC_EPARSE;
}

int rc_revert_decode(const uint8_t *data, size_t len, struct rc_revert *out, struct rc_errinfo *err)
{
	struct text t = {out->text, 0, sizeof out->text};
	memset(out, 0, sizeof *out);
	out->text[0] = '\0';
	if (len == 0) {
		out->kind = RC_REVERT_EMPTY;
		add(&t, "reverted without data");
		return RC_OK;
	}
	if (len < 4)
		return malformed(out, &t, err, len, "shorter than a selector");
	out->selector = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 |
	                data[3];
	const struct known *k = NULL;
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (known[i].selector == out->selector)
			k = &known[i];
	if (!k) {
		out->kind = RC_REVERT_UNKNOWN;
		add(&t, "unknown error 0x%08x", out->selector);
		return RC_OK;
	}
	const char *lp = strchr(k->signature, '(');
	out->signature = k->signature;
	out->name = k->name;

	struct rc_abi_type *type = NULL;
	struct rc_abi_value *v = NULL;
	if (lp[1] != ')') {
		struct rc_errinfo aerr = {0};
		int rc = rc_abi_type_parse(lp, strlen(lp), &type, NULL);
		if (rc == RC_OK)
			rc = rc_abi_decode(type, data + 4, len - 4, 0, &v, &aerr);
		if (rc != RC_OK) {
			rc_abi_type_free(type);
			int mrc = malformed(out, &t, err, 4 + aerr.offset,
			                    rc == RC_EPARSE ? aerr.text : "out of memory");
			return rc == RC_EPARSE ? mrc : rc;
		}
	}
	out->kind = k->kind;
	add(&t, "%s(", k->name);
	if (v) {
		const struct rc_abi_type *at = type->child;
		for (size_t i = 0; i < v->u.list.count; i++, at = at->next) {
			const struct rc_abi_value *a = &v->u.list.items[i];
			if (i)
				add(&t, ", ");
			if (a->kind == RC_ABI_STRING) {
				out->message = (struct rc_str){(const char *)a->u.bytes.ptr,
				                               a->u.bytes.len};
				add_quoted(&t, a->u.bytes.ptr, a->u.bytes.len, 2);
				continue;
			}
			if (out->nargs < RC_REVERT_MAX_ARGS) /* the table never exceeds it */
				memcpy(out->args[out->nargs++], a->u.word, 32);
			if (k->kind == RC_REVERT_PANIC) {
				struct rc_u256 code;
				char hex[RC_U256_HEX_SIZE];
				rc_abi_get_u256(a, &code);
				rc_u256_format_hex(&code, hex, sizeof hex);
				add(&t, "%s", hex);
			} else {
				add_word(&t, at->kind == RC_ABI_ADDRESS ? "address" : "uint256",
				         a->u.word);
			}
		}
	}
	add(&t, ")");
	if (k->kind == RC_REVERT_PANIC) {
		uint64_t code = UINT64_MAX;
		rc_abi_get_uint(&v->u.list.items[0], &code);
		add(&t, ": %s", panic_reason(code));
	}
	rc_abi_value_free(v);
	rc_abi_type_free(type);
	return RC_OK;
}
