/*
 * router-core: the shared vocabulary of the library: error codes and byte slices.
 *
 * Every router-core function that can fail returns int: RC_OK (0) or a negative RC_E* code.
 * rc_strerror() names a code for logs and CLI messages; it is thread-safe and never NULL.
 * Modules add their codes to the enum below, in their own block, and to rc_strerror().
 */
#ifndef RC_COMMON_H
#define RC_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum rc_error {
	RC_OK = 0,
	RC_ENOMEM = -1,    /* allocation failed */
	RC_EINVAL = -2,    /* an argument broke the function's contract */
	RC_EPARSE = -3,    /* input bytes are malformed (see the error-info out-parameter) */
	RC_ERANGE = -4,    /* a value does not fit the target type or buffer */
	RC_ETRUNC = -5,    /* input ended early */
	RC_ECRYPTO = -6,   /* a signature, MAC or key failed to verify or derive */
	RC_EIO = -7,       /* a file or socket operation failed (errno is kept) */
	RC_ETIMEOUT = -8,  /* a deadline passed */
	RC_EPROTO = -9,    /* the peer broke the protocol */
	RC_ENOTFOUND = -10, /* the thing asked for does not exist */
	RC_ENOTSUP = -11    /* a well-formed input in a version or variant we do not support */
};

/* A borrowed run of bytes; not NUL-terminated unless an API says so. */
struct rc_str {
	const char *ptr;
	size_t len;
};

#define RC_STR_LIT(s) ((struct rc_str){(s), sizeof(s) - 1})

/* Optional parse-error detail, in the manner of jansson's json_error_t. */
struct rc_errinfo {
	size_t offset;  /* byte offset of the first bad byte */
	char text[96];  /* short lowercase description, no full stop */
};

/* Name of an RC_E* code ("invalid input", ...). Thread-safe; unknown codes give "unknown error". */
const char *rc_strerror(int rc);

/* Milliseconds of CLOCK_MONOTONIC (deadlines, intervals) and of the wall clock (protocol
 * timestamps, which are Unix milliseconds, §7 trap 4). */
int64_t rc_mono_ms(void);
int64_t rc_wall_ms(void);

#endif
