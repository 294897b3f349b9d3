/*
 * gateway HTTP front end: libmicrohttpd (epoll, internal thread pool, suspend/resume) serving
 * the OpenAI-compatible routes, health and metrics, over a struct gw_engine for backend I/O.
 *
 * Threads: MHD's worker pool runs the access handler, key checks and response writing; the
 * engine thread runs every upstream request; the caller's thread (main) handles signals, the
 * periodic usage flush and reloads. Config snapshots are immutable and reference counted: each
 * request takes a reference when it starts and keeps it to the end, so a reload never changes
 * a request in flight.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <keystore/ks.h>

#include "gw_config.h"

struct gw_server;
struct gw_market;

/*
 * Start listening with cfg (a reference is taken), the key store ks and the marketplace backend
 * market (NULL: none). ks and market are borrowed and must outlive the server; the server stops
 * the market's workers (gw_market_stop) when it is freed, before its engine goes. Returns 0, or
 * -1 with a message in errbuf (e.g. the address is in use).
 *
 * Models: a request names a configured model (or alias), else, with a market, a marketplace
 * alias or an on-chain model of the catalogue; anything else is a 404. /v1/models lists both.
 */
int gw_server_new(struct gw_config *cfg, struct ks_store *ks, struct gw_market *market,
		  struct gw_server **out, char *errbuf, size_t errlen);

/* Swap in a new config snapshot (takes a reference). Listen addresses and thread counts keep
 * their old values until a restart; everything else applies to requests that start after. */
void gw_server_reload(struct gw_server *s, struct gw_config *cfg);

/* Flush batched usage to the key store (called every usage_flush_ms and at shutdown). */
void gw_server_flush_usage(struct gw_server *s);

/*
 * Drain: stop accepting connections, let requests and streams in flight finish until
 * deadline_ms, then cancel what remains. Returns the number of requests that had to be cut.
 */
int gw_server_drain(struct gw_server *s, long deadline_ms);

/* Stop and free (after a drain, or at once). NULL is a no-op. */
void gw_server_free(struct gw_server *s);

/* Requests in progress (for tests and the drain). */
int gw_server_in_flight(struct gw_server *s);

#endif
