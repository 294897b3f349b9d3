/*
 * Morpheus marketplace bindings: calldata with rc_abi_encode_call, return data with rc_abi_decode
 * against the §3.3 layouts, views batched where a caller needs many (discovery, listings).
 *
 * Return data is untrusted (an RPC node can send anything): rc_abi_decode bounds-checks it, and
 * the struct readers below check the shape of the decoded tree again before copying, so a wrong
 * contract or a lying node gives RC_EPROTO, never a crash.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_addr.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_market.h>
#include <router-core/rc_morpheus.h>

#define PAGE 255      /* ids per page, as the reference node asks (§1.2 a) */
#define BATCH_MAX 256 /* calls per JSON-RPC batch */

/* §3.4 topic0 values. */
static const char TOPIC_SESSION_OPENED[] =
        "2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839";
static const char TOPIC_SESSION_CLOSED[] =
        "337fbb0a41a596db800dc836595a57815f967185e3596615c646f2455ac3914a";
static const char TOPIC_BID_POSTED[] =
        "fc422bb61cd73bc76f27eecf69cce3db0b05d39769ca3ed0fb314a3d04bff6f6";

#define SD_T "(int64,int64)"
#define PM_STATS_T "((" SD_T "," SD_T ",uint32,uint32,uint32))"
#define MODEL_STATS_T "((" SD_T "," SD_T "," SD_T ",uint32))"
#define IDS_T "(bytes32[],uint256)"

struct pending {
	uint8_t addr[20];
	struct rc_u256 amount; /* MOR that sent, unmined writes of this wallet will take */
};

struct rc_market {
	struct rc_rpc *rpc;
	uint8_t diamond[20], mor[20];
	pthread_mutex_t allowance_mu; /* guards pending[] and serializes top-up approvals */
	struct pending *pending;
	size_t npending;
};

int rc_market_new(struct rc_rpc *rpc, const uint8_t diamond[20], const uint8_t mor[20],
                  struct rc_market **out)
{
	*out = NULL;
	struct rc_market *m = calloc(1, sizeof *m);
	if (!m)
		return RC_ENOMEM;
	m->rpc = rpc;
	memcpy(m->diamond, diamond, 20);
	memcpy(m->mor, mor, 20);
	pthread_mutex_init(&m->allowance_mu, NULL);
	*out = m;
	return RC_OK;
}

void rc_market_free(struct rc_market *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->allowance_mu);
	free(m->pending);
	free(m);
}

struct rc_rpc *rc_market_rpc(const struct rc_market *m)
{
	return m->rpc;
}

static void err_msg(struct rc_rpc_error *err, int rc, const char *what)
{
	if (!err)
		return;
	err->rc = rc;
	snprintf(err->message, sizeof err->message, "%s", what);
}

/* ---- decoding helpers ------------------------------------------------------------------------ */

static const struct rc_abi_value *item(const struct rc_abi_value *t, size_t i,
                                       enum rc_abi_kind kind)
{
	if (!t ||
	    (t->kind != RC_ABI_TUPLE && t->kind != RC_ABI_ARRAY && t->kind != RC_ABI_FIXED_ARRAY) ||
	    i >= t->u.list.count)
		return NULL;
	const struct rc_abi_value *v = &t->u.list.items[i];
	return v->kind == kind ? v : NULL;
}

static bool get_u256(const struct rc_abi_value *t, size_t i, struct rc_u256 *out)
{
	const struct rc_abi_value *v = item(t, i, RC_ABI_UINT);
	return v && rc_abi_get_u256(v, out) == RC_OK;
}

/* uint128/uint32 fields as 64 bits, saturating (a timestamp past 2^64 is not a real one). */
static bool get_u64(const struct rc_abi_value *t, size_t i, uint64_t *out)
{
	struct rc_u256 u;
	if (!get_u256(t, i, &u))
		return false;
	if (rc_u256_to_u64(&u, out) != RC_OK)
		*out = UINT64_MAX;
	return true;
}

static bool get_word(const struct rc_abi_value *t, size_t i, enum rc_abi_kind kind, uint8_t out[32])
{
	const struct rc_abi_value *v = item(t, i, kind);
	if (!v)
		return false;
	memcpy(out, v->u.word, 32);
	return true;
}

static bool get_addr(const struct rc_abi_value *t, size_t i, uint8_t out[20])
{
	const struct rc_abi_value *v = item(t, i, RC_ABI_ADDRESS);
	return v && rc_abi_get_address(v, out) == RC_OK;
}

static bool get_bool(const struct rc_abi_value *t, size_t i, bool *out)
{
	const struct rc_abi_value *v = item(t, i, RC_ABI_BOOL);
	return v && rc_abi_get_bool(v, out) == RC_OK;
}

static bool get_int(const struct rc_abi_value *t, size_t i, int64_t *out)
{
	const struct rc_abi_value *v = item(t, i, RC_ABI_INT);
	return v && rc_abi_get_int(v, out) == RC_OK;
}

/* Copy a string value into a fixed field; returns false if the kind is wrong. */
static bool get_str(const struct rc_abi_value *v, char *out, size_t cap, bool *truncated)
{
	if (!v || v->kind != RC_ABI_STRING)
		return false;
	size_t n = v->u.bytes.len;
	if (n >= cap) {
		n = cap - 1;
		*truncated = true;
	}
	memcpy(out, v->u.bytes.ptr, n);
	out[n] = '\0';
	return true;
}

static bool get_sd(const struct rc_abi_value *t, size_t i, struct rc_sd *out)
{
	const struct rc_abi_value *sd = item(t, i, RC_ABI_TUPLE);
	return sd && get_int(sd, 0, &out->mean) && get_int(sd, 1, &out->sq_sum);
}

/* The one struct inside a getter's return tuple. */
static const struct rc_abi_value *root_struct(const struct rc_abi_value *v)
{
	return item(v, 0, RC_ABI_TUPLE);
}

static int bid_from(const struct rc_abi_value *v, struct rc_bid *b)
{
	const struct rc_abi_value *s = root_struct(v);
	uint8_t w[32];
	if (!s || !get_addr(s, 0, b->provider) || !get_word(s, 1, RC_ABI_FIXED_BYTES, w) ||
	    !get_u256(s, 2, &b->price_per_second) || !get_u256(s, 3, &b->nonce) ||
	    !get_u64(s, 4, &b->created_at) || !get_u64(s, 5, &b->deleted_at))
		return RC_EPROTO;
	memcpy(b->model_id, w, 32);
	return RC_OK;
}

static int provider_from(const struct rc_abi_value *v, struct rc_provider *p)
{
	const struct rc_abi_value *s = root_struct(v);
	if (!s ||
	    !get_str(item(s, 0, RC_ABI_STRING), p->endpoint, sizeof p->endpoint,
	             &p->endpoint_truncated) ||
	    !get_u256(s, 1, &p->stake) || !get_u64(s, 2, &p->created_at) ||
	    !get_u64(s, 3, &p->limit_period_end) || !get_u256(s, 4, &p->limit_period_earned) ||
	    !get_bool(s, 5, &p->is_deleted))
		return RC_EPROTO;
	return RC_OK;
}

static int model_from(const struct rc_abi_value *v, struct rc_model *md)
{
	const struct rc_abi_value *s = root_struct(v);
	if (!s || !get_word(s, 0, RC_ABI_FIXED_BYTES, md->ipfs_cid) || !get_u256(s, 1, &md->fee) ||
	    !get_u256(s, 2, &md->stake) || !get_addr(s, 3, md->owner) ||
	    !get_str(item(s, 4, RC_ABI_STRING), md->name, sizeof md->name, &md->truncated) ||
	    !get_u64(s, 6, &md->created_at) || !get_bool(s, 7, &md->is_deleted))
		return RC_EPROTO;
	const struct rc_abi_value *tags = item(s, 5, RC_ABI_ARRAY);
	if (!tags)
		return RC_EPROTO;
	md->ntags = 0;
	for (size_t i = 0; i < tags->u.list.count; i++) {
		if (md->ntags == RC_MARKET_MAX_TAGS) {
			md->truncated = true;
			break;
		}
		if (!get_str(item(tags, i, RC_ABI_STRING), md->tags[md->ntags], sizeof md->tags[0],
		             &md->truncated))
			return RC_EPROTO;
		md->ntags++;
	}
	return RC_OK;
}

static int session_from(const struct rc_abi_value *v, struct rc_session_info *si)
{
	const struct rc_abi_value *s = root_struct(v);
	const struct rc_abi_value *receipt = item(s, 3, RC_ABI_BYTES);
	if (!s || !receipt || !get_addr(s, 0, si->user) ||
	    !get_word(s, 1, RC_ABI_FIXED_BYTES, si->bid_id) || !get_u256(s, 2, &si->stake) ||
	    !get_u64(s, 4, &si->closeout_type) || !get_u256(s, 5, &si->provider_withdrawn) ||
	    !get_u64(s, 6, &si->opened_at) || !get_u64(s, 7, &si->ends_at) ||
	    !get_u64(s, 8, &si->closed_at) || !get_bool(s, 9, &si->is_active) ||
	    !get_bool(s, 10, &si->is_direct_payment))
		return RC_EPROTO;
	si->closeout_receipt_len = receipt->u.bytes.len;
	/* The Go node's "not found" rule (§3.3). */
	si->found = !(rc_addr_is_zero(si->user) && si->ends_at == 0 && si->opened_at == 0);
	return RC_OK;
}

static int pm_stats_from(const struct rc_abi_value *v, struct rc_provider_model_stats *st)
{
	const struct rc_abi_value *s = root_struct(v);
	uint64_t a, b, c;
	if (!s || !get_sd(s, 0, &st->tps_scaled1000) || !get_sd(s, 1, &st->ttft_ms) ||
	    !get_u64(s, 2, &a) || !get_u64(s, 3, &b) || !get_u64(s, 4, &c))
		return RC_EPROTO;
	st->total_duration = (uint32_t)a;
	st->success_count = (uint32_t)b;
	st->total_count = (uint32_t)c;
	return RC_OK;
}

static int model_stats_from(const struct rc_abi_value *v, struct rc_model_stats *st)
{
	const struct rc_abi_value *s = root_struct(v);
	uint64_t n;
	if (!s || !get_sd(s, 0, &st->tps_scaled1000) || !get_sd(s, 1, &st->ttft_ms) ||
	    !get_sd(s, 2, &st->total_duration) || !get_u64(s, 3, &n))
		return RC_EPROTO;
	st->count = (uint32_t)n;
	return RC_OK;
}

/* (bytes32[] ids, uint256 total): ids appended to *ids (grown with realloc). */
static int ids_from(const struct rc_abi_value *v, uint8_t (**ids)[32], size_t *n, uint64_t *total)
{
	const struct rc_abi_value *arr = item(v, 0, RC_ABI_ARRAY);
	if (!arr || !get_u64(v, 1, total))
		return RC_EPROTO;
	size_t cnt = arr->u.list.count;
	if (!cnt)
		return RC_OK;
	uint8_t(*grown)[32] = realloc(*ids, (*n + cnt) * 32);
	if (!grown)
		return RC_ENOMEM;
	*ids = grown;
	for (size_t i = 0; i < cnt; i++) {
		const struct rc_abi_value *w = &arr->u.list.items[i];
		if (w->kind != RC_ABI_FIXED_BYTES && w->kind != RC_ABI_ADDRESS)
			return RC_EPROTO;
		memcpy(grown[*n + i], w->u.word, 32);
	}
	*n += cnt;
	return RC_OK;
}

/* ---- view calls, single and batched -------------------------------------------------------- */

/* One view call: target, signature, arguments, return type; after the call, the decoded tree
 * (whose strings point into raw) or an error. */
struct vreq {
	const uint8_t *to;
	const char *sig;
	struct rc_abi_value args[3];
	size_t nargs;
	const char *ret;
	struct rc_buf raw;
	struct rc_abi_value *v;
	int rc;
	struct rc_rpc_error err;
};

static void vreq_init(struct vreq *q, const uint8_t *to, const char *sig, const char *ret)
{
	memset(q, 0, sizeof *q);
	q->to = to;
	q->sig = sig;
	q->ret = ret;
}

static void vreqs_release(struct vreq *q, size_t n)
{
	for (size_t i = 0; q && i < n; i++) {
		rc_abi_value_free(q[i].v);
		rc_buf_release(&q[i].raw);
		q[i].v = NULL;
	}
}

static int decode_ret(struct vreq *q)
{
	struct rc_abi_type *t = NULL;
	int rc = rc_abi_type_parse(q->ret, strlen(q->ret), &t, NULL);
	if (rc != RC_OK)
		return rc == RC_ENOMEM ? rc : RC_EINVAL; /* our own type strings: a bug */
	struct rc_errinfo ei;
	rc = rc_abi_decode(t, (const uint8_t *)q->raw.ptr, q->raw.len, 0, &q->v, &ei);
	rc_abi_type_free(t);
	if (rc == RC_EPARSE) {
		q->err.rc = RC_EPROTO;
		snprintf(q->err.message, sizeof q->err.message,
		         "%.60s returned undecodable data (%zu bytes): %.60s at %zu", q->sig,
		         q->raw.len, ei.text, ei.offset);
		rc = RC_EPROTO;
	}
	return rc;
}

static int encode_calldata(struct vreq *q, struct rc_buf *data)
{
	int rc = rc_abi_encode_call((struct rc_str){q->sig, strlen(q->sig)}, q->args, q->nargs,
	                            data, NULL);
	return rc == RC_ENOMEM ? rc : (rc == RC_OK ? RC_OK : RC_EINVAL);
}

static int view1(struct rc_market *m, struct vreq *q, struct rc_rpc_error *err)
{
	struct rc_buf data = RC_BUF_INIT;
	int rc = encode_calldata(q, &data);
	if (rc == RC_OK)
		rc = rc_rpc_eth_call(m->rpc, NULL, q->to, (const uint8_t *)data.ptr, data.len,
		                     &q->raw, &q->err);
	rc_buf_release(&data);
	if (rc == RC_OK)
		rc = decode_ret(q);
	q->rc = rc;
	if (err && rc != RC_OK) {
		*err = q->err;
		err->rc = rc;
	}
	return rc;
}

/* All of q[0..n) in as few round trips as BATCH_MAX allows. Returns the transport error if a
 * batch failed, else RC_OK (each q[i].rc says how its call went). */
static int view_batch(struct rc_market *m, struct vreq *q, size_t n, struct rc_rpc_error *err)
{
	for (size_t off = 0; off < n; off += BATCH_MAX) {
		size_t k = n - off < BATCH_MAX ? n - off : BATCH_MAX;
		struct rc_rpc_req *reqs = calloc(k, sizeof *reqs);
		if (!reqs)
			return RC_ENOMEM;
		int rc = RC_OK;
		for (size_t i = 0; i < k && rc == RC_OK; i++) {
			struct rc_buf data = RC_BUF_INIT;
			rc = encode_calldata(&q[off + i], &data);
			if (rc == RC_OK)
				rc = rc_rpc_req_eth_call(&reqs[i], q[off + i].to,
				                         (const uint8_t *)data.ptr, data.len);
			rc_buf_release(&data);
		}
		if (rc == RC_OK)
			rc = rc_rpc_batch(m->rpc, reqs, k, err);
		for (size_t i = 0; i < k && rc == RC_OK; i++) {
			struct vreq *v = &q[off + i];
			v->rc = reqs[i].rc;
			v->err = reqs[i].err;
			if (v->rc == RC_OK) {
				int brc = rc_rpc_result_bytes(reqs[i].result, &v->raw);
				v->rc = brc == RC_OK ? decode_ret(v)
				                     : (brc == RC_ENOMEM ? brc : RC_EPROTO);
			}
		}
		/* RC_EPROTO for the batch as a whole means some answers were missing; the others
		 * are usable, so it is only fatal when nothing came back at all. */
		if (rc == RC_EPROTO)
			for (size_t i = 0; i < k; i++)
				q[off + i].rc = reqs[i].rc;
		rc_rpc_reqs_release(reqs, k);
		free(reqs);
		if (rc != RC_OK && rc != RC_EPROTO)
			return rc;
	}
	return RC_OK;
}

/* First failure among q[0..n), copied into err. */
static int first_error(const struct vreq *q, size_t n, struct rc_rpc_error *err)
{
	for (size_t i = 0; i < n; i++)
		if (q[i].rc != RC_OK) {
			if (err) {
				*err = q[i].err;
				err->rc = q[i].rc;
			}
			return q[i].rc;
		}
	return RC_OK;
}

/* ---- views --------------------------------------------------------------------------------- */

static int view_ids(struct rc_market *m, const char *sig, struct vreq *q, uint8_t (**ids)[32],
                    size_t *n, uint64_t *total, struct rc_rpc_error *err)
{
	*ids = NULL;
	*n = 0;
	*total = 0;
	int rc = view1(m, q, err);
	if (rc == RC_OK)
		rc = ids_from(q->v, ids, n, total);
	vreqs_release(q, 1);
	if (rc != RC_OK) {
		free(*ids);
		*ids = NULL;
		*n = 0;
		if (rc == RC_EPROTO)
			err_msg(err, rc, "id list reply has the wrong shape");
	}
	return rc;
}

int rc_market_model_active_bids(struct rc_market *m, const uint8_t model_id[32], uint64_t offset,
                                uint64_t limit, uint8_t (**ids)[32], size_t *n, uint64_t *total,
                                struct rc_rpc_error *err)
{
	struct vreq q;
	vreq_init(&q, m->diamond, "getModelActiveBids(bytes32,uint256,uint256)", IDS_T);
	rc_abi_set_fixed_bytes(&q.args[0], model_id, 32);
	rc_abi_set_uint(&q.args[1], offset);
	rc_abi_set_uint(&q.args[2], limit);
	q.nargs = 3;
	return view_ids(m, q.sig, &q, ids, n, total, err);
}

int rc_market_active_model_ids(struct rc_market *m, uint64_t offset, uint64_t limit,
                               uint8_t (**ids)[32], size_t *n, uint64_t *total,
                               struct rc_rpc_error *err)
{
	struct vreq q;
	vreq_init(&q, m->diamond, "getActiveModelIds(uint256,uint256)", IDS_T);
	rc_abi_set_uint(&q.args[0], offset);
	rc_abi_set_uint(&q.args[1], limit);
	q.nargs = 2;
	return view_ids(m, q.sig, &q, ids, n, total, err);
}

int rc_market_user_sessions(struct rc_market *m, const uint8_t user[20], uint64_t offset,
                            uint64_t limit, uint8_t (**ids)[32], size_t *n, uint64_t *total,
                            struct rc_rpc_error *err)
{
	struct vreq q;
	vreq_init(&q, m->diamond, "getUserSessions(address,uint256,uint256)", IDS_T);
	rc_abi_set_address(&q.args[0], user);
	rc_abi_set_uint(&q.args[1], offset);
	rc_abi_set_uint(&q.args[2], limit);
	q.nargs = 3;
	return view_ids(m, q.sig, &q, ids, n, total, err);
}

static void prep_bid(struct rc_market *m, struct vreq *q, const uint8_t id[32])
{
	vreq_init(q, m->diamond, "getBid(bytes32)", "(" RC_MORPHEUS_BID_TYPE ")");
	rc_abi_set_fixed_bytes(&q->args[0], id, 32);
	q->nargs = 1;
}

static void prep_provider(struct rc_market *m, struct vreq *q, const uint8_t addr[20])
{
	vreq_init(q, m->diamond, "getProvider(address)", "(" RC_MORPHEUS_PROVIDER_TYPE ")");
	rc_abi_set_address(&q->args[0], addr);
	q->nargs = 1;
}

static void prep_model(struct rc_market *m, struct vreq *q, const uint8_t id[32])
{
	vreq_init(q, m->diamond, "getModel(bytes32)", "(" RC_MORPHEUS_MODEL_TYPE ")");
	rc_abi_set_fixed_bytes(&q->args[0], id, 32);
	q->nargs = 1;
}

static void prep_model_stats(struct rc_market *m, struct vreq *q, const uint8_t id[32])
{
	vreq_init(q, m->diamond, "getModelStats(bytes32)", MODEL_STATS_T);
	rc_abi_set_fixed_bytes(&q->args[0], id, 32);
	q->nargs = 1;
}

static void prep_pm_stats(struct rc_market *m, struct vreq *q, const uint8_t model[32],
                          const uint8_t provider[20])
{
	vreq_init(q, m->diamond, "getProviderModelStats(bytes32,address)", PM_STATS_T);
	rc_abi_set_fixed_bytes(&q->args[0], model, 32);
	rc_abi_set_address(&q->args[1], provider);
	q->nargs = 2;
}

static void prep_u256(struct vreq *q, const uint8_t *to, const char *sig)
{
	vreq_init(q, to, sig, "(uint256)");
}

static void prep_u256_ts(struct rc_market *m, struct vreq *q, const char *sig, uint64_t ts)
{
	prep_u256(q, m->diamond, sig);
	rc_abi_set_uint(&q->args[0], ts);
	q->nargs = 1;
}

/* Run one prepared view and convert its tree with conv. */
#define VIEW_STRUCT(m, q, conv, out, err)                                                          \
	({                                                                                         \
		int rc_ = view1(m, q, err);                                                        \
		if (rc_ == RC_OK && (rc_ = conv((q)->v, out)) != RC_OK)                            \
			err_msg(err, rc_, "reply has the wrong shape");                            \
		vreqs_release(q, 1);                                                               \
		rc_;                                                                               \
	})

int rc_market_get_bid(struct rc_market *m, const uint8_t id[32], struct rc_bid *out,
                      struct rc_rpc_error *err)
{
	struct vreq q;
	memset(out, 0, sizeof *out);
	prep_bid(m, &q, id);
	memcpy(out->id, id, 32);
	return VIEW_STRUCT(m, &q, bid_from, out, err);
}

int rc_market_get_provider(struct rc_market *m, const uint8_t addr[20], struct rc_provider *out,
                           struct rc_rpc_error *err)
{
	struct vreq q;
	memset(out, 0, sizeof *out);
	memcpy(out->address, addr, 20);
	prep_provider(m, &q, addr);
	return VIEW_STRUCT(m, &q, provider_from, out, err);
}

int rc_market_get_model(struct rc_market *m, const uint8_t id[32], struct rc_model *out,
                        struct rc_rpc_error *err)
{
	struct vreq q;
	memset(out, 0, sizeof *out);
	memcpy(out->id, id, 32);
	prep_model(m, &q, id);
	return VIEW_STRUCT(m, &q, model_from, out, err);
}

int rc_market_get_model_stats(struct rc_market *m, const uint8_t model_id[32],
                              struct rc_model_stats *out, struct rc_rpc_error *err)
{
	struct vreq q;
	memset(out, 0, sizeof *out);
	prep_model_stats(m, &q, model_id);
	return VIEW_STRUCT(m, &q, model_stats_from, out, err);
}

int rc_market_get_provider_model_stats(struct rc_market *m, const uint8_t model_id[32],
                                       const uint8_t provider[20],
                                       struct rc_provider_model_stats *out,
                                       struct rc_rpc_error *err)
{
	struct vreq q;
	memset(out, 0, sizeof *out);
	prep_pm_stats(m, &q, model_id, provider);
	return VIEW_STRUCT(m, &q, pm_stats_from, out, err);
}

int rc_market_get_session(struct rc_market *m, const uint8_t id[32], struct rc_session_info *out,
                          struct rc_rpc_error *err)
{
	struct vreq q;
	memset(out, 0, sizeof *out);
	vreq_init(&q, m->diamond, "getSession(bytes32)", "(" RC_MORPHEUS_SESSION_TYPE ")");
	rc_abi_set_fixed_bytes(&q.args[0], id, 32);
	q.nargs = 1;
	int rc = VIEW_STRUCT(m, &q, session_from, out, err);
	memcpy(out->id, id, 32);
	return rc;
}

static int u256_from(const struct rc_abi_value *v, struct rc_u256 *out)
{
	return get_u256(v, 0, out) ? RC_OK : RC_EPROTO;
}

static int view_u256(struct rc_market *m, struct vreq *q, struct rc_u256 *out,
                     struct rc_rpc_error *err)
{
	rc_u256_from_u64(out, 0);
	return VIEW_STRUCT(m, q, u256_from, out, err);
}

int rc_market_total_mor_supply(struct rc_market *m, uint64_t ts, struct rc_u256 *out,
                               struct rc_rpc_error *err)
{
	struct vreq q;
	prep_u256_ts(m, &q, "totalMORSupply(uint128)", ts);
	return view_u256(m, &q, out, err);
}

int rc_market_todays_budget(struct rc_market *m, uint64_t ts, struct rc_u256 *out,
                            struct rc_rpc_error *err)
{
	struct vreq q;
	prep_u256_ts(m, &q, "getTodaysBudget(uint128)", ts);
	return view_u256(m, &q, out, err);
}

int rc_market_provider_min_stake(struct rc_market *m, struct rc_u256 *out, struct rc_rpc_error *err)
{
	struct vreq q;
	prep_u256(&q, m->diamond, "getProviderMinimumStake()");
	return view_u256(m, &q, out, err);
}

int rc_market_model_min_stake(struct rc_market *m, struct rc_u256 *out, struct rc_rpc_error *err)
{
	struct vreq q;
	prep_u256(&q, m->diamond, "getModelMinimumStake()");
	return view_u256(m, &q, out, err);
}

int rc_market_bid_fee(struct rc_market *m, struct rc_u256 *out, struct rc_rpc_error *err)
{
	struct vreq q;
	prep_u256(&q, m->diamond, "getBidFee()");
	return view_u256(m, &q, out, err);
}

int rc_market_mor_balance(struct rc_market *m, const uint8_t owner[20], struct rc_u256 *out,
                          struct rc_rpc_error *err)
{
	struct vreq q;
	prep_u256(&q, m->mor, "balanceOf(address)");
	rc_abi_set_address(&q.args[0], owner);
	q.nargs = 1;
	return view_u256(m, &q, out, err);
}

int rc_market_mor_allowance(struct rc_market *m, const uint8_t owner[20], const uint8_t spender[20],
                            struct rc_u256 *out, struct rc_rpc_error *err)
{
	struct vreq q;
	prep_u256(&q, m->mor, "allowance(address,address)");
	rc_abi_set_address(&q.args[0], owner);
	rc_abi_set_address(&q.args[1], spender);
	q.nargs = 2;
	return view_u256(m, &q, out, err);
}

static int bytes32_from(const struct rc_abi_value *v, uint8_t *out)
{
	return get_word(v, 0, RC_ABI_FIXED_BYTES, out) ? RC_OK : RC_EPROTO;
}

int rc_market_model_id(struct rc_market *m, const uint8_t owner[20], const uint8_t base_id[32],
                       uint8_t out[32], struct rc_rpc_error *err)
{
	struct vreq q;
	vreq_init(&q, m->diamond, "getModelId(address,bytes32)", "(bytes32)");
	rc_abi_set_address(&q.args[0], owner);
	rc_abi_set_fixed_bytes(&q.args[1], base_id, 32);
	q.nargs = 2;
	return VIEW_STRUCT(m, &q, bytes32_from, out, err);
}

/* ---- stake ----------------------------------------------------------------------------------- */

int rc_market_stake_amount(const struct rc_u256 *supply, const struct rc_u256 *budget,
                           const struct rc_u256 *price_per_second, uint64_t duration_s, bool direct,
                           struct rc_u256 *out)
{
	struct rc_u256 cost;
	if (rc_u256_mul_u64(&cost, price_per_second, duration_s) != RC_OK)
		return RC_ERANGE;
	if (direct) {
		*out = cost;
		return RC_OK;
	}
	struct rc_u256 num;
	if (rc_u256_mul(&num, supply, &cost) != RC_OK)
		return RC_ERANGE;
	return rc_u256_divmod(out, NULL, &num, budget); /* RC_ERANGE when budget is 0 */
}

static uint64_t unix_now(void)
{
	return (uint64_t)time(NULL);
}

int rc_market_session_stake(struct rc_market *m, const struct rc_u256 *price_per_second,
                            uint64_t duration_s, bool direct, uint64_t now, struct rc_u256 *out,
                            struct rc_rpc_error *err)
{
	if (!now)
		now = unix_now();
	struct vreq q[2];
	prep_u256_ts(m, &q[0], "totalMORSupply(uint128)", now);
	prep_u256_ts(m, &q[1], "getTodaysBudget(uint128)", now);
	struct rc_u256 supply, budget;
	int rc = view_batch(m, q, 2, err);
	if (rc == RC_OK)
		rc = first_error(q, 2, err);
	if (rc == RC_OK &&
	    (u256_from(q[0].v, &supply) != RC_OK || u256_from(q[1].v, &budget) != RC_OK))
		rc = RC_EPROTO;
	vreqs_release(q, 2);
	if (rc != RC_OK)
		return rc;
	rc = rc_market_stake_amount(&supply, &budget, price_per_second, duration_s, direct, out);
	if (rc != RC_OK)
		err_msg(err, rc,
		        rc_u256_is_zero(&budget) ? "today's budget is zero" : "stake overflows");
	return rc;
}

/* ---- discovery ------------------------------------------------------------------------------- */

void rc_market_discovery_release(struct rc_market_discovery *d)
{
	if (!d)
		return;
	free(d->offers);
	memset(d, 0, sizeof *d);
}

static void prep_active_bids(struct rc_market *m, struct vreq *q, const uint8_t model[32],
                             uint64_t offset)
{
	vreq_init(q, m->diamond, "getModelActiveBids(bytes32,uint256,uint256)", IDS_T);
	rc_abi_set_fixed_bytes(&q->args[0], model, 32);
	rc_abi_set_uint(&q->args[1], offset);
	rc_abi_set_uint(&q->args[2], PAGE);
	q->nargs = 3;
}

int rc_market_discover(struct rc_market *m, const uint8_t model_id[32], uint64_t now,
                       struct rc_market_discovery *out, struct rc_rpc_error *err)
{
	memset(out, 0, sizeof *out);
	if (!now)
		now = unix_now();
	uint64_t rt0 = rc_rpc_round_trips(m->rpc);
	uint8_t(*ids)[32] = NULL;
	size_t nids = 0;
	struct vreq *q = NULL;
	size_t nq = 0;
	int rc;

	/* Round trip 1: the model-level reads and the first page of bid ids. */
	struct vreq first[6];
	prep_active_bids(m, &first[0], model_id, 0);
	prep_model(m, &first[1], model_id);
	prep_model_stats(m, &first[2], model_id);
	prep_u256_ts(m, &first[3], "totalMORSupply(uint128)", now);
	prep_u256_ts(m, &first[4], "getTodaysBudget(uint128)", now);
	prep_u256(&first[5], m->diamond, "getProviderMinimumStake()");
	rc = view_batch(m, first, 6, err);
	if (rc == RC_OK)
		rc = first_error(first, 6, err);
	if (rc == RC_OK)
		rc = ids_from(first[0].v, &ids, &nids, &out->total_bids);
	memcpy(out->model.id, model_id, 32);
	if (rc == RC_OK && (model_from(first[1].v, &out->model) != RC_OK ||
	                    model_stats_from(first[2].v, &out->model_stats) != RC_OK ||
	                    u256_from(first[3].v, &out->total_supply) != RC_OK ||
	                    u256_from(first[4].v, &out->todays_budget) != RC_OK ||
	                    u256_from(first[5].v, &out->provider_min_stake) != RC_OK))
		rc = RC_EPROTO;
	vreqs_release(first, 6);
	if (rc != RC_OK)
		goto out;

	/* Further pages of ids, all in one more round trip. */
	if (out->total_bids > nids && nids == PAGE) {
		uint64_t more = (out->total_bids - PAGE + PAGE - 1) / PAGE;
		if (more > 1000) { /* 255k bids: a lying node, not a market */
			rc = RC_EPROTO;
			goto out;
		}
		nq = (size_t)more;
		q = calloc(nq, sizeof *q);
		if (!q) {
			rc = RC_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < nq; i++)
			prep_active_bids(m, &q[i], model_id, PAGE * (i + 1));
		rc = view_batch(m, q, nq, err);
		if (rc == RC_OK)
			rc = first_error(q, nq, err);
		for (size_t i = 0; i < nq && rc == RC_OK; i++) {
			uint64_t t;
			rc = ids_from(q[i].v, &ids, &nids, &t);
		}
		vreqs_release(q, nq);
		free(q);
		q = NULL;
		if (rc != RC_OK)
			goto out;
	}
	if (!nids)
		goto out;

	/* Round trip 2: every bid. */
	out->offers = calloc(nids, sizeof *out->offers);
	q = calloc(nids * 2, sizeof *q);
	if (!out->offers || !q) {
		rc = RC_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nids; i++)
		prep_bid(m, &q[i], ids[i]);
	rc = view_batch(m, q, nids, err);
	if (rc == RC_OK)
		rc = first_error(q, nids, err);
	for (size_t i = 0; i < nids && rc == RC_OK; i++) {
		memcpy(out->offers[i].bid.id, ids[i], 32);
		rc = bid_from(q[i].v, &out->offers[i].bid);
	}
	vreqs_release(q, nids);
	if (rc != RC_OK)
		goto out;
	out->noffers = nids;

	/* Round trip 3: each distinct provider and its stats for this model. */
	size_t *slot = calloc(nids, sizeof *slot);
	if (!slot) {
		rc = RC_ENOMEM;
		goto out;
	}
	size_t np = 0;
	for (size_t i = 0; i < nids; i++) {
		size_t j = 0;
		while (j < i &&
		       memcmp(out->offers[j].bid.provider, out->offers[i].bid.provider, 20) != 0)
			j++;
		if (j < i) {
			slot[i] = slot[j];
			continue;
		}
		slot[i] = np;
		prep_provider(m, &q[2 * np], out->offers[i].bid.provider);
		prep_pm_stats(m, &q[2 * np + 1], model_id, out->offers[i].bid.provider);
		np++;
	}
	rc = view_batch(m, q, 2 * np, err);
	if (rc == RC_OK)
		rc = first_error(q, 2 * np, err);
	for (size_t i = 0; i < nids && rc == RC_OK; i++) {
		struct rc_market_offer *o = &out->offers[i];
		memcpy(o->provider.address, o->bid.provider, 20);
		if (provider_from(q[2 * slot[i]].v, &o->provider) != RC_OK ||
		    pm_stats_from(q[2 * slot[i] + 1].v, &o->stats) != RC_OK)
			rc = RC_EPROTO;
	}
	vreqs_release(q, 2 * np);
	free(slot);
out:
	free(q);
	free(ids);
	out->round_trips = rc_rpc_round_trips(m->rpc) - rt0;
	if (rc != RC_OK) {
		if (rc == RC_EPROTO && err && !err->message[0])
			err_msg(err, rc, "discovery: a reply has the wrong shape");
		free(out->offers);
		out->offers = NULL;
		out->noffers = 0;
	}
	return rc;
}

int rc_market_list_models(struct rc_market *m, struct rc_model **models, size_t *n,
                          struct rc_rpc_error *err)
{
	*models = NULL;
	*n = 0;
	uint8_t(*ids)[32] = NULL;
	size_t nids = 0;
	uint64_t total = 0;
	int rc = RC_OK;
	/* Page through ids; each page is one round trip (the total is unknown before the first). */
	for (uint64_t off = 0; rc == RC_OK; off += PAGE) {
		struct vreq q;
		vreq_init(&q, m->diamond, "getActiveModelIds(uint256,uint256)", IDS_T);
		rc_abi_set_uint(&q.args[0], off);
		rc_abi_set_uint(&q.args[1], PAGE);
		q.nargs = 2;
		size_t before = nids;
		rc = view1(m, &q, err);
		if (rc == RC_OK)
			rc = ids_from(q.v, &ids, &nids, &total);
		vreqs_release(&q, 1);
		if (nids - before < PAGE || nids >= total || off > 100000)
			break;
	}
	struct vreq *q = NULL;
	struct rc_model *out = NULL;
	if (rc == RC_OK && nids) {
		q = calloc(nids, sizeof *q);
		out = calloc(nids, sizeof *out);
		if (!q || !out)
			rc = RC_ENOMEM;
		for (size_t i = 0; i < nids && rc == RC_OK; i++)
			prep_model(m, &q[i], ids[i]);
		if (rc == RC_OK)
			rc = view_batch(m, q, nids, err);
		if (rc == RC_OK)
			rc = first_error(q, nids, err);
		for (size_t i = 0; i < nids && rc == RC_OK; i++) {
			memcpy(out[i].id, ids[i], 32);
			rc = model_from(q[i].v, &out[i]);
		}
		vreqs_release(q, nids);
	}
	free(q);
	free(ids);
	if (rc != RC_OK) {
		free(out);
		return rc;
	}
	*models = out;
	*n = out ? nids : 0;
	return RC_OK;
}

/* ---- writes -----------------------------------------------------------------------------------
 */

/*
 * Encode, send, wait. extra_gas > 0 adds that much to the estimate: for calls whose cost depends
 * on state that other transactions of the same wallet change between estimation and mining
 * (an approve estimated as nonzero->nonzero but mined after in-flight spends drained the
 * allowance to zero pays 20k more for the storage write).
 */
static int send_call_gas(struct rc_txm *txm, const uint8_t *to, const char *sig,
                         const struct rc_abi_value *args, size_t nargs, uint64_t extra_gas,
                         struct rc_rpc_receipt *r, struct rc_rpc_error *err)
{
	struct rc_buf data = RC_BUF_INIT;
	struct rc_rpc_receipt local;
	if (!r)
		r = &local;
	memset(r, 0, sizeof *r);
	int rc = rc_abi_encode_call((struct rc_str){sig, strlen(sig)}, args, nargs, &data, NULL);
	if (rc != RC_OK) {
		err_msg(err, rc, "cannot encode the call");
		return rc;
	}
	struct rc_txm_call call = {
	        .to = to, .data = (const uint8_t *)data.ptr, .data_len = data.len};
	if (extra_gas) {
		rc = rc_txm_estimate_gas(txm, &call, &call.gas, err);
		call.gas += extra_gas;
	}
	if (rc == RC_OK)
		rc = rc_txm_send_wait(txm, &call, r, err);
	rc_buf_release(&data);
	if (r == &local)
		rc_rpc_receipt_release(&local);
	return rc;
}

static int send_call(struct rc_txm *txm, const uint8_t *to, const char *sig,
                     const struct rc_abi_value *args, size_t nargs, struct rc_rpc_receipt *r,
                     struct rc_rpc_error *err)
{
	return send_call_gas(txm, to, sig, args, nargs, 0, r, err);
}

int rc_market_mor_approve(struct rc_market *m, struct rc_txm *txm, const uint8_t spender[20],
                          const struct rc_u256 *amount, struct rc_rpc_error *err)
{
	struct rc_abi_value a[2];
	rc_abi_set_address(&a[0], spender);
	rc_abi_set_u256(&a[1], amount);
	return send_call_gas(txm, m->mor, "approve(address,uint256)", a, 2, 25000, NULL, err);
}

/*
 * Allowance bookkeeping. allowance() does not see spends that are sent but not yet mined, so
 * concurrent openers from one wallet would each see the same allowance and all but the first
 * transferFrom could fail. Each wallet therefore has a "pending" sum: MOR that writes in flight
 * will take. Under the mutex: free = allowance - pending; if free < amount, approve
 * pending + 3 x amount (the reference keeps 3 x stake, §3.6.2). Between a spend being mined and
 * its release the estimate is low, which only ever approves more, never too little.
 */
static struct pending *pending_slot(struct rc_market *m, const uint8_t addr[20])
{
	for (size_t i = 0; i < m->npending; i++)
		if (memcmp(m->pending[i].addr, addr, 20) == 0)
			return &m->pending[i];
	struct pending *p = realloc(m->pending, (m->npending + 1) * sizeof *p);
	if (!p)
		return NULL;
	m->pending = p;
	p = &m->pending[m->npending++];
	memcpy(p->addr, addr, 20);
	memset(&p->amount, 0, sizeof p->amount);
	return p;
}

static int allowance_take(struct rc_market *m, struct rc_txm *txm, const struct rc_u256 *amount,
                          bool reserve, struct rc_rpc_error *err)
{
	if (rc_u256_is_zero(amount))
		return RC_OK;
	uint8_t me[20];
	rc_txm_address(txm, me);
	pthread_mutex_lock(&m->allowance_mu);
	struct rc_u256 have, need, want;
	struct pending *slot = pending_slot(m, me);
	int rc = slot ? RC_OK : RC_ENOMEM;
	if (rc == RC_OK && rc_u256_add(&need, &slot->amount, amount) != RC_OK)
		rc = RC_ERANGE;
	if (rc == RC_OK)
		rc = rc_market_mor_allowance(m, me, m->diamond, &have, err);
	if (rc == RC_OK && rc_u256_cmp(&have, &need) < 0) {
		struct rc_u256 extra;
		if (rc_u256_mul_u64(&extra, amount, 2) != RC_OK ||
		    rc_u256_add(&want, &need, &extra) != RC_OK)
			want = need;
		rc = rc_market_mor_approve(m, txm, m->diamond, &want, err);
	}
	if (rc == RC_OK && reserve)
		slot->amount = need;
	pthread_mutex_unlock(&m->allowance_mu);
	return rc;
}

static void allowance_release(struct rc_market *m, struct rc_txm *txm, const struct rc_u256 *amount)
{
	if (rc_u256_is_zero(amount))
		return;
	uint8_t me[20];
	rc_txm_address(txm, me);
	pthread_mutex_lock(&m->allowance_mu);
	struct pending *slot = pending_slot(m, me);
	if (slot && rc_u256_sub(&slot->amount, &slot->amount, amount) != RC_OK)
		memset(&slot->amount, 0, sizeof slot->amount);
	pthread_mutex_unlock(&m->allowance_mu);
}

int rc_market_ensure_allowance(struct rc_market *m, struct rc_txm *txm,
                               const struct rc_u256 *amount, struct rc_rpc_error *err)
{
	return allowance_take(m, txm, amount, false, err);
}

int rc_market_provider_register(struct rc_market *m, struct rc_txm *txm, const uint8_t provider[20],
                                const struct rc_u256 *stake, const char *endpoint,
                                struct rc_rpc_error *err)
{
	int rc = allowance_take(m, txm, stake, true, err);
	if (rc != RC_OK)
		return rc;
	struct rc_abi_value a[3];
	rc_abi_set_address(&a[0], provider);
	rc_abi_set_u256(&a[1], stake);
	rc_abi_set_string(&a[2], endpoint, strlen(endpoint));
	rc = send_call(txm, m->diamond, "providerRegister(address,uint256,string)", a, 3, NULL,
	               err);
	allowance_release(m, txm, stake);
	return rc;
}

int rc_market_model_register(struct rc_market *m, struct rc_txm *txm,
                             const struct rc_market_model_reg *reg, uint8_t model_id[32],
                             struct rc_rpc_error *err)
{
	if (reg->ntags > 64)
		return RC_EINVAL;
	int rc = allowance_take(m, txm, &reg->stake, true, err);
	if (rc != RC_OK)
		return rc;
	struct rc_abi_value tags[64];
	for (size_t i = 0; i < reg->ntags; i++)
		rc_abi_set_string(&tags[i], reg->tags[i], strlen(reg->tags[i]));
	struct rc_abi_value a[7];
	rc_abi_set_address(&a[0], reg->owner);
	rc_abi_set_fixed_bytes(&a[1], reg->base_model_id, 32);
	rc_abi_set_fixed_bytes(&a[2], reg->ipfs_cid, 32);
	rc_abi_set_u256(&a[3], &reg->fee);
	rc_abi_set_u256(&a[4], &reg->stake);
	rc_abi_set_string(&a[5], reg->name, strlen(reg->name));
	rc_abi_set_array(&a[6], tags, reg->ntags);
	rc = send_call(txm, m->diamond,
	               "modelRegister(address,bytes32,bytes32,uint256,uint256,string,string[])", a,
	               7, NULL, err);
	allowance_release(m, txm, &reg->stake);
	if (rc == RC_OK && model_id)
		rc = rc_market_model_id(m, reg->owner, reg->base_model_id, model_id, err);
	return rc;
}

static bool topic_is(const uint8_t topic[32], const char *hex)
{
	uint8_t t[32];
	return rc_hex_decode_exact(hex, 64, t, 32, NULL) == RC_OK && memcmp(t, topic, 32) == 0;
}

int rc_market_post_bid(struct rc_market *m, struct rc_txm *txm, const uint8_t provider[20],
                       const uint8_t model_id[32], const struct rc_u256 *price_per_second,
                       uint8_t bid_id[32], struct rc_rpc_error *err)
{
	struct rc_u256 fee;
	int rc = rc_market_bid_fee(m, &fee, err);
	if (rc == RC_OK)
		rc = allowance_take(m, txm, &fee, true, err);
	if (rc != RC_OK)
		return rc;
	struct rc_abi_value a[3];
	rc_abi_set_address(&a[0], provider);
	rc_abi_set_fixed_bytes(&a[1], model_id, 32);
	rc_abi_set_u256(&a[2], price_per_second);
	struct rc_rpc_receipt r;
	rc = send_call(txm, m->diamond, "postModelBid(address,bytes32,uint256)", a, 3, &r, err);
	allowance_release(m, txm, &fee);
	if (rc == RC_OK && bid_id) {
		rc = RC_EPROTO;
		for (size_t i = 0; i < r.nlogs; i++) {
			const struct rc_rpc_log *l = &r.logs[i];
			struct rc_u256 nonce;
			if (memcmp(l->address, m->diamond, 20) != 0 || l->ntopics != 3 ||
			    !topic_is(l->topics[0], TOPIC_BID_POSTED) || l->data_len != 32 ||
			    rc_u256_from_be(&nonce, l->data, 32) != RC_OK)
				continue;
			rc_morpheus_bid_id(l->topics[1] + 12, l->topics[2], &nonce, bid_id);
			rc = RC_OK;
			break;
		}
		if (rc != RC_OK)
			err_msg(err, rc, "no MarketplaceBidPosted log in the receipt");
	}
	rc_rpc_receipt_release(&r);
	return rc;
}

int rc_market_delete_bid(struct rc_market *m, struct rc_txm *txm, const uint8_t bid_id[32],
                         struct rc_rpc_error *err)
{
	struct rc_abi_value a[1];
	rc_abi_set_fixed_bytes(&a[0], bid_id, 32);
	return send_call(txm, m->diamond, "deleteModelBid(bytes32)", a, 1, NULL, err);
}

int rc_market_open_session(struct rc_market *m, struct rc_txm *txm, const struct rc_u256 *amount,
                           bool direct, const uint8_t *approval, size_t approval_len,
                           const uint8_t *sig, size_t sig_len, uint8_t session_id[32],
                           struct rc_rpc_error *err)
{
	int rc = allowance_take(m, txm, amount, true, err);
	if (rc != RC_OK)
		return rc;
	uint8_t me[20];
	rc_txm_address(txm, me);
	struct rc_buf data = RC_BUF_INIT;
	rc = rc_morpheus_open_session_calldata(me, amount, direct, approval, approval_len, sig,
	                                       sig_len, &data);
	if (rc != RC_OK) {
		allowance_release(m, txm, amount);
		return rc;
	}
	struct rc_txm_call call = {
	        .to = m->diamond, .data = (const uint8_t *)data.ptr, .data_len = data.len};
	struct rc_rpc_receipt r;
	rc = rc_txm_send_wait(txm, &call, &r, err);
	allowance_release(m, txm, amount);
	rc_buf_release(&data);
	if (rc == RC_OK && session_id) {
		rc = RC_EPROTO;
		for (size_t i = 0; i < r.nlogs; i++) {
			struct rc_market_session_event ev;
			if (memcmp(r.logs[i].address, m->diamond, 20) == 0 &&
			    rc_market_decode_session_event(&r.logs[i], &ev) == RC_OK && ev.opened) {
				memcpy(session_id, ev.session_id, 32);
				rc = RC_OK;
				break;
			}
		}
		if (rc != RC_OK)
			err_msg(err, rc, "no SessionOpened log in the receipt");
	}
	rc_rpc_receipt_release(&r);
	return rc;
}

int rc_market_close_session(struct rc_market *m, struct rc_txm *txm, const uint8_t *receipt,
                            size_t receipt_len, const uint8_t *sig, size_t sig_len,
                            struct rc_rpc_error *err)
{
	struct rc_buf data = RC_BUF_INIT;
	int rc = rc_morpheus_close_session_calldata(receipt, receipt_len, sig, sig_len, &data);
	if (rc != RC_OK)
		return rc;
	struct rc_txm_call call = {
	        .to = m->diamond, .data = (const uint8_t *)data.ptr, .data_len = data.len};
	struct rc_rpc_receipt r;
	rc = rc_txm_send_wait(txm, &call, &r, err);
	rc_rpc_receipt_release(&r);
	rc_buf_release(&data);
	return rc;
}

/* ---- events ------------------------------------------------------------------------------- */

static bool addr_topic(const uint8_t t[32], uint8_t out[20])
{
	for (int i = 0; i < 12; i++)
		if (t[i])
			return false;
	memcpy(out, t + 12, 20);
	return true;
}

int rc_market_decode_session_event(const struct rc_rpc_log *log, struct rc_market_session_event *ev)
{
	memset(ev, 0, sizeof *ev);
	if (log->ntopics < 1)
		return RC_ENOTFOUND;
	if (topic_is(log->topics[0], TOPIC_SESSION_OPENED))
		ev->opened = true;
	else if (!topic_is(log->topics[0], TOPIC_SESSION_CLOSED))
		return RC_ENOTFOUND;
	if (log->ntopics != 4 || !addr_topic(log->topics[1], ev->user) ||
	    !addr_topic(log->topics[3], ev->provider))
		return RC_EPARSE;
	memcpy(ev->session_id, log->topics[2], 32);
	ev->block_number = log->block_number;
	memcpy(ev->tx_hash, log->tx_hash, 32);
	return RC_OK;
}

int rc_market_session_events(struct rc_market *m, uint64_t from_block, uint64_t to_block,
                             const uint8_t *user, const uint8_t *provider,
                             struct rc_market_session_event **ev, size_t *n,
                             struct rc_rpc_error *err)
{
	*ev = NULL;
	*n = 0;
	struct rc_rpc_log_filter f = {.from_block = from_block,
	                              .to_block = to_block,
	                              .address = m->diamond,
	                              .ntopics = 4};
	if (user) {
		f.has_topic[1] = true;
		memcpy(f.topics[1] + 12, user, 20);
	}
	if (provider) {
		f.has_topic[3] = true;
		memcpy(f.topics[3] + 12, provider, 20);
	}
	struct rc_rpc_log *logs;
	size_t nlogs;
	int rc = rc_rpc_get_logs(m->rpc, &f, &logs, &nlogs, err);
	if (rc != RC_OK)
		return rc;
	struct rc_market_session_event *out = nlogs ? calloc(nlogs, sizeof *out) : NULL;
	if (nlogs && !out) {
		rc_rpc_logs_free(logs, nlogs);
		return RC_ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < nlogs; i++)
		if (rc_market_decode_session_event(&logs[i], &out[k]) == RC_OK)
			k++;
	rc_rpc_logs_free(logs, nlogs);
	*ev = out;
	*n = k;
	return RC_OK;
}
