/*
 * morgatectl sessions: list, show and close the gateway's marketplace sessions.
 *
 * The rows are what the gateway's session pool wrote into its key store (ks_session_put, on every
 * state change): model, provider, stake, the on-chain times and the requests served. Strings in
 * them come from the chain (model names, endpoints) and are untrusted: control characters and
 * bytes that are not UTF-8 are shown as '?', in tables and in JSON alike.
 *
 * `close` runs router-core's close procedure (rc_session_close, morpheus-protocol §1.2 (f) and
 * §3.7) with the chain options of the other chain commands (ctl_chain.h), then writes the
 * outcome back with ks_session_put. It is meant for sessions no running gateway is using (a
 * stopped gateway, a stuck session): a running gateway closes its own sessions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_pool.h>

#include "ctl_chain.h"
#include "ctl_msg.h"
#include "ctl_sessions.h"

enum { X_OK = 0, X_USAGE = 2, X_NOTFOUND = 3, X_CONFLICT = 4, X_STORE = 5 };

/* The key store's codes as morgatectl's exit statuses (the same mapping as its other commands). */
static int ks_fail(int rc, const struct ks_err *err)
{
	ctl_say(0, "%s", err && err->msg[0] ? err->msg : ks_strerror(rc));
	switch (rc) {
	case KS_EINVAL: return X_USAGE;
	case KS_ENOTFOUND:
	case KS_ENOSTORE: return X_NOTFOUND;
	case KS_ECONFLICT: return X_CONFLICT;
	default: return X_STORE;
	}
}

static int open_store(const struct ks_options *ko, struct ks_store **ks)
{
	struct ks_options o = *ko;
	o.flags |= KS_OPEN_NO_LAST_USED;
	o.readers = 1;
	struct ks_err err = {{0}};
	int rc = ks_open(&o, ks, &err);
	return rc == KS_OK ? X_OK : ks_fail(rc, &err);
}

/* ---- formatting ------------------------------------------------------------------------------ */

/* Untrusted text for a terminal or JSON: valid UTF-8 without C0/C1 controls or DEL; anything
 * else becomes '?'. out has room for len + 1 bytes. */
static void clean_text(const char *s, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;
	for (size_t i = 0; i < n && o + 1 < cap;) {
		unsigned c = p[i];
		size_t len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3
					: (c >= 0xf0 && c <= 0xf4)   ? 4
								     : 0;
		int ok = len > 0 && i + len <= n;
		unsigned cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
		for (size_t k = 1; ok && k < len; k++) {
			ok = (p[i + k] & 0xc0) == 0x80;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (ok)
			ok = !(cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (len == 3 && cp < 0x800) ||
			       (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
			       (cp >= 0xd800 && cp <= 0xdfff));
		if (!ok || o + len >= cap) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, p + i, len);
		o += len;
		i += len;
	}
	out[o] = '\0';
}

/* Wei (decimal text) as MOR with up to `decimals` decimals, truncated: "12.5", "0.000001", "0". */
static void fmt_mor(const char *wei, char *out, size_t cap, int decimals)
{
	size_t n = strlen(wei);
	while (n > 1 && *wei == '0')
		wei++, n--;
	if (n == 0) {
		snprintf(out, cap, "-");
		return;
	}
	char digits[100];
	if (n > 78) {
		snprintf(out, cap, "?");
		return;
	}
	/* left-pad to at least 19 digits so there is always one before the point */
	size_t pad = n < 19 ? 19 - n : 0;
	memset(digits, '0', pad);
	memcpy(digits + pad, wei, n);
	size_t total = pad + n, ip = total - 18;
	char frac[19];
	memcpy(frac, digits + ip, 18);
	frac[decimals] = '\0';
	for (int k = decimals - 1; k >= 0 && frac[k] == '0'; k--)
		frac[k] = '\0';
	snprintf(out, cap, "%.*s%s%s", (int)ip, digits, frac[0] ? "." : "", frac);
}

/* The local id as the pool draws it: an unsigned 64-bit number (stored as int64 bits). */
static void fmt_local(int64_t id, char buf[24])
{
	snprintf(buf, 24, "%llu", (unsigned long long)(uint64_t)id);
}

static void fmt_time(int64_t t, char buf[32])
{
	ks_format_time(t, buf);
}

static json_t *j_time(int64_t t)
{
	char b[32];
	if (!t)
		return json_null();
	fmt_time(t, b);
	return json_string(b);
}

static json_t *j_opt(const char *s)
{
	return *s ? json_string(s) : json_null();
}

static json_t *session_json(const struct ks_session *s)
{
	char local[24], model[sizeof s->model], endpoint[sizeof s->endpoint], mor[100], upd[40];
	fmt_local(s->local_id, local);
	clean_text(s->model, model, sizeof model);
	clean_text(s->endpoint, endpoint, sizeof endpoint);
	fmt_mor(s->stake, mor, sizeof mor, 18);
	time_t ut = (time_t)(s->updated_at / 1000);
	struct tm tm;
	gmtime_r(&ut, &tm);
	char secs[24];
	strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(upd, sizeof upd, "%.19s.%03dZ", secs, (int)(s->updated_at % 1000));
	json_t *j = json_object();
	json_object_set_new(j, "local_id", json_string(local));
	json_object_set_new(j, "id", j_opt(s->id));
	json_object_set_new(j, "model", json_string(model));
	json_object_set_new(j, "model_id", j_opt(s->model_id));
	json_object_set_new(j, "bid_id", j_opt(s->bid_id));
	json_object_set_new(j, "provider", j_opt(s->provider));
	json_object_set_new(j, "endpoint", j_opt(endpoint));
	json_object_set_new(j, "provider_key", j_opt(s->provider_key));
	json_object_set_new(j, "stake_wei", j_opt(s->stake));
	json_object_set_new(j, "stake_mor", s->stake[0] ? json_string(mor) : json_null());
	json_object_set_new(j, "price_wei_per_second", j_opt(s->price));
	json_object_set_new(j, "opened_at", j_time(s->opened_at));
	json_object_set_new(j, "ends_at", j_time(s->ends_at));
	json_object_set_new(j, "closed_at", j_time(s->closed_at));
	json_object_set_new(j, "state", json_string(s->state));
	json_object_set_new(j, "dispute", json_boolean(s->dispute));
	json_object_set_new(j, "requests", json_integer(s->requests));
	json_object_set_new(j, "failures", json_integer(s->failures));
	json_object_set_new(j, "open_tx", j_opt(s->open_tx));
	json_object_set_new(j, "close_tx", j_opt(s->close_tx));
	json_object_set_new(j, "updated_at", s->updated_at ? json_string(upd) : json_null());
	return j;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_SORT_KEYS);
	if (s)
		puts(s);
	free(s);
	json_decref(j);
}

static void kv(const char *k, const char *v)
{
	printf("%-16s %s\n", k, v && *v ? v : "-");
}

static void show_text(const struct ks_session *s)
{
	char b[300], t[32];
	fmt_local(s->local_id, b);
	kv("session", s->id[0] ? s->id : "- (not on chain yet)");
	kv("local id", b);
	clean_text(s->model, b, sizeof b);
	kv("model", b);
	kv("model id", s->model_id);
	kv("bid", s->bid_id);
	kv("provider", s->provider);
	clean_text(s->endpoint, b, sizeof b);
	kv("endpoint", b);
	kv("provider key", s->provider_key);
	char mor[100];
	fmt_mor(s->stake, mor, sizeof mor, 18);
	snprintf(b, sizeof b, "%s MOR (%s wei)", mor, s->stake);
	kv("stake", s->stake[0] ? b : "");
	snprintf(b, sizeof b, "%s wei per second", s->price);
	kv("price", s->price[0] ? b : "");
	fmt_time(s->opened_at, t);
	kv("opened", t);
	fmt_time(s->ends_at, t);
	kv("ends", t);
	fmt_time(s->closed_at, t);
	kv("closed", t);
	kv("state", s->state);
	if (s->closed_at || s->dispute)
		kv("closeout", s->dispute ? "dispute (user-signed receipt)" : "provider receipt");
	snprintf(b, sizeof b, "%lld served, %lld failed", (long long)s->requests,
		 (long long)s->failures);
	kv("requests", b);
	kv("open tx", s->open_tx);
	kv("close tx", s->close_tx);
	fmt_time(s->updated_at / 1000, t);
	kv("updated", t);
}

/* A small table: rows of cells, columns padded to the widest. */
#define NCOLS 8
struct table {
	size_t n, cap;
	char *(*rows)[NCOLS];
};

static void table_add(struct table *t, const char *const *cols)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->rows = realloc(t->rows, t->cap * sizeof *t->rows);
		if (!t->rows)
			abort();
	}
	for (int c = 0; c < NCOLS; c++)
		if (!(t->rows[t->n][c] = strdup(cols[c])))
			abort();
	t->n++;
}

static void table_print(struct table *t)
{
	size_t w[NCOLS] = {0};
	for (size_t r = 0; r < t->n; r++)
		for (int c = 0; c < NCOLS; c++)
			if (strlen(t->rows[r][c]) > w[c])
				w[c] = strlen(t->rows[r][c]);
	for (size_t r = 0; r < t->n; r++) {
		for (int c = 0; c < NCOLS; c++) {
			if (c + 1 < NCOLS)
				printf("%-*s  ", (int)w[c], t->rows[r][c]);
			else
				fputs(t->rows[r][c], stdout);
			free(t->rows[r][c]);
		}
		putchar('\n');
	}
	free(t->rows);
}

static void session_row(struct table *t, const struct ks_session *s)
{
	char id[24], model[40], provider[16], mor[40], opened[32], ends[32], req[24];
	/* 0x and 8 hex digits: enough for `sessions show`; a session still opening has no id yet,
	 * so its local id (which `show` takes too) stands in. */
	if (s->id[0])
		snprintf(id, sizeof id, "%.10s", s->id);
	else
		fmt_local(s->local_id, id);
	char m[sizeof s->model];
	clean_text(s->model, m, sizeof m);
	size_t ml = strlen(m);
	if (ml < sizeof model) {
		memcpy(model, m, ml + 1);
	} else { /* cut on a character boundary, and say so */
		ml = sizeof model - 4;
		while (ml && ((unsigned char)m[ml] & 0xc0) == 0x80)
			ml--;
		memcpy(model, m, ml);
		memcpy(model + ml, "...", 4);
	}
	if (s->provider[0])
		snprintf(provider, sizeof provider, "%.6s...%s", s->provider, s->provider + 38);
	else
		snprintf(provider, sizeof provider, "-");
	fmt_mor(s->stake, mor, sizeof mor, 6);
	fmt_time(s->opened_at, opened);
	fmt_time(s->ends_at, ends);
	snprintf(req, sizeof req, "%lld", (long long)s->requests);
	const char *cols[NCOLS] = {id, model, provider, s->state, mor, opened, ends, req};
	table_add(t, cols);
}

struct list_ctx {
	json_t *arr;
	struct table tb;
};

static int list_cb(void *ctx, const struct ks_session *s)
{
	struct list_ctx *l = ctx;
	if (l->arr)
		json_array_append_new(l->arr, session_json(s));
	else
		session_row(&l->tb, s);
	return 0;
}

/* ---- arguments ------------------------------------------------------------------------------- */

/* Split "--name value" / "--name=value"; returns the value or NULL when arg is not --name. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *bad)
{
	const char *s = argv[*i];
	size_t n = strlen(name);
	if (strncmp(s, "--", 2) != 0 || strncmp(s + 2, name, n) != 0)
		return NULL;
	if (s[2 + n] == '=')
		return s + 3 + n;
	if (s[2 + n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*bad = ctl_usage("option '--%s' needs a value", name);
		return NULL;
	}
	return argv[++*i];
}

static int cmd_list(const struct ks_options *ko, int argc, char **argv, int json)
{
	const char *state = NULL;
	for (int i = 0; i < argc; i++) {
		int bad = 0;
		const char *v = opt_value(argc, argv, &i, "state", &bad);
		if (bad)
			return bad;
		if (!v)
			return ctl_usage("unexpected argument '%s' for sessions list", argv[i]);
		if (state)
			return ctl_usage("option '--state' given twice");
		state = v;
	}
	struct ks_store *ks = NULL;
	int x = open_store(ko, &ks);
	if (x != X_OK)
		return x;
	struct list_ctx lc = {json ? json_array() : NULL, {0}};
	static const char *const head[NCOLS] = {"ID",    "MODEL",  "PROVIDER", "STATE",
						"STAKE_MOR", "OPENED", "ENDS", "REQUESTS"};
	if (!json)
		table_add(&lc.tb, head);
	struct ks_err err = {{0}};
	int rc = ks_session_list(ks, state, list_cb, &lc, &err);
	if (rc != KS_OK) {
		json_decref(lc.arr);
		for (size_t r = 0; r < lc.tb.n; r++)
			for (int c = 0; c < NCOLS; c++)
				free(lc.tb.rows[r][c]);
		free(lc.tb.rows);
		ks_close(ks);
		return ks_fail(rc, &err);
	}
	if (json)
		print_json(lc.arr);
	else
		table_print(&lc.tb);
	ks_close(ks);
	return X_OK;
}

static int cmd_show(const struct ks_options *ko, int argc, char **argv, int json)
{
	if (argc != 1 || argv[0][0] == '-')
		return ctl_usage(argc > 1 ? "sessions show takes one session ID"
				      : "sessions show needs a session ID (0x... or the local id)");
	struct ks_store *ks = NULL;
	int x = open_store(ko, &ks);
	if (x != X_OK)
		return x;
	struct ks_session s;
	struct ks_err err = {{0}};
	int rc = ks_session_get(ks, argv[0], &s, &err);
	ks_close(ks);
	if (rc != KS_OK)
		return ks_fail(rc, &err);
	if (json)
		print_json(session_json(&s));
	else
		show_text(&s);
	return X_OK;
}

/* ---- close ----------------------------------------------------------------------------------- */

static int hex_field(const char *name, const char *s, uint8_t *out, size_t n)
{
	memset(out, 0, n);
	if (!*s)
		return X_OK;
	if (rc_hex_decode_exact(s, strlen(s), out, n, NULL) != RC_OK)
		return ctl_say(X_STORE, "the stored session's %s '%.80s' is not %zu bytes of hex", name, s, n);
	return X_OK;
}

static int u256_field(const char *name, const char *s, struct rc_u256 *out)
{
	memset(out, 0, sizeof *out);
	if (*s && rc_u256_parse_dec(out, s, strlen(s), NULL) != RC_OK)
		return ctl_say(X_STORE, "the stored session's %s '%.80s' is not an amount", name, s);
	return X_OK;
}

/* The store's text record as the pool's record (the form rc_session_close works on). */
static int to_pool(const struct ks_session *s, struct rc_pool_session *p)
{
	memset(p, 0, sizeof *p);
	p->local_id = (uint64_t)s->local_id;
	/* the pool's fields are one byte shorter than the store's; what it wrote always fits */
	size_t n = strnlen(s->model, sizeof p->model - 1);
	memcpy(p->model, s->model, n);
	n = strnlen(s->endpoint, sizeof p->endpoint - 1);
	memcpy(p->endpoint, s->endpoint, n);
	int x;
	if ((x = hex_field("id", s->id, p->id, 32)) != X_OK ||
	    (x = hex_field("model id", s->model_id, p->model_id, 32)) != X_OK ||
	    (x = hex_field("bid id", s->bid_id, p->bid_id, 32)) != X_OK ||
	    (x = hex_field("provider", s->provider, p->provider, 20)) != X_OK ||
	    (x = hex_field("provider key", s->provider_key, p->provider_key,
			   sizeof p->provider_key)) != X_OK ||
	    (x = hex_field("open tx", s->open_tx, p->open_tx, 32)) != X_OK ||
	    (x = hex_field("close tx", s->close_tx, p->close_tx, 32)) != X_OK ||
	    (x = u256_field("stake", s->stake, &p->stake)) != X_OK ||
	    (x = u256_field("price", s->price, &p->price_per_second)) != X_OK)
		return x;
	p->opened_at = (uint64_t)s->opened_at;
	p->ends_at = (uint64_t)s->ends_at;
	p->closed_at = (uint64_t)s->closed_at;
	p->state = RC_POOL_S_OPEN;
	for (int st = RC_POOL_S_OPENING; st <= RC_POOL_S_FAILED; st++)
		if (!strcmp(rc_pool_state_name((enum rc_pool_state)st), s->state))
			p->state = (enum rc_pool_state)st;
	p->dispute = s->dispute != 0;
	p->requests = (uint64_t)s->requests;
	p->failures = (uint64_t)s->failures;
	p->updated_ms = s->updated_at;
	return X_OK;
}

static int all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* What rc_session_close changed, back into the store's record. */
static void from_pool(const struct rc_pool_session *p, struct ks_session *s)
{
	snprintf(s->state, sizeof s->state, "%s", rc_pool_state_name(p->state));
	if (p->opened_at) /* the chain's figures, read by the close */
		s->opened_at = (int64_t)p->opened_at;
	if (p->ends_at)
		s->ends_at = (int64_t)p->ends_at;
	if (!s->provider_key[0] && !all_zero(p->provider_key, sizeof p->provider_key))
		rc_hex_encode_0x(p->provider_key, sizeof p->provider_key, s->provider_key,
				 sizeof s->provider_key);
	s->closed_at = (int64_t)p->closed_at;
	s->dispute = p->dispute;
	if (!all_zero(p->close_tx, 32))
		rc_hex_encode_0x(p->close_tx, 32, s->close_tx, sizeof s->close_tx);
	s->updated_at = 0; /* now */
}

static int cmd_close(const struct ks_options *ko, int argc, char **argv, int json)
{
	if (argc < 1 || argv[0][0] == '-')
		return ctl_usage("sessions close needs a session ID first (0x... or the local id)");
	const char *id = argv[0];
	/* --dispute-ok is ours; the rest are the chain options, parsed as the chain commands do */
	char **rest = calloc((size_t)argc, sizeof *rest);
	if (!rest)
		abort();
	int nrest = 0, dispute_ok = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dispute-ok")) {
			if (dispute_ok) {
				free(rest);
				return ctl_usage("option '--dispute-ok' given twice");
			}
			dispute_ok = 1;
		} else {
			rest[nrest++] = argv[i];
		}
	}

	struct ks_store *ks = NULL;
	struct ctl_chain_conn conn;
	memset(&conn, 0, sizeof conn);
	struct ks_session s;
	struct ks_err err = {{0}};
	int x = open_store(ko, &ks), rc;
	if (x != X_OK)
		goto out;
	if ((rc = ks_session_get(ks, id, &s, &err)) != KS_OK) {
		x = ks_fail(rc, &err);
		goto out;
	}
	if (!s.id[0] || !strcmp(s.state, "failed")) {
		x = ctl_say(X_CONFLICT, "session %s is %s: it has no session on chain to close",
			s.id[0] ? s.id : id, s.state);
		goto out;
	}
	if (!strcmp(s.state, "closed")) {
		x = ctl_say(X_CONFLICT, "session %s is closed already", s.id);
		goto out;
	}
	struct rc_pool_session ps;
	if ((x = to_pool(&s, &ps)) != X_OK)
		goto out;
	if ((x = ctl_chain_connect(nrest, rest, &conn)) != X_OK)
		goto out;
	if (conn.npos) {
		x = ctl_usage("unexpected argument '%s'", conn.pos[0]);
		goto out;
	}
	/* the provider has 15 s to answer session.report before it counts as gone */
	struct rc_link_opts lo = {.dial_timeout_ms = 3000, .first_timeout_ms = 15000,
				  .idle_timeout_ms = 15000};
	struct rc_pool_err perr;
	memset(&perr, 0, sizeof perr);
	rc = rc_session_close(conn.market, conn.txm, &conn.key, &lo, &ps, dispute_ok, &perr);

	/* Whatever happened, record what is known now (a close sent but not confirmed included). */
	from_pool(&ps, &s);
	int prc = ks_session_put(ks, &s, &err);
	if (rc != RC_OK) {
		int gone = perr.reason == RC_POOL_NO_PROVIDER || perr.reason == RC_POOL_PROVIDER ||
			   perr.reason == RC_POOL_TIMEOUT;
		x = ctl_say(rc == RC_EREVERT ? X_CONFLICT : rc == RC_ENOTFOUND ? X_NOTFOUND : CTL_EXIT_CHAIN,
			"cannot close session %s: %s%s", s.id,
			perr.text[0] ? perr.text : rc_strerror(rc),
			gone && !dispute_ok ? " (the provider gave no receipt; --dispute-ok closes "
					      "with a user-signed one)"
					    : "");
		goto out;
	}
	if (prc != KS_OK) {
		x = ctl_say(X_STORE, "session %s was closed on chain, but the key store was not updated: %s",
			s.id, err.msg);
		goto out;
	}
	if (json) {
		print_json(session_json(&s));
	} else {
		char t[32];
		fmt_time(s.closed_at, t);
		printf("closed session %s at %s (%s)%s%s\n", s.id, t,
		       s.dispute ? "dispute: user-signed receipt" : "provider receipt",
		       s.close_tx[0] ? " in transaction " : "", s.close_tx);
	}
	x = X_OK;
out:
	ctl_chain_disconnect(&conn);
	ks_close(ks);
	free(rest);
	return x;
}

int ctl_sessions_main(const struct ks_options *ko, int argc, char **argv, int json)
{
	if (argc < 1)
		return ctl_usage("sessions needs a subcommand: list, show, close");
	const char *sub = argv[0];
	if (!strcmp(sub, "list"))
		return cmd_list(ko, argc - 1, argv + 1, json);
	if (!strcmp(sub, "show"))
		return cmd_show(ko, argc - 1, argv + 1, json);
	if (!strcmp(sub, "close"))
		return cmd_close(ko, argc - 1, argv + 1, json);
	return ctl_usage("unknown sessions subcommand '%s'", sub);
}
