/* router-core error names. */
#include <router-core/rc_common.h>

const char *rc_strerror(int rc)
{
	switch (rc) {
	case RC_OK: return "ok";
	case RC_ENOMEM: return "out of memory";
	case RC_EINVAL: return "invalid argument";
	case RC_EPARSE: return "malformed input";
	case RC_ERANGE: return "value out of range";
	case RC_ETRUNC: return "input truncated";
	case RC_ECRYPTO: return "cryptographic check failed";
	case RC_EIO: return "i/o error";
	case RC_ETIMEOUT: return "timed out";
	case RC_EPROTO: return "protocol violation";
	case RC_ENOTFOUND: return "not found";
	case RC_ENOTSUP: return "unsupported version or format";
	}
	return "unknown error";
}
