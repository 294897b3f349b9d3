/*
 * gateway configuration: one JSON file, environment overrides, embedded defaults, and an
 * immutable reference-counted snapshot that a SIGHUP reload swaps atomically.
 *
 * gw_config_parse() is pure (bytes in, struct or precise error out: the field path such as
 * "backends[1].base_url" and a message), fuzzed by tests/fuzz/fuzz_gw_config.c and used by
 * `morgatectl config check`. Secrets are not in the file: a backend names an environment
 * variable or a file holding its upstream key; gw_config_load_secrets() reads them (I/O).
 *
 * Ownership: a struct gw_config is created with refs = 1 by gw_config_parse/gw_config_default;
 * gw_config_ref/gw_config_unref are thread-safe; the last unref frees it. A snapshot is never
 * modified after gw_config_finish() (the loader's last step), so readers need no lock.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_hex.h>

enum gw_backend_kind { GW_BACKEND_DIRECT = 0, GW_BACKEND_DEMO = 1 };

struct gw_backend_cfg {
	char *name;
	int kind;            /* enum gw_backend_kind */
	char *base_url;      /* direct: "http(s)://host[:port]/v1" without a trailing slash */
	char *api_key_env;   /* optional: environment variable holding the upstream key */
	char *api_key_file;  /* optional: file holding the upstream key */
	char *api_key;       /* filled by gw_config_load_secrets; wiped at free; never logged */
	long connect_timeout_ms;
	long first_byte_timeout_ms; /* until the upstream's response headers */
	long idle_timeout_ms;       /* longest silence of a response in progress */
	long total_timeout_ms;      /* whole request */
	long max_connections;       /* upstream connections kept for this backend */
	long demo_chunk_ms;         /* demo: delay between streamed chunks */
};

struct gw_model_cfg {
	char *name;     /* the id clients send and /v1/models lists */
	char **aliases; /* other names routed here */
	size_t n_aliases;
	size_t backend; /* index into backends */
	char *owned_by;
};

/* One entry of marketplace.models: per on-chain model settings. */
struct gw_market_model_cfg {
	char *name;                 /* on-chain model name */
	long min_idle;              /* sessions kept open and idle (pre-opened) */
	struct rc_u256 max_price;   /* wei per second; zero: the section's ceiling */
};

/* marketplace.aliases: alias -> on-chain model name. */
struct gw_market_alias_cfg {
	char *alias;
	char *target;
};

/*
 * The "marketplace" section (issue 6). enabled is 0 when the file has no such section; the
 * MORGATE_RPC/NETWORK/DIAMOND/MOR/WALLET variables then change nothing (they do not create
 * one). After validation chain_id, diamond and mor hold the effective values: the file's (or
 * the environment's) explicit value, else the network preset's.
 */
struct gw_market_cfg {
	int enabled;
	char *network;              /* "" or a preset name (rc_network) */
	char **rpc;                 /* 1..16 http(s) URLs */
	size_t n_rpc;
	uint64_t chain_id;          /* effective */
	uint8_t diamond[20], mor[20]; /* effective */
	int chain_id_set, diamond_set, mor_set; /* given explicitly (file or environment) */
	char *wallet;               /* encrypted key file (rc_keyfile) */
	char *passphrase_file;      /* "" -> $MORGATE_WALLET_PASSPHRASE */
	long session_seconds;
	int direct_payment;
	struct rc_u256 max_price;   /* wei per second; zero: no ceiling */
	uint8_t (*allow)[20];
	size_t n_allow;
	uint8_t (*deny)[20];
	size_t n_deny;
	struct gw_market_model_cfg *models;
	size_t n_models;
	struct gw_market_alias_cfg *aliases;
	size_t n_aliases;
	long request_deadline_ms;   /* until the first chunk (session, failover included) */
	long catalog_refresh_ms;
	long bench_ms;
	long workers;               /* threads running marketplace requests */
};

struct gw_config {
	atomic_int refs;
	char *listen;       /* "host:port" */
	char *admin_listen; /* "" or NULL: /healthz, /readyz, /metrics on the main listener */
	long threads;       /* MHD worker threads */
	char *log_level;
	int access_log;
	char *keystore_path;
	char *keystore_pepper; /* optional */
	long keystore_poll_ms;
	long max_body_bytes;
	long max_header_bytes;
	long max_connections;   /* MHD's hard limit */
	long soft_connections;  /* above this, new requests get a 503 */
	long client_timeout_s;  /* idle or slow client connections close after this */
	long keepalive_ms;      /* SSE comment while the backend is silent */
	long usage_flush_ms;
	long drain_timeout_ms;  /* SIGTERM: longest wait for in-flight requests */
	char *redis_url;        /* "": in-process limiter only */
	char *rl_prefix;        /* Redis key prefix */
	long rl_timeout_ms, rl_connect_timeout_ms, rl_backoff_min_ms, rl_backoff_max_ms, rl_lease_ms;
	long rl_max_pending;
	int rl_fail_closed;     /* refuse (503) instead of local limits while Redis is down */
	struct gw_backend_cfg *backends;
	size_t n_backends;
	struct gw_model_cfg *models;
	size_t n_models;
	struct gw_market_cfg market;
};

/* Where a config failed: path like "backends[0].base_url" ("" for the document) and why. */
struct gw_config_err {
	char path[128];
	char msg[256];
	int line, column; /* JSON syntax errors: 1-based position; else 0 */
};

enum gw_config_rc { GW_CONFIG_OK = 0, GW_CONFIG_EINVAL = -1, GW_CONFIG_ENOMEM = -2, GW_CONFIG_EIO = -3 };

/* The embedded defaults (listen 127.0.0.1:8080, ./var/morgate.db, the demo backend). */
int gw_config_default(struct gw_config **out);

/* Parse and validate a config document; missing fields take the embedded defaults. Pure. */
int gw_config_parse(const char *json, size_t len, struct gw_config **out, struct gw_config_err *err);

/*
 * Apply MORGATE_* overrides through getenv_fn (getenv in the server; a table in tests):
 * MORGATE_LISTEN, MORGATE_ADMIN_LISTEN, MORGATE_DB, MORGATE_PEPPER_FILE, MORGATE_THREADS,
 * MORGATE_LOG_LEVEL, MORGATE_REDIS_URL, MORGATE_KEEPALIVE_MS, MORGATE_MAX_BODY_BYTES, and for a
 * config with a marketplace section MORGATE_RPC (comma-separated URLs), MORGATE_NETWORK,
 * MORGATE_DIAMOND, MORGATE_MOR, MORGATE_WALLET (MORGATE_WALLET_PASSPHRASE is read at start-up,
 * never stored here). Then validate again. Returns GW_CONFIG_OK or GW_CONFIG_EINVAL naming the variable.
 */
int gw_config_apply_env(struct gw_config *c, const char *(*getenv_fn)(const char *name),
			struct gw_config_err *err);

/* Read each direct backend's upstream key from its env variable or file (I/O). */
int gw_config_load_secrets(struct gw_config *c, struct gw_config_err *err);

/* Read FILE (or the defaults when path is NULL), apply the environment and load secrets. */
int gw_config_load(const char *path, struct gw_config **out, struct gw_config_err *err);

/*
 * SIGHUP: options read once at start-up (listen, admin_listen, threads, keystore.*,
 * limits.max_header_bytes, limits.max_connections, limits.client_timeout_s, redis_url,
 * ratelimit.*) keep their running values in n, so the new snapshot says what is in force; their
 * paths go to changed (comma-separated, cut to cap) for a warning. A marketplace section that
 * differs in more than its aliases is named too (the running pool keeps its settings; the new
 * aliases apply). Everything else (models, backends, limits.max_body_bytes, soft_connections,
 * streaming, usage, drain, logging) takes effect for new requests. Returns how many differed.
 */
size_t gw_config_keep_running(struct gw_config *n, const struct gw_config *running, char *changed,
			      size_t cap);

/* The on-chain name a marketplace alias stands for; NULL when name is not an alias. */
const char *gw_config_market_alias(const struct gw_config *c, const char *name, size_t len);

/* Resolve a model name or alias; NULL when unknown. Borrowed from c. */
const struct gw_model_cfg *gw_config_find_model(const struct gw_config *c, const char *name, size_t len);

struct gw_config *gw_config_ref(struct gw_config *c);
void gw_config_unref(struct gw_config *c);

/* Split "host:port" (port 1..65535; host an IPv4 literal or "localhost"). 0 or -1. */
int gw_config_split_listen(const char *s, char host[64], unsigned *port);

#endif
