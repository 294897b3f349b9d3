/*
 * router-core: decode the revert data of a failed eth_call / eth_estimateGas / transaction into
 * something a log line or an API error can say.
 *
 * Known: Solidity's Error(string) and Panic(uint256), and the Morpheus Diamond custom errors of
 * morpheus-protocol §3.5, in both spellings of the session errors ("Sesssion..." from the Nov-2024
 * Go bindings and "Session..." from the current source; which one the live facet uses is unknown,
 * so both decode, under their own names). Anything else is reported as "unknown error 0x%08x",
 * never a failure of the caller's flow.
 *
 * Pure and thread-safe. The result borrows from the input (Error's message) and from static
 * tables (names, signatures).
 */
#ifndef RC_REVERT_H
#define RC_REVERT_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

enum rc_revert_kind {
	RC_REVERT_EMPTY,        /* no revert data (require(false), out of gas, ...) */
	RC_REVERT_ERROR_STRING, /* Error(string) */
	RC_REVERT_PANIC,        /* Panic(uint256) */
	RC_REVERT_CUSTOM,       /* a known custom error */
	RC_REVERT_UNKNOWN,      /* a selector we do not know, or malformed data */
};

#define RC_REVERT_MAX_ARGS 2 /* the most arguments any known custom error has */

struct rc_revert {
	enum rc_revert_kind kind;
	uint32_t selector;     /* first 4 bytes, big-endian; 0 when there are fewer than 4 */
	const char *name;      /* "Error", "Panic", "SessionTooShort", ...; NULL when unknown */
	const char *signature; /* canonical, e.g. "ProviderStakeTooLow(uint256,uint256)"; or NULL */
	struct rc_str message; /* Error(string): the reason, borrowed from the data, raw bytes */
	size_t nargs;          /* PANIC: 1 (the code); CUSTOM: its argument count */
	uint8_t args[RC_REVERT_MAX_ARGS][32]; /* argument words (uint256 or address) */
	char text[256]; /* always set: one printable ASCII line, e.g. "Panic(0x11): arithmetic
	                   overflow or underflow", "ProviderStakeTooLow(1, 2)", "unknown error
	                   0x12345678" */
};

/*
 * Decode len bytes of revert data (borrowed for as long as out->message is used). Always fills
 * *out, including out->text. Returns RC_OK when the data is empty, a well-formed known error, or
 * an unknown selector; RC_EPARSE when it is 1-3 bytes or a known selector with malformed
 * arguments (kind is then RC_REVERT_UNKNOWN, name and signature still say which error it claimed
 * to be, text says what was wrong, err gets the offset); RC_ENOMEM.
 */
int rc_revert_decode(const uint8_t *data, size_t len, struct rc_revert *out,
                     struct rc_errinfo *err);

#endif
