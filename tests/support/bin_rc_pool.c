/*
 * rc_pool: drives router-core's session pool (rc_pool.h) for the integration tests
 * (tests/integration/test_rc_pool.sh). The wallet key comes from $RC_POOL_KEY (0x hex), never
 * from the command line:
 *
 *   rc_pool RPC_URL CHAIN_ID DIAMOND MOR STORE_DIR [--session-s N] [--min-idle MODEL=N]
 *           [--bench-ms N] [--gone-after-ms N] [--retire-s N] [--first-timeout-ms N]
 *           [--idle-timeout-ms N]
 *           [--inject-opening BIDID] [--coord DIR]
 *
 * --coord DIR gives the pool coordination ops backed by files in DIR (what the gateway does with
 * Redis), so two rc_pool processes on one wallet coordinate: a lock is a file created with
 * O_EXCL holding its expiry (taken over once expired), the shared table one file per session.
 * --inject-opening writes a minimal "opening" record for BIDID (no session id, no provider: as
 * if the process had died between saving it and openSession's receipt) into STORE_DIR before
 * the pool starts.
 * STORE_DIR holds one file per session record (the raw struct, written with rename), so a
 * second process on the same directory recovers the first one's sessions. Commands are read
 * from stdin, one a line, and each is answered with ONE line on stdout, "OK ..." or "ERR ...":
 *
 *   wait-model NAME SECS          the catalogue lists NAME            OK bids=N
 *   prompt MODEL IN OUT [MS]      one request (IN: request JSON; OUT gets every chunk, one a
 *                                 line; MS: deadline from now)       OK session=0x.. provider=0x..
 *                                 opened=0|1 waited=0|1 attempts=N chunks=N done=0|1 first_ms=N
 *                                 wait_ms=N total_ms=N  (waited: on_wait was called)
 *                                 / ERR reason=NAME first_chunk=0|1 attempts=N text=...
 *   concurrent N MODEL PREFIX HOLD_MS   N requests at once (PREFIX.I in, PREFIX.I.out out; each
 *                                 holds its session HOLD_MS after its first chunk)
 *                                 OK distinct=K opened=J sessions=0x..,0x..
 *   sessions                      OK 0x..:state:dispute:requests:provider:model,...
 *   wait-idle MODEL N SECS        OK when the pool has N open sessions of MODEL
 *   wait-state SID STATE SECS     OK when the pool's record of SID has STATE (else ERR state=..)
 *   close SID                     rc_pool_close with disputes allowed
 *   stats                         OK opened=.. reused=.. failovers=.. closed=.. disputes=..
 *   quit                          frees the pool (sessions stay open on chain), OK, exit 0
 * Logs go to stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_market.h>
#include <router-core/rc_pool.h>
#include <router-core/rc_rpc.h>
#include <router-core/rc_txm.h>

static const char *store_dir;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int st_save(void *ud, const struct rc_pool_session *s)
{
	(void)ud;
	char path[512], tmp[520];
	snprintf(path, sizeof path, "%s/%016" PRIx64 ".rec", store_dir, s->local_id);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(s, sizeof *s, 1, f);
	if (fclose(f) != 0 || w != 1 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

static int st_load(void *ud, int (*cb)(void *, const struct rc_pool_session *), void *cbud)
{
	(void)ud;
	DIR *d = opendir(store_dir);
	if (!d)
		return -1;
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".rec") != 0)
			continue;
		char path[512];
		snprintf(path, sizeof path, "%s/%s", store_dir, e->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		struct rc_pool_session s;
		if (fread(&s, sizeof s, 1, f) == 1)
			rc = cb(cbud, &s);
		fclose(f);
	}
	closedir(d);
	return rc;
}

static const struct rc_pool_store_ops store_ops = {st_save, st_load};

/* ---- file-backed coordination ops ---------------------------------------------------------- */

static const char *coord_dir;

static int64_t wall_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lock_path(char *out, size_t cap, const char *name)
{
	int n = snprintf(out, cap, "%s/lock-", coord_dir);
	for (const char *c = name; *c && (size_t)n + 1 < cap; c++)
		out[n++] = *c == ':' || *c == '/' ? '_' : *c;
	out[n] = 0;
}

static int co_trylock(void *ud, const char *name, int64_t ttl_ms)
{
	(void)ud;
	char path[512];
	lock_path(path, sizeof path, name);
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd >= 0) {
			char buf[64];
			int n = snprintf(buf, sizeof buf, "%" PRId64 " %d\n",
			                 wall_now_ms() + ttl_ms, (int)getpid());
			ssize_t w = write(fd, buf, (size_t)n);
			close(fd);
			return w == n ? 1 : -1;
		}
		if (errno != EEXIST)
			return -1;
		FILE *f = fopen(path, "r");
		long long until = 0;
		if (f) {
			if (fscanf(f, "%lld", &until) != 1)
				until = 0;
			fclose(f);
		}
		if (until > wall_now_ms())
			return 0;
		unlink(path); /* expired: take it over */
	}
	return 0;
}

static void co_unlock(void *ud, const char *name)
{
	(void)ud;
	char path[512];
	lock_path(path, sizeof path, name);
	FILE *f = fopen(path, "r");
	long long until;
	int pid = 0;
	if (f) {
		if (fscanf(f, "%lld %d", &until, &pid) != 2)
			pid = 0;
		fclose(f);
	}
	if (pid == (int)getpid())
		unlink(path);
}

static void table_path(char *out, size_t cap, const uint8_t id[32])
{
	char hex[67];
	rc_hex_encode_0x(id, 32, hex, sizeof hex);
	snprintf(out, cap, "%s/sess-%s.rec", coord_dir, hex);
}

static int co_put(void *ud, const struct rc_pool_session *s)
{
	(void)ud;
	char path[512], tmp[520];
	table_path(path, sizeof path, s->id);
	snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(s, sizeof *s, 1, f);
	if (fclose(f) != 0 || w != 1 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

static int co_list(void *ud, struct rc_pool_session **out, size_t *n)
{
	(void)ud;
	*out = NULL;
	*n = 0;
	DIR *d = opendir(coord_dir);
	if (!d)
		return -1;
	struct dirent *e;
	size_t cap = 0;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, "sess-", 5) != 0 || l < 5 ||
		    strcmp(e->d_name + l - 4, ".rec"))
			continue;
		char path[512];
		snprintf(path, sizeof path, "%s/%s", coord_dir, e->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			struct rc_pool_session *nb = realloc(*out, cap * sizeof **out);
			if (!nb) {
				fclose(f);
				break;
			}
			*out = nb;
		}
		if (fread(&(*out)[*n], sizeof **out, 1, f) == 1)
			(*n)++;
		fclose(f);
	}
	closedir(d);
	return 0;
}

static int co_del(void *ud, const uint8_t id[32])
{
	(void)ud;
	char path[512];
	table_path(path, sizeof path, id);
	unlink(path);
	return 0;
}

static const struct rc_pool_coord_ops coord_ops = {co_trylock, co_unlock, co_put, co_list, co_del};

static void log_cb(void *ud, int level, const char *msg)
{
	(void)ud;
	static const char *const lv[] = {"info", "warn", "error"};
	fprintf(stderr, "[pool %s] %s\n", lv[level < 0 || level > 2 ? 2 : level], msg);
}

static void hex0x(const uint8_t *b, size_t n, char *out, size_t cap)
{
	rc_hex_encode_0x(b, n, out, cap);
}

static int parse_hex(const char *s, uint8_t *out, size_t n)
{
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	return rc_hex_decode_exact(s, strlen(s), out, n, NULL);
}

static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	size_t r;
	while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				b = NULL;
			}
			b = nb;
		}
	}
	fclose(f);
	if (!b)
		return -1;
	*buf = b;
	*len = n;
	return 0;
}

struct req_ctx {
	FILE *out;
	int hold_ms;
	bool held;
	int waited;
};

static void on_wait(void *ud)
{
	struct req_ctx *c = ud;
	c->waited++;
}

static int chunk_cb(void *ud, enum rc_link_chunk kind, const uint8_t *data, size_t len)
{
	struct req_ctx *c = ud;
	if (c->out) {
		fprintf(c->out, "%s%.*s\n", kind == RC_LINK_CHUNK_ERROR ? "ERROR " : "", (int)len,
		        (const char *)data);
		fflush(c->out);
	}
	if (c->hold_ms > 0 && !c->held) {
		c->held = true;
		usleep((useconds_t)c->hold_ms * 1000);
	}
	return 0;
}

static struct rc_pool *pool;

/* One request; fills line with the answer. */
static void do_prompt(const char *model, const char *in, const char *outp, int64_t ms, int hold_ms,
                      char *line, size_t cap, struct rc_pool_result *resout)
{
	char *body;
	size_t blen;
	if (read_file(in, &body, &blen) != 0) {
		snprintf(line, cap, "ERR cannot read %s", in);
		return;
	}
	struct req_ctx c = {.out = fopen(outp, "w"), .hold_ms = hold_ms};
	struct rc_pool_request rq = {.model = model,
	                             .message = {body, blen},
	                             .on_chunk = chunk_cb,
	                             .ud = &c,
	                             .deadline_ms = ms ? now_ms() + ms : 0,
	                             .cancel_fd = -1,
	                             .on_wait = on_wait};
	struct rc_pool_result res;
	struct rc_pool_err err;
	int64_t t0 = now_ms();
	int rc = rc_pool_prompt(pool, &rq, &res, &err);
	int64_t took = now_ms() - t0;
	if (c.out)
		fclose(c.out);
	free(body);
	if (resout)
		*resout = res;
	if (rc != RC_OK) {
		snprintf(line, cap, "ERR reason=%s first_chunk=%d attempts=%u waited=%d text=%s",
		         rc_pool_reason_name(err.reason), res.first_chunk, res.attempts, c.waited,
		         err.text);
		return;
	}
	char sid[67], prov[43];
	hex0x(res.session_id, 32, sid, sizeof sid);
	hex0x(res.provider, 20, prov, sizeof prov);
	snprintf(line, cap,
	         "OK session=%s provider=%s opened=%d waited=%d attempts=%u chunks=%" PRIu64
	         " done=%d first_ms=%" PRIu64 " wait_ms=%" PRId64 " total_ms=%" PRId64,
	         sid, prov, res.opened, c.waited, res.attempts, res.stream.chunks, res.stream.done,
	         res.stream.first_ms, res.session_wait_ms, took);
}

struct conc {
	pthread_t t;
	const char *model;
	char in[400], out[420];
	int hold_ms;
	char line[1024];
	struct rc_pool_result res;
};

static void *conc_main(void *arg)
{
	struct conc *c = arg;
	do_prompt(c->model, c->in, c->out, 60000, c->hold_ms, c->line, sizeof c->line, &c->res);
	return NULL;
}

static bool find_session(const char *sidhex, struct rc_pool_session *out)
{
	uint8_t id[32];
	if (parse_hex(sidhex, id, 32) != RC_OK)
		return false;
	struct rc_pool_session *s;
	size_t n;
	bool found = false;
	if (rc_pool_sessions(pool, &s, &n) != RC_OK)
		return false;
	for (size_t i = 0; i < n; i++)
		if (memcmp(s[i].id, id, 32) == 0) {
			*out = s[i];
			found = true;
		}
	free(s);
	return found;
}

static void usage(void)
{
	fprintf(stderr, "usage: rc_pool RPC_URL CHAIN_ID DIAMOND MOR STORE_DIR [options] "
	                "(key in $RC_POOL_KEY)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 6)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *url = argv[1];
	uint64_t chain_id = strtoull(argv[2], NULL, 10);
	uint8_t diamond[20], mor[20];
	if (parse_hex(argv[3], diamond, 20) || parse_hex(argv[4], mor, 20))
		usage();
	store_dir = argv[5];
	struct rc_pool_opts o = {0};
	struct rc_pool_model_cfg mcfg[4];
	size_t nm = 0;
	char mnames[4][128];
	for (int i = 6; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--session-s"))
			o.session_s = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--bench-ms"))
			o.bench_ms = strtoll(v, NULL, 10);
		else if (!strcmp(a, "--gone-after-ms"))
			o.gone_after_ms = strtoll(v, NULL, 10);
		else if (!strcmp(a, "--retire-s"))
			o.retire_before_end_s = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--first-timeout-ms"))
			o.link.first_timeout_ms = atoi(v);
		else if (!strcmp(a, "--idle-timeout-ms"))
			o.link.idle_timeout_ms = atoi(v);
		else if (!strcmp(a, "--coord")) {
			coord_dir = v;
			o.coord = &coord_ops;
			if (mkdir(v, 0700) != 0 && errno != EEXIST)
				usage();
		} else if (!strcmp(a, "--inject-opening")) {
			struct rc_pool_session s = {0};
			s.local_id = 0x1badc0de;
			s.state = RC_POOL_S_OPENING;
			if (parse_hex(v, s.bid_id, 32) != RC_OK || st_save(NULL, &s) != 0)
				usage();
		} else if (!strcmp(a, "--min-idle") && nm < 4 && strchr(v, '=')) {
			const char *eq = strchr(v, '=');
			snprintf(mnames[nm], sizeof mnames[nm], "%.*s", (int)(eq - v), v);
			memset(&mcfg[nm], 0, sizeof mcfg[nm]);
			mcfg[nm].model = mnames[nm];
			mcfg[nm].min_idle = (unsigned)atoi(eq + 1);
			nm++;
		} else
			usage();
	}
	o.models = mcfg;
	o.nmodels = nm;
	const char *kh = getenv("RC_POOL_KEY");
	struct rc_secp_privkey key;
	if (!kh || rc_secp_privkey_from_hex(&key, kh, strlen(kh), NULL) != RC_OK) {
		fprintf(stderr, "rc_pool: $RC_POOL_KEY is not a private key\n");
		return 2;
	}
	const char *urls[] = {url};
	struct rc_rpc_options ro = {.urls = urls,
	                            .nurls = 1,
	                            .timeout_ms = 5000,
	                            .connect_timeout_ms = 1000,
	                            .bad_url_ms = 1};
	struct rc_rpc *rpc;
	struct rc_market *m;
	struct rc_txm *txm;
	struct rc_txm_options to = {
	        .chain_id = chain_id, .receipt_timeout_ms = 20000, .poll_interval_ms = 50};
	if (rc_rpc_new(&ro, &rpc) || rc_market_new(rpc, diamond, mor, &m) ||
	    rc_txm_new(rpc, &key, &to, &txm)) {
		fprintf(stderr, "rc_pool: setup failed\n");
		return 1;
	}
	o.market = m;
	o.txm = txm;
	o.key = &key;
	o.store = &store_ops;
	o.log = log_cb;
	o.maintenance_ms = 250;
	o.catalog_refresh_ms = 2000;
	o.discovery_ttl_ms = 2000;
	if (rc_pool_new(&o, &pool) != RC_OK || rc_pool_start(pool) != RC_OK) {
		fprintf(stderr, "rc_pool: pool setup failed\n");
		return 1;
	}
	rc_secp_privkey_release(&key);

	char cmd[2048], line[2048];
	while (fgets(cmd, sizeof cmd, stdin)) {
		cmd[strcspn(cmd, "\r\n")] = 0;
		char *argvv[8] = {0};
		int ac = 0;
		for (char *tok = strtok(cmd, " "); tok && ac < 8; tok = strtok(NULL, " "))
			argvv[ac++] = tok;
		if (ac == 0)
			continue;
		const char *c = argvv[0];
		line[0] = 0;
		if (!strcmp(c, "quit")) {
			break;
		} else if (!strcmp(c, "wait-model") && ac == 3) {
			int64_t until = now_ms() + atoi(argvv[2]) * 1000;
			struct rc_pool_model md;
			int rc;
			while ((rc = rc_pool_model_find(pool, argvv[1], &md)) != RC_OK &&
			       now_ms() < until)
				usleep(50000);
			if (rc == RC_OK)
				snprintf(line, sizeof line, "OK bids=%u", md.active_bids);
			else
				snprintf(line, sizeof line, "ERR timeout");
		} else if (!strcmp(c, "prompt") && ac >= 4) {
			do_prompt(argvv[1], argvv[2], argvv[3], ac > 4 ? atoll(argvv[4]) : 0, 0,
			          line, sizeof line, NULL);
		} else if (!strcmp(c, "concurrent") && ac == 5) {
			int n = atoi(argvv[1]);
			if (n < 1 || n > 8) {
				snprintf(line, sizeof line, "ERR n");
			} else {
				struct conc cs[8];
				for (int i = 0; i < n; i++) {
					memset(&cs[i], 0, sizeof cs[i]);
					cs[i].model = argvv[2];
					cs[i].hold_ms = atoi(argvv[4]);
					snprintf(cs[i].in, sizeof cs[i].in, "%s.%d", argvv[3], i);
					snprintf(cs[i].out, sizeof cs[i].out, "%s.%d.out", argvv[3],
					         i);
					pthread_create(&cs[i].t, NULL, conc_main, &cs[i]);
				}
				int distinct = 0, opened = 0;
				bool ok = true;
				char list[1024] = "";
				for (int i = 0; i < n; i++)
					pthread_join(cs[i].t, NULL);
				for (int i = 0; i < n; i++) {
					if (strncmp(cs[i].line, "OK", 2) != 0) {
						ok = false;
						snprintf(line, sizeof line, "ERR request %d: %s", i,
						         cs[i].line);
						break;
					}
					bool seen = false;
					for (int k = 0; k < i; k++)
						seen |= memcmp(cs[k].res.session_id,
						               cs[i].res.session_id, 32) == 0;
					distinct += !seen;
					opened += cs[i].res.opened;
					char sid[67];
					hex0x(cs[i].res.session_id, 32, sid, sizeof sid);
					size_t l = strlen(list);
					snprintf(list + l, sizeof list - l, "%s%s", l ? "," : "",
					         sid);
				}
				if (ok)
					snprintf(line, sizeof line,
					         "OK distinct=%d opened=%d sessions=%s", distinct,
					         opened, list);
			}
		} else if (!strcmp(c, "sessions")) {
			struct rc_pool_session *s;
			size_t n;
			rc_pool_sessions(pool, &s, &n);
			size_t l = (size_t)snprintf(line, sizeof line, "OK");
			for (size_t i = 0; i < n && l < sizeof line - 200; i++) {
				char sid[67], prov[43];
				hex0x(s[i].id, 32, sid, sizeof sid);
				hex0x(s[i].provider, 20, prov, sizeof prov);
				l += (size_t)snprintf(
				        line + l, sizeof line - l, "%s%s:%s:%d:%" PRIu64 ":%s:%s",
				        i ? "," : " ", sid, rc_pool_state_name(s[i].state),
				        s[i].dispute, s[i].requests, prov, s[i].model);
			}
			free(s);
		} else if (!strcmp(c, "wait-idle") && ac == 4) {
			int64_t until = now_ms() + atoi(argvv[3]) * 1000;
			unsigned want = (unsigned)atoi(argvv[2]), have = 0;
			for (;;) {
				struct rc_pool_session *s;
				size_t n;
				have = 0;
				if (rc_pool_sessions(pool, &s, &n) == RC_OK) {
					for (size_t i = 0; i < n; i++)
						have += s[i].state == RC_POOL_S_OPEN &&
						        !strcmp(s[i].model, argvv[1]);
					free(s);
				}
				if (have >= want || now_ms() >= until)
					break;
				usleep(100000);
			}
			snprintf(line, sizeof line, "%s open=%u", have >= want ? "OK" : "ERR",
			         have);
		} else if (!strcmp(c, "wait-state") && ac == 4) {
			int64_t until = now_ms() + atoi(argvv[3]) * 1000;
			struct rc_pool_session s = {0};
			bool found = false, ok = false;
			for (;;) {
				found = find_session(argvv[1], &s);
				ok = found && !strcmp(rc_pool_state_name(s.state), argvv[2]);
				if (ok || now_ms() >= until)
					break;
				usleep(100000);
			}
			if (ok)
				snprintf(line, sizeof line, "OK dispute=%d closed_at=%" PRIu64,
				         s.dispute, s.closed_at);
			else
				snprintf(line, sizeof line, "ERR state=%s",
				         found ? rc_pool_state_name(s.state) : "unknown");
		} else if (!strcmp(c, "close") && ac == 2) {
			uint8_t id[32];
			struct rc_pool_err err;
			if (parse_hex(argvv[1], id, 32) != RC_OK)
				snprintf(line, sizeof line, "ERR id");
			else if (rc_pool_close(pool, id, true, &err) == RC_OK)
				snprintf(line, sizeof line, "OK");
			else
				snprintf(line, sizeof line, "ERR reason=%s text=%s",
				         rc_pool_reason_name(err.reason), err.text);
		} else if (!strcmp(c, "stats")) {
			struct rc_pool_stats st;
			rc_pool_get_stats(pool, &st);
			snprintf(line, sizeof line,
			         "OK opened=%" PRIu64 " open_failed=%" PRIu64 " reused=%" PRIu64
			         " failovers=%" PRIu64 " closed=%" PRIu64 " disputes=%" PRIu64
			         " prompts=%" PRIu64 " prompt_errors=%" PRIu64
			         " sessions_open=%u chain_ok=%d coordinated=%d",
			         st.opened, st.open_failed, st.reused, st.failovers, st.closed,
			         st.disputes, st.prompts, st.prompt_errors, st.sessions_open,
			         st.chain_ok, st.coordinated);
		} else {
			snprintf(line, sizeof line, "ERR unknown command");
		}
		printf("%s\n", line);
	}
	rc_pool_free(pool);
	rc_txm_free(txm);
	rc_market_free(m);
	rc_rpc_free(rpc);
	printf("OK bye\n");
	return 0;
}
