/*
 * provider: session table. Linear arrays under one mutex: a resale node holds at most a few
 * thousand live sessions, and the scans are cheaper than the chain read every request makes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pv_sessions.h"

struct sess {
	uint8_t id[32];
	size_t model;
	uint64_t ends_at;
	bool busy, forgotten;
	uint32_t prompts;
	uint64_t sum_tps, sum_ttft, tokens_in, tokens_out;
};

struct activity {
	size_t model;
	uint64_t end; /* second the prompt ended */
	uint64_t ends_at;
};

struct pv_sessions {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sess *v;
	size_t n, cap;
	struct activity *a;
	size_t na, acap;
};

int pv_sessions_new(struct pv_sessions **out)
{
	struct pv_sessions *s = calloc(1, sizeof *s);
	if (!s)
		return RC_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	*out = s;
	return RC_OK;
}

void pv_sessions_free(struct pv_sessions *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->v);
	free(s->a);
	free(s);
}

static struct sess *find(struct pv_sessions *s, const uint8_t id[32])
{
	for (size_t i = 0; i < s->n; i++)
		if (!memcmp(s->v[i].id, id, 32))
			return &s->v[i];
	return NULL;
}

static unsigned count_locked(struct pv_sessions *s, size_t model, enum pv_capacity_policy policy,
                             uint64_t now)
{
	unsigned n = 0;
	if (policy == PV_CAP_IDLE_TIMEOUT) {
		size_t w = 0;
		for (size_t i = 0; i < s->na; i++) {
			struct activity *a = &s->a[i];
			if (a->end + PV_IDLE_PURGE_S < now)
				continue; /* purged */
			s->a[w++] = *a;
			if (a->model == model && a->ends_at >= now &&
			    a->end + PV_IDLE_WINDOW_S >= now)
				n++;
		}
		s->na = w;
	} else {
		for (size_t i = 0; i < s->n; i++)
			if (s->v[i].model == model && !s->v[i].forgotten && s->v[i].ends_at > now)
				n++;
	}
	return n;
}

unsigned pv_sessions_active(struct pv_sessions *s, size_t model_idx, enum pv_capacity_policy policy,
                            uint64_t now)
{
	pthread_mutex_lock(&s->mu);
	unsigned n = count_locked(s, model_idx, policy, now);
	pthread_mutex_unlock(&s->mu);
	return n;
}

bool pv_sessions_admit(struct pv_sessions *s, size_t model_idx, unsigned slots,
                       enum pv_capacity_policy policy, uint64_t now)
{
	if (slots == 0)
		return true;
	return pv_sessions_active(s, model_idx, policy, now) < slots;
}

int pv_sessions_acquire(struct pv_sessions *s, const uint8_t id[32], size_t model_idx,
                        uint64_t ends_at, long timeout_ms)
{
	struct timespec dl;
	int rc = RC_OK;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	struct sess *e = find(s, id);
	if (!e) {
		if (s->n == s->cap) {
			size_t nc = s->cap ? s->cap * 2 : 64;
			struct sess *nv = realloc(s->v, nc * sizeof *nv);
			if (!nv) {
				pthread_mutex_unlock(&s->mu);
				return RC_ENOMEM;
			}
			s->v = nv;
			s->cap = nc;
		}
		e = &s->v[s->n++];
		memset(e, 0, sizeof *e);
		memcpy(e->id, id, 32);
	}
	e->model = model_idx;
	e->ends_at = ends_at;
	e->forgotten = false;
	while (rc == RC_OK) {
		e = find(s, id); /* the array may have moved while we waited */
		if (!e) {
			rc = RC_ENOTFOUND; /* purged meanwhile: it ended a day ago */
			break;
		}
		if (!e->busy) {
			e->busy = true;
			break;
		}
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT)
			rc = RC_ETIMEOUT;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Drop sessions that ended a day ago and are idle, so the table stays bounded on a long-running
 * node (their report statistics are in the store). Called with the mutex held. */
static void purge_locked(struct pv_sessions *s, uint64_t now)
{
	size_t w = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct sess *e = &s->v[i];
		if (!e->busy && e->ends_at + PV_SESSION_KEEP_S < now)
			continue;
		if (w != i)
			s->v[w] = *e;
		w++;
	}
	s->n = w;
}

void pv_sessions_release(struct pv_sessions *s, const uint8_t id[32],
                         const struct pv_prompt_stats *st, uint64_t now)
{
	pthread_mutex_lock(&s->mu);
	if (s->n >= PV_SESSIONS_PURGE_AT)
		purge_locked(s, now);
	struct sess *e = find(s, id);
	if (e) {
		e->busy = false;
		if (st) {
			e->prompts++;
			e->sum_tps += st->tps_scaled1000;
			e->sum_ttft += st->ttft_ms;
			e->tokens_in += st->tokens_in;
			e->tokens_out += st->tokens_out;
			if (s->na == s->acap) {
				size_t nc = s->acap ? s->acap * 2 : 64;
				struct activity *na = realloc(s->a, nc * sizeof *na);
				if (na) {
					s->a = na;
					s->acap = nc;
				}
			}
			if (s->na < s->acap)
				s->a[s->na++] = (struct activity){e->model, now, e->ends_at};
		}
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int pv_sessions_stats(struct pv_sessions *s, const uint8_t id[32], struct pv_session_stats *out)
{
	int rc = RC_ENOTFOUND;
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&s->mu);
	struct sess *e = find(s, id);
	if (e) {
		out->prompts = e->prompts;
		if (e->prompts) {
			out->tps_scaled1000 = (uint32_t)(e->sum_tps / e->prompts);
			out->ttft_ms = (uint32_t)(e->sum_ttft / e->prompts);
		}
		out->tokens_in = e->tokens_in > UINT32_MAX ? UINT32_MAX : (uint32_t)e->tokens_in;
		out->tokens_out = e->tokens_out > UINT32_MAX ? UINT32_MAX : (uint32_t)e->tokens_out;
		rc = RC_OK;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void pv_sessions_forget(struct pv_sessions *s, const uint8_t id[32])
{
	pthread_mutex_lock(&s->mu);
	struct sess *e = find(s, id);
	if (e)
		e->forgotten = true;
	pthread_mutex_unlock(&s->mu);
}
