/*
 * provider: the node's own configuration file (config/provider.example.json), parsed by a pure
 * validating function. Members (all strings unless said):
 *
 *   listen             MOR-RPC bind address "host:port"               [0.0.0.0:3333]
 *   admin_listen       /healthz and /metrics, "host:port" (loopback!)  [127.0.0.1:9334]
 *   models_config      path of models-config.json                     (required)
 *   wallet             path of the encrypted key file (morgatectl wallet new|import) (required)
 *   passphrase_file    first line is the wallet passphrase; else $MORGATE_WALLET_PASSPHRASE
 *   rpc                chain JSON-RPC URL, or an array of them (failover order) (required)
 *   network            preset: base|base-sepolia|arbitrum|arbitrum-sepolia (optional)
 *   chain_id           integer; overrides the preset; checked against the node at start
 *   diamond, mor       0x addresses; override the preset (required without a preset)
 *   db                 SQLite file for the handshake user keys          [provider.db]
 *   backend_timeout_ms whole backend call bound (LLM_TIMEOUT)          [240000]
 *   max_connections    concurrent MOR-RPC connections; more are refused [256]
 *   drain_timeout_ms   SIGTERM: how long running streams may finish    [30000]
 *   log_level          debug|info|warn|error                           [info]
 *
 * Relative paths are relative to the directory of the config file (the caller resolves them
 * with pv_config_path()). Unknown members are an error (a typo must not go unnoticed).
 * The struct owns its strings; pv_config_release() frees them. Not thread-safe to mutate; read
 * freely once parsed.
 */
#ifndef PV_CONFIG_H
#define PV_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

#define PV_CONFIG_MAX_RPC 8

struct pv_config {
	char *listen;
	char *admin_listen;
	char *models_config;
	char *wallet;
	char *passphrase_file; /* NULL: use the environment */
	char *rpc[PV_CONFIG_MAX_RPC];
	size_t nrpc;
	uint64_t chain_id; /* 0: take the node's */
	uint8_t diamond[20];
	uint8_t mor[20];
	char *db;
	long backend_timeout_ms;
	unsigned max_connections;
	long drain_timeout_ms;
	int log_level;
};

/*
 * Parse len bytes of config text into *c (zeroed first). RC_OK; RC_EPARSE (not JSON,
 * err->offset set) or RC_EPROTO (err->text names the member); RC_ENOMEM. On failure *c holds
 * nothing to release. err may be NULL.
 */
int pv_config_parse(const char *text, size_t len, struct pv_config *c, struct rc_errinfo *err);

/* Free the strings of *c and zero it. NULL and released configs are fine. */
void pv_config_release(struct pv_config *c);

/*
 * Split "host:port" (host may be empty, a name, an IPv4 address or "[v6]") into host (NUL-
 * terminated, brackets removed, "" for any) and port. 0 or -1 when malformed.
 */
int pv_config_split_hostport(const char *s, char *host, size_t hostcap, unsigned *port);

/* Resolve path against the directory of base (a file path) into buf. Absolute paths are kept.
 * Returns buf, or NULL when it does not fit. */
char *pv_config_path(const char *base, const char *path, char *buf, size_t cap);

#endif
