/*
 * morgate: the gateway binary. Parses the command line, loads the config (file, environment,
 * embedded defaults), opens the key store, sets up the marketplace when configured (wallet,
 * chain client, transaction manager, session pool, Redis coordination, worker threads), starts
 * the server, then turns signals into actions on the main thread: SIGHUP reloads the config,
 * SIGTERM/SIGINT drain and exit 0 (in-flight marketplace streams finish within the drain time,
 * then the pool stops; open sessions stay on chain for the next start). Usage is flushed to
 * the key store every usage_flush_ms and at shutdown.
 */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <keystore/ks.h>
#include <router-core/rc_addr.h>
#include <router-core/rc_keyfile.h>
#include <router-core/rc_market.h>
#include <router-core/rc_pool.h>
#include <router-core/rc_rpc.h>
#include <router-core/rc_txm.h>

#include "gw_config.h"
#include "gw_coord.h"
#include "gw_log.h"
#include "gw_market.h"
#include "gw_server.h"

static const char usage_text[] =
	"usage: morgate [--config FILE]\n"
	"\n"
	"The morgate gateway: an OpenAI-compatible API in front of model backends.\n"
	"Without --config it runs on embedded defaults: listen 127.0.0.1:8080, key store\n"
	"./var/morgate.db, in-process rate limits, and a built-in 'demo' model.\n"
	"Environment overrides: MORGATE_LISTEN, MORGATE_ADMIN_LISTEN, MORGATE_DB, MORGATE_PEPPER_FILE,\n"
	"MORGATE_THREADS, MORGATE_LOG_LEVEL, MORGATE_REDIS_URL, MORGATE_KEEPALIVE_MS,\n"
	"MORGATE_MAX_BODY_BYTES; with a marketplace section MORGATE_RPC, MORGATE_NETWORK, MORGATE_DIAMOND,\n"
	"MORGATE_MOR, MORGATE_WALLET, MORGATE_WALLET_PASSPHRASE.\n"
	"Signals: SIGHUP reloads the config, SIGTERM drains and exits.\n";

static void print_cfg_err(const char *path, const struct gw_config_err *e)
{
	if (e->line)
		fprintf(stderr, "morgate: config '%s' line %d column %d: %s\n", path ? path : "(defaults)",
			e->line, e->column, e->msg);
	else
		fprintf(stderr, "morgate: config '%s': %s%s%s\n", path ? path : "(defaults)", e->path,
			e->path[0] ? ": " : "", e->msg);
}

static void mkdir_parent(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	mkdir(dir, 0700);
}

/* --- the marketplace ----------------------------------------------------------------------------- */

struct market {
	struct gw_config *cfg; /* the start-up snapshot: the pool borrows its arrays */
	struct rc_rpc *rpc;
	struct rc_txm *txm;
	struct rc_market *mkt;
	struct gw_coord *coord;
	struct rc_pool *pool;
	struct gw_market *gm;
	struct rc_pool_model_cfg *models;
	struct rc_secp_privkey key;
	uint8_t addr[20];
};

static void market_log(void *ud, int level, const char *msg)
{
	(void)ud;
	GW_LOG_AT(level == 0 ? GW_LOG_INFO : level == 1 ? GW_LOG_WARN : GW_LOG_ERROR, "pool", "%s", msg);
}

/* The passphrase: the first line of wallet_passphrase_file, else $MORGATE_WALLET_PASSPHRASE. */
static int read_passphrase(const struct gw_market_cfg *mc, char *buf, size_t cap, size_t *len)
{
	if (mc->passphrase_file[0]) {
		FILE *f = fopen(mc->passphrase_file, "rb");
		if (!f) {
			fprintf(stderr, "morgate: cannot read marketplace.wallet_passphrase_file '%s': %s\n",
				mc->passphrase_file, strerror(errno));
			return -1;
		}
		size_t n = fread(buf, 1, cap - 1, f);
		fclose(f);
		buf[n] = '\0';
		char *nl = memchr(buf, '\n', n);
		if (nl)
			n = (size_t)(nl - buf);
		if (n && buf[n - 1] == '\r')
			n--;
		buf[n] = '\0';
		*len = n;
		return 0;
	}
	const char *e = getenv("MORGATE_WALLET_PASSPHRASE");
	if (!e) {
		fprintf(stderr, "morgate: the marketplace wallet needs a passphrase: set "
				"MORGATE_WALLET_PASSPHRASE or marketplace.wallet_passphrase_file\n");
		return -1;
	}
	size_t n = strlen(e);
	if (n >= cap) {
		fprintf(stderr, "morgate: MORGATE_WALLET_PASSPHRASE is too long\n");
		return -1;
	}
	memcpy(buf, e, n + 1);
	*len = n;
	return 0;
}

/* Free everything; 0, or -1 when a marketplace worker is still inside a chain write (then
 * nothing is freed: the worker uses the pool, the chain client and the key store until the
 * process exits). */
static int market_free(struct market *m)
{
	if (!m)
		return 0;
	if (gw_market_stop(m->gm))
		return -1;
	gw_market_free(m->gm);  /* workers first: they call into the pool */
	rc_pool_free(m->pool);  /* sessions stay open on chain; the next start reuses them */
	gw_coord_free(m->coord);
	rc_market_free(m->mkt);
	rc_txm_free(m->txm);
	rc_rpc_free(m->rpc);
	free(m->models);
	rc_secp_privkey_release(&m->key);
	gw_config_unref(m->cfg);
	free(m);
	return 0;
}

/*
 * Everything the marketplace needs, without touching the chain: the chain-id check, recovery
 * and the catalogue all run in the background (rc_pool_start, gw_market's check thread), so a
 * slow or dead RPC never delays start-up. Errors (wallet, passphrase) are printed; no secret is.
 */
static int market_setup(struct gw_config *cfg, struct ks_store *ks, struct market **out)
{
	const struct gw_market_cfg *mc = &cfg->market;
	*out = NULL;
	struct market *m = calloc(1, sizeof *m);
	if (!m)
		abort();
	m->cfg = gw_config_ref(cfg);
	char pass[1024];
	size_t plen = 0;
	if (read_passphrase(mc, pass, sizeof pass, &plen))
		goto fail;
	struct rc_errinfo ei = {0, ""};
	int rc = rc_keyfile_read(mc->wallet, pass, plen, &m->key, m->addr, &ei);
	sodium_memzero(pass, sizeof pass);
	if (rc != RC_OK) {
		fprintf(stderr, "morgate: cannot open the marketplace wallet '%s': %s\n", mc->wallet,
			rc == RC_ECRYPTO ? "wrong passphrase"
			: rc == RC_EIO  ? strerror(errno)
			: rc == RC_EPARSE ? "not a morgate key file, or damaged"
					  : rc_strerror(rc));
		goto fail;
	}
	struct rc_rpc_options ro = {(const char *const *)mc->rpc, mc->n_rpc, 3000, 15000, 30000, 0};
	if (rc_rpc_new(&ro, &m->rpc) != RC_OK) {
		fprintf(stderr, "morgate: cannot set up the marketplace RPC client\n");
		goto fail;
	}
	struct rc_txm_options to = {0};
	to.chain_id = mc->chain_id;
	if (rc_txm_new(m->rpc, &m->key, &to, &m->txm) != RC_OK ||
	    rc_market_new(m->rpc, mc->diamond, mc->mor, &m->mkt) != RC_OK) {
		fprintf(stderr, "morgate: cannot set up the marketplace chain client\n");
		goto fail;
	}
	if (cfg->redis_url[0]) {
		char err[256];
		if (gw_coord_new(cfg->redis_url, m->addr, 500, &m->coord, err, sizeof err)) {
			fprintf(stderr, "morgate: marketplace coordination: %s\n", err);
			goto fail;
		}
	}
	m->models = calloc(mc->n_models ? mc->n_models : 1, sizeof *m->models);
	if (!m->models)
		abort();
	for (size_t i = 0; i < mc->n_models; i++) {
		m->models[i].model = mc->models[i].name;
		m->models[i].max_price_per_second = mc->models[i].max_price;
		m->models[i].min_idle = (unsigned)mc->models[i].min_idle;
	}
	struct rc_pool_opts po = {0};
	po.market = m->mkt;
	po.txm = m->txm;
	po.key = &m->key;
	po.session_s = (uint64_t)mc->session_seconds;
	po.direct_payment = mc->direct_payment;
	po.catalog_refresh_ms = mc->catalog_refresh_ms;
	po.bench_ms = mc->bench_ms;
	po.rank.max_price_per_second = mc->max_price;
	po.rank.allow = (const uint8_t(*)[20])mc->allow;
	po.rank.nallow = mc->n_allow;
	po.rank.deny = (const uint8_t(*)[20])mc->deny;
	po.rank.ndeny = mc->n_deny;
	po.rank.self = m->addr;
	po.models = m->models;
	po.nmodels = mc->n_models;
	po.store = &gw_market_store_ops;
	po.store_ud = ks;
	if (m->coord) {
		po.coord = &gw_coord_ops;
		po.coord_ud = m->coord;
	}
	po.log = market_log;
	if (rc_pool_new(&po, &m->pool) != RC_OK) {
		fprintf(stderr, "morgate: cannot create the marketplace session pool\n");
		goto fail;
	}
	struct gw_market_opts gmo = {0};
	gmo.pool = m->pool;
	gmo.rpc = m->rpc;
	gmo.chain_id = mc->chain_id;
	gmo.workers = mc->workers;
	gmo.request_deadline_ms = mc->request_deadline_ms;
	gmo.coordinated = m->coord != NULL;
	if (gw_market_new(&gmo, &m->gm)) {
		fprintf(stderr, "morgate: cannot start %ld marketplace worker threads\n", mc->workers);
		goto fail;
	}
	if (rc_pool_start(m->pool) != RC_OK) {
		fprintf(stderr, "morgate: cannot start the marketplace session pool\n");
		goto fail;
	}
	char addr[RC_ADDR_STR_SIZE];
	rc_addr_format(m->addr, addr);
	gw_log_info("main", "marketplace: wallet %s, chain %llu, %zu RPC URL(s), %ld workers, coordination %s",
		    addr, (unsigned long long)mc->chain_id, mc->n_rpc, mc->workers,
		    m->coord ? "redis" : "in-process");
	*out = m;
	return 0;
fail:
	market_free(m);
	return -1;
}

int main(int argc, char **argv)
{
	const char *cfg_path = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			cfg_path = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			cfg_path = argv[i] + 9;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage_text, stdout);
			return 0;
		} else {
			fprintf(stderr, "morgate: unexpected argument '%s'\n%s", argv[i], usage_text);
			return 2;
		}
	}
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "morgate: cannot initialise libsodium or libcurl\n");
		return 1;
	}
	/* Signals are taken synchronously on this thread; every other thread inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct gw_config *cfg = NULL;
	struct gw_config_err cerr;
	memset(&cerr, 0, sizeof cerr);
	if (gw_config_load(cfg_path, &cfg, &cerr)) {
		print_cfg_err(cfg_path, &cerr);
		return 1;
	}
	gw_log_min_level = gw_log_parse_level(cfg->log_level);
	gw_log_access_enabled = cfg->access_log;

	mkdir_parent(cfg->keystore_path);
	struct ks_options ko = {0};
	ko.db_path = cfg->keystore_path;
	ko.pepper_path = cfg->keystore_pepper[0] ? cfg->keystore_pepper : NULL;
	ko.flags = KS_OPEN_CREATE;
	ko.poll_ms = (unsigned)cfg->keystore_poll_ms;
	struct ks_store *ks = NULL;
	struct ks_err kerr;
	memset(&kerr, 0, sizeof kerr);
	int rc = ks_open(&ko, &ks, &kerr);
	if (rc) {
		fprintf(stderr, "morgate: cannot open key store '%s': %s%s%s\n", cfg->keystore_path,
			ks_strerror(rc), kerr.msg[0] ? ": " : "", kerr.msg);
		gw_config_unref(cfg);
		return 1;
	}
	struct market *market = NULL;
	if (cfg->market.enabled && market_setup(cfg, ks, &market)) {
		ks_close(ks);
		gw_config_unref(cfg);
		return 1;
	}
	struct gw_server *srv = NULL;
	char err[256];
	if (gw_server_new(cfg, ks, market ? market->gm : NULL, &srv, err, sizeof err)) {
		fprintf(stderr, "morgate: %s\n", err);
		market_free(market);
		ks_close(ks);
		gw_config_unref(cfg);
		return 1;
	}
	gw_log_info("main", "listening on http://%s (admin %s), %zu model(s), key store '%s'", cfg->listen,
		    cfg->admin_listen[0] ? cfg->admin_listen : "same listener", cfg->n_models,
		    cfg->keystore_path);
	fflush(stderr);

	long drain_ms = cfg->drain_timeout_ms;
	for (;;) {
		struct timespec to = {cfg->usage_flush_ms / 1000, (cfg->usage_flush_ms % 1000) * 1000000};
		int sig = sigtimedwait(&set, NULL, &to);
		if (sig < 0) {
			if (errno == EAGAIN)
				gw_server_flush_usage(srv);
			continue;
		}
		if (sig == SIGHUP) {
			struct gw_config *ncfg = NULL;
			memset(&cerr, 0, sizeof cerr);
			if (gw_config_load(cfg_path, &ncfg, &cerr)) {
				gw_log_error("main", "reload failed, keeping the running config: %s%s%s",
					     cerr.path, cerr.path[0] ? ": " : "", cerr.msg);
				continue;
			}
			char kept[512];
			if (gw_config_keep_running(ncfg, cfg, kept, sizeof kept))
				gw_log_warn("main", "reload: %s changed but only apply at a restart; "
					    "keeping the running values", kept);
			gw_log_min_level = gw_log_parse_level(ncfg->log_level);
			gw_log_access_enabled = ncfg->access_log;
			gw_server_reload(srv, ncfg);
			gw_config_unref(cfg);
			cfg = ncfg;
			drain_ms = cfg->drain_timeout_ms;
			gw_log_info("main", "config reloaded: %zu model(s)", cfg->n_models);
			continue;
		}
		gw_log_info("main", "%s: draining (up to %ld ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT", drain_ms);
		int cut = gw_server_drain(srv, drain_ms);
		if (cut)
			gw_log_warn("main", "drain deadline reached: %d request(s) cut", cut);
		break;
	}
	gw_server_free(srv); /* also stops the marketplace workers */
	struct ks_err ferr;
	if (market_free(market)) {
		/* a worker still waits on the chain: flush usage and leave without freeing what it uses */
		if (ks_flush(ks, &ferr))
			gw_log_error("main", "final usage flush failed: %s", ferr.msg);
		gw_log_info("main", "stopped");
		exit(0);
	}
	if (ks_flush(ks, &ferr))
		gw_log_error("main", "final usage flush failed: %s", ferr.msg);
	ks_close(ks);
	gw_config_unref(cfg);
	curl_global_cleanup();
	gw_log_info("main", "stopped");
	return 0;
}
