/*
 * gateway coordination through Redis for the marketplace session pool (struct
 * rc_pool_coord_ops, rc_pool.h), so several gateway processes can share one wallet:
 *
 *   locks   SET morgate:lock:<wallet>:<name> <token> NX PX <ttl>; <token> is random per process,
 *           so an unlock (a Lua compare-and-delete) never frees a lock another process took after
 *           ours expired;
 *   table   the hash morgate:sessions:<wallet address> maps a session id ("0x" + 64 hex) to the
 *           session's record as JSON (the key store's field names, struct ks_session); it expires
 *           a day after its last write, so a retired wallet leaves nothing behind.
 *
 * The pool calls these from its own threads and blocks on them, so the client is hiredis'
 * synchronous API with a short timeout, over a small set of connections taken per call (one
 * round trip each, none held across calls). After any failure the connection is dropped
 * (hiredis 0.14 contexts are not reusable after an error) and no new connection is tried for a
 * second: meanwhile every op answers "unavailable" (< 0) at once and the pool works in-process.
 *
 * Thread-safety: every function may be called from any thread.
 */
#ifndef GW_COORD_H
#define GW_COORD_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_pool.h>

struct gw_coord;

/*
 * New coordinator for redis_url (gw_redisurl forms) and the wallet address. No connection is
 * made yet. 0, or -1 with a message in errbuf (never the password).
 */
int gw_coord_new(const char *redis_url, const uint8_t wallet[20], long timeout_ms, struct gw_coord **out,
		 char *errbuf, size_t errlen);
void gw_coord_free(struct gw_coord *c);

/* Whether the last operation reached Redis. */
int gw_coord_ok(struct gw_coord *c);

/* The ops for rc_pool_opts.coord; coord_ud is the struct gw_coord. */
extern const struct rc_pool_coord_ops gw_coord_ops;

/* The table's JSON value for a session and back (pure; exported for tests). to_json: owned out
 * (free()), NULL on ENOMEM. from_json: 0, or -1 when it does not parse. */
char *gw_coord_session_json(const struct rc_pool_session *s);
int gw_coord_session_parse(const char *json, size_t len, struct rc_pool_session *out);

#endif
