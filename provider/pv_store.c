/* provider: SQLite user-key table (edge module: SQLITE_* becomes RC_* here, and only here). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "pv_log.h"
#include "pv_store.h"

struct pv_store {
	sqlite3 *db;
	pthread_mutex_t mu;
};

static const char schema[] =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS pv_users (addr BLOB PRIMARY KEY CHECK(length(addr)=20),"
        " pubkey BLOB NOT NULL CHECK(length(pubkey)=65), updated_ms INTEGER NOT NULL) STRICT;"
        "CREATE TABLE IF NOT EXISTS pv_session_stats (session_id BLOB PRIMARY KEY"
        " CHECK(length(session_id)=32), prompts INTEGER NOT NULL, sum_tps INTEGER NOT NULL,"
        " sum_ttft INTEGER NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL)"
        " STRICT;";

int pv_store_open(const char *path, struct pv_store **out)
{
	struct pv_store *s = calloc(1, sizeof *s);
	char *msg = NULL;
	*out = NULL;
	if (!s)
		return RC_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	int rc = sqlite3_open_v2(path, &s->db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                         NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(s->db, 5000);
		rc = sqlite3_exec(s->db, schema, NULL, NULL, &msg);
	}
	if (rc != SQLITE_OK) {
		pv_log_error("store", "cannot open user store '%s': %s", path,
		             msg ? msg : sqlite3_errmsg(s->db));
		sqlite3_free(msg);
		pv_store_close(s);
		return RC_EIO;
	}
	*out = s;
	return RC_OK;
}

void pv_store_close(struct pv_store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int pv_store_put_user(struct pv_store *s, const uint8_t addr[20], const uint8_t pub[65],
                      uint64_t now_ms)
{
	sqlite3_stmt *st = NULL;
	int rc;
	pthread_mutex_lock(&s->mu);
	rc = sqlite3_prepare_v2(s->db,
	                        "INSERT INTO pv_users(addr,pubkey,updated_ms) VALUES(?1,?2,?3)"
	                        " ON CONFLICT(addr) DO UPDATE SET pubkey=excluded.pubkey,"
	                        " updated_ms=excluded.updated_ms",
	                        -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_blob(st, 1, addr, 20, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, pub, 65, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ms);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE)
		pv_log_error("store", "cannot store user key: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->mu);
	return rc == SQLITE_DONE ? RC_OK : RC_EIO;
}

int pv_store_get_user(struct pv_store *s, const uint8_t addr[20], uint8_t pub[65])
{
	sqlite3_stmt *st = NULL;
	int rc, out = RC_EIO;
	pthread_mutex_lock(&s->mu);
	rc = sqlite3_prepare_v2(s->db, "SELECT pubkey FROM pv_users WHERE addr=?1", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_blob(st, 1, addr, 20, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 65) {
			memcpy(pub, sqlite3_column_blob(st, 0), 65);
			out = RC_OK;
		} else if (rc == SQLITE_DONE)
			out = RC_ENOTFOUND;
	}
	if (out == RC_EIO)
		pv_log_error("store", "cannot read user key: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->mu);
	return out;
}

int pv_store_add_prompt(struct pv_store *s, const uint8_t session_id[32],
                        const struct pv_prompt_stats *st)
{
	sqlite3_stmt *q = NULL;
	int rc;
	pthread_mutex_lock(&s->mu);
	rc = sqlite3_prepare_v2(
	        s->db,
	        "INSERT INTO "
	        "pv_session_stats(session_id,prompts,sum_tps,sum_ttft,tokens_in,tokens_out)"
	        " VALUES(?1,1,?2,?3,?4,?5) ON CONFLICT(session_id) DO UPDATE SET prompts=prompts+1,"
	        " sum_tps=sum_tps+excluded.sum_tps, sum_ttft=sum_ttft+excluded.sum_ttft,"
	        " tokens_in=tokens_in+excluded.tokens_in, "
	        "tokens_out=tokens_out+excluded.tokens_out",
	        -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_blob(q, 1, session_id, 32, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, st->tps_scaled1000);
		sqlite3_bind_int64(q, 3, st->ttft_ms);
		sqlite3_bind_int64(q, 4, st->tokens_in);
		sqlite3_bind_int64(q, 5, st->tokens_out);
		rc = sqlite3_step(q);
	}
	if (rc != SQLITE_DONE)
		pv_log_error("store", "cannot store session statistics: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(q);
	pthread_mutex_unlock(&s->mu);
	return rc == SQLITE_DONE ? RC_OK : RC_EIO;
}

static uint32_t clamp32(sqlite3_int64 v)
{
	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int pv_store_session_stats(struct pv_store *s, const uint8_t session_id[32],
                           struct pv_session_stats *out)
{
	sqlite3_stmt *q = NULL;
	int rc, ret = RC_EIO;
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&s->mu);
	rc = sqlite3_prepare_v2(s->db,
	                        "SELECT prompts,sum_tps,sum_ttft,tokens_in,tokens_out FROM"
	                        " pv_session_stats WHERE session_id=?1",
	                        -1, &q, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_blob(q, 1, session_id, 32, SQLITE_STATIC);
		rc = sqlite3_step(q);
		if (rc == SQLITE_ROW) {
			sqlite3_int64 n = sqlite3_column_int64(q, 0);
			out->prompts = clamp32(n);
			if (n > 0) {
				out->tps_scaled1000 = clamp32(sqlite3_column_int64(q, 1) / n);
				out->ttft_ms = clamp32(sqlite3_column_int64(q, 2) / n);
			}
			out->tokens_in = clamp32(sqlite3_column_int64(q, 3));
			out->tokens_out = clamp32(sqlite3_column_int64(q, 4));
			ret = RC_OK;
		} else if (rc == SQLITE_DONE)
			ret = RC_ENOTFOUND;
	}
	if (ret == RC_EIO)
		pv_log_error("store", "cannot read session statistics: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(q);
	pthread_mutex_unlock(&s->mu);
	return ret;
}
