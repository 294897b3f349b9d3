/*
 * morgate: the gateway binary. Parses the command line, loads the config (file, environment,
 * embedded defaults), opens the key store, starts the server, then turns signals into actions
 * on the main thread: SIGHUP reloads the config, SIGTERM/SIGINT drain and exit 0. Usage is
 * flushed to the key store every usage_flush_ms and at shutdown.
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

#include "gw_config.h"
#include "gw_log.h"
#include "gw_server.h"

static const char usage_text[] =
	"usage: morgate [--config FILE]\n"
	"\n"
	"The morgate gateway: an OpenAI-compatible API in front of model backends.\n"
	"Without --config it runs on embedded defaults: listen 127.0.0.1:8080, key store\n"
	"./var/morgate.db, in-process rate limits, and a built-in 'demo' model.\n"
	"Environment overrides: MORGATE_LISTEN, MORGATE_ADMIN_LISTEN, MORGATE_DB, MORGATE_PEPPER_FILE,\n"
	"MORGATE_THREADS, MORGATE_LOG_LEVEL, MORGATE_REDIS_URL, MORGATE_KEEPALIVE_MS,\n"
	"MORGATE_MAX_BODY_BYTES. Signals: SIGHUP reloads the config, SIGTERM drains and exits.\n";

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
	struct gw_server *srv = NULL;
	char err[256];
	if (gw_server_new(cfg, ks, &srv, err, sizeof err)) {
		fprintf(stderr, "morgate: %s\n", err);
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
	gw_server_free(srv);
	struct ks_err ferr;
	if (ks_flush(ks, &ferr))
		gw_log_error("main", "final usage flush failed: %s", ferr.msg);
	ks_close(ks);
	gw_config_unref(cfg);
	curl_global_cleanup();
	gw_log_info("main", "stopped");
	return 0;
}
