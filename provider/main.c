/*
 * morgate-provider: the resale provider node. Thin: read the two config files, open the wallet,
 * connect to the chain, start the MOR-RPC server and the admin listener, wait for SIGTERM or
 * SIGINT, drain. Everything else lives in libprovider (pv_*.c).
 *
 *   morgate-provider [--config FILE] [--check]
 *
 * Exit status: 0 after a clean drain (or --check ok), 2 usage or config error, 3 wallet error,
 * 4 chain error, 5 cannot listen or open the store.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <router-core/rc_keyfile.h>
#include <router-core/rc_market.h>
#include <router-core/rc_network.h>
#include <router-core/rc_rpc.h>

#include "pv_admin.h"
#include "pv_backend.h"
#include "pv_config.h"
#include "pv_log.h"
#include "pv_metrics.h"
#include "pv_models.h"
#include "pv_server.h"

#define VERSION "morgate-provider/0.1.0"

static int read_file(const char *path, size_t max, struct rc_buf *out)
{
	FILE *f = fopen(path, "rb");
	char b[8192];
	size_t n;
	if (!f)
		return -1;
	while ((n = fread(b, 1, sizeof b, f)) > 0) {
		if (out->len + n > max || rc_buf_append(out, b, n)) {
			fclose(f);
			errno = EFBIG;
			return -1;
		}
	}
	int bad = ferror(f);
	fclose(f);
	return bad ? -1 : 0;
}

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("morgate-provider: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

static int passphrase(const struct pv_config *c, const char *cfgpath, struct rc_buf *out)
{
	char path[4096];
	if (c->passphrase_file) {
		if (!pv_config_path(cfgpath, c->passphrase_file, path, sizeof path) ||
		    read_file(path, 4096, out))
			return die(3, "cannot read passphrase file '%s': %s", c->passphrase_file,
			           strerror(errno));
		char *nl = out->ptr ? memchr(out->ptr, '\n', out->len) : NULL;
		if (nl)
			rc_buf_setlen(out, (size_t)(nl - out->ptr));
		if (out->len && out->ptr[out->len - 1] == '\r')
			rc_buf_setlen(out, out->len - 1);
		return 0;
	}
	const char *e = getenv("MORGATE_WALLET_PASSPHRASE");
	if (!e)
		return die(3, "a wallet passphrase is needed: set MORGATE_WALLET_PASSPHRASE or "
		              "passphrase_file");
	return rc_buf_append(out, e, strlen(e)) ? die(3, "out of memory") : 0;
}

int main(int argc, char **argv)
{
	const char *cfgpath = "provider.json";
	int check = 0, rc = 0;
	struct rc_buf text = RC_BUF_INIT, mtext = RC_BUF_INIT, pass = RC_BUF_INIT;
	struct pv_config cfg;
	struct rc_errinfo e = {0};
	struct pv_models *models = NULL;
	struct pv_node node;
	struct rc_rpc *rpc = NULL;
	struct pv_server *srv = NULL;
	struct pv_admin *adm = NULL;
	char path[4096], host[256];
	unsigned port;

	memset(&node, 0, sizeof node);
	memset(&cfg, 0, sizeof cfg);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			cfgpath = argv[++i];
		else if (!strcmp(argv[i], "--check"))
			check = 1;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: morgate-provider [--config FILE] [--check]\n"
			       "  --config FILE  node config (default provider.json); see "
			       "config/provider.example.json\n"
			       "  --check        validate the config and models-config, then "
			       "exit\n");
			return 0;
		} else
			return die(2, "unknown argument '%s' (try --help)", argv[i]);
	}
	if (sodium_init() < 0)
		return die(5, "cannot initialise libsodium");
	if (read_file(cfgpath, 1 << 20, &text))
		return die(2, "cannot read config '%s': %s", cfgpath, strerror(errno));
	rc = pv_config_parse(text.ptr ? text.ptr : "", text.len, &cfg, &e);
	rc_buf_release(&text);
	if (rc) {
		if (rc == RC_EPARSE)
			return die(2, "config '%s': %s (at byte %zu)", cfgpath, e.text, e.offset);
		return die(2, "config '%s': %s", cfgpath, e.text);
	}
	pv_log_threshold = cfg.log_level;
	if (!pv_config_path(cfgpath, cfg.models_config, path, sizeof path) ||
	    read_file(path, 8 << 20, &mtext)) {
		rc = die(2, "cannot read models config '%s': %s", cfg.models_config,
		         strerror(errno));
		goto out;
	}
	rc = pv_models_parse(mtext.ptr ? mtext.ptr : "", mtext.len, &models, &e);
	rc_buf_release(&mtext);
	if (rc) {
		rc = rc == RC_EPARSE ? die(2, "models config '%s': %s (at byte %zu)", path, e.text,
		                           e.offset)
		                     : die(2, "models config '%s': %s", path, e.text);
		goto out;
	}
	if (check) {
		printf("ok: %zu model(s)\n", models->n);
		rc = 0;
		goto out;
	}
	if ((rc = passphrase(&cfg, cfgpath, &pass)))
		goto out;
	if (!pv_config_path(cfgpath, cfg.wallet, path, sizeof path)) {
		rc = die(2, "wallet path too long");
		goto out;
	}
	rc = rc_keyfile_read(path, pass.ptr ? pass.ptr : "", pass.len, &node.key, node.addr, &e);
	rc_buf_release_wipe(&pass);
	if (rc) {
		rc = die(3, "cannot open wallet '%s': %s%s%s", path, rc_strerror(rc),
		         e.text[0] ? ": " : "", e.text);
		goto out;
	}
	rc_secp_pubkey(&node.key, node.pub);

	struct rc_rpc_options ro = {0};
	ro.urls = (const char *const *)cfg.rpc;
	ro.nurls = cfg.nrpc;
	ro.timeout_ms = 10000;
	struct rc_rpc_error re = {0};
	if (rc_rpc_new(&ro, &rpc)) {
		rc = die(2, "rpc: invalid URL list");
		goto out;
	}
	if ((rc = rc_rpc_chain_id(rpc, &node.chain_id, &re))) {
		rc = die(4, "cannot read the chain id from '%s': %s", re.url, re.message);
		goto out;
	}
	if (cfg.chain_id && cfg.chain_id != node.chain_id) {
		rc = die(4, "node at '%s' is on chain %llu, expected %llu", re.url,
		         (unsigned long long)node.chain_id, (unsigned long long)cfg.chain_id);
		goto out;
	}
	if (rc_market_new(rpc, cfg.diamond, cfg.mor, &node.market)) {
		rc = die(5, "out of memory");
		goto out;
	}
	if (!pv_config_path(cfgpath, cfg.db, path, sizeof path) ||
	    pv_store_open(path, &node.store)) {
		rc = die(5, "cannot open the user store '%s'", cfg.db);
		goto out;
	}
	if (pv_sessions_new(&node.sessions)) {
		rc = die(5, "out of memory");
		goto out;
	}
	node.models = models;
	node.backend_timeout_ms = cfg.backend_timeout_ms;
	node.max_connections = cfg.max_connections;
	node.version = VERSION;
	pv_backend_global_init();

	/* Signals: handled by sigwait in this thread only; every thread inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	pv_config_split_hostport(cfg.listen, host, sizeof host, &port);
	if (pv_server_start(&node, host, port, &srv)) {
		rc = 5;
		goto out;
	}
	unsigned mport = pv_server_port(srv);
	pv_config_split_hostport(cfg.admin_listen, host, sizeof host, &port);
	if (pv_admin_start(host, port, &adm)) {
		rc = 5;
		goto out;
	}
	char addr[43];
	snprintf(addr, 3, "0x");
	for (int i = 0; i < 20; i++)
		snprintf(addr + 2 + 2 * i, 3, "%02x", node.addr[i]);
	pv_log_info(
	        "main",
	        "%s started: provider=%s chain_id=%llu models=%zu mor_rpc_port=%u admin_port=%u",
	        VERSION, addr, (unsigned long long)node.chain_id, models->n, mport,
	        pv_admin_port(adm));
	for (size_t i = 0; i < models->n; i++)
		pv_log_info("main", "model %s name=%s api=%s slots=%u policy=%s",
		            models->models[i].id_hex, models->models[i].name,
		            pv_api_type_name(models->models[i].api), models->models[i].slots,
		            models->models[i].policy == PV_CAP_IDLE_TIMEOUT ? "idle_timeout"
		                                                            : "simple");
	int sig = 0;
	sigwait(&set, &sig);
	atomic_store(&pv_metrics.draining, 1);
	pv_log_info("main", "signal %d: draining (up to %ld ms)", sig, cfg.drain_timeout_ms);
	long left = pv_server_drain(srv, cfg.drain_timeout_ms);
	if (left)
		pv_log_warn("main", "%ld connection(s) still running after the drain timeout",
		            left);
	else
		pv_log_info("main", "drained");
	rc = 0;
	if (left) {
		/* Detached threads still use the node: leave without freeing it. */
		pv_admin_stop(adm);
		_exit(0);
	}
out:
	pv_admin_stop(adm);
	pv_server_free(srv);
	pv_sessions_free(node.sessions);
	pv_store_close(node.store);
	rc_market_free(node.market);
	rc_rpc_free(rpc);
	rc_secp_privkey_release(&node.key);
	pv_models_free(models);
	pv_config_release(&cfg);
	return rc;
}
