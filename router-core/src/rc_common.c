/* router-core error names. */
#include <router-core/rc_common.h>

#include <time.h>

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

int64_t rc_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rc_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
