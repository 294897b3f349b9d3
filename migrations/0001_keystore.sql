-- 0001: tenants, API keys, daily usage, and the change counter that running gateways poll.
-- Applied in one transaction by the key store (morgatectl migrate); never edited once shipped.

-- One row per setting; 'generation' is bumped by the triggers below on every change that can
-- alter a verify verdict, so a gateway notices revocations with one cheap read (keystore ks.c).
CREATE TABLE ks_meta (
  k TEXT PRIMARY KEY,
  v TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE tenants (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  rpm INTEGER CHECK (rpm IS NULL OR rpm > 0),
  tpm INTEGER CHECK (tpm IS NULL OR tpm > 0),
  concurrency INTEGER CHECK (concurrency IS NULL OR concurrency > 0),
  monthly_tokens INTEGER CHECK (monthly_tokens IS NULL OR monthly_tokens > 0),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

-- A key's secret is never stored: only HMAC-SHA-256(pepper, secret). During a rotation's grace
-- period the previous digest stays valid until prev_valid_until.
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY CHECK (length(id) = 12),
  tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE RESTRICT,
  name TEXT CHECK (name IS NULL OR length(name) BETWEEN 1 AND 100),
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'expired')),
  secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
  prev_secret_hash BLOB CHECK (prev_secret_hash IS NULL OR length(prev_secret_hash) = 32),
  prev_valid_until INTEGER,
  hint TEXT NOT NULL CHECK (length(hint) = 4),
  models TEXT CHECK (models IS NULL OR length(models) BETWEEN 1 AND 1024),
  rpm INTEGER CHECK (rpm IS NULL OR rpm > 0),
  tpm INTEGER CHECK (tpm IS NULL OR tpm > 0),
  concurrency INTEGER CHECK (concurrency IS NULL OR concurrency > 0),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER,
  revoke_reason TEXT CHECK (revoke_reason IS NULL OR length(revoke_reason) <= 200),
  rotated_at INTEGER,
  last_used_at INTEGER,
  CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
  CHECK ((prev_secret_hash IS NULL) = (prev_valid_until IS NULL))
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE usage_daily (
  key_id TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
  day TEXT NOT NULL CHECK (day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
  model TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
  requests INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
  prompt_tokens INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
  completion_tokens INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
  PRIMARY KEY (key_id, day, model)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_daily_day ON usage_daily (day);

INSERT INTO ks_meta (k, v) VALUES ('generation', '1');

-- Verdict-changing writes bump the generation. last_used_at is deliberately not watched: the
-- gateway's batched last-used writes must not flush every gateway's cache.
CREATE TRIGGER tenants_gen_ins AFTER INSERT ON tenants BEGIN
  UPDATE ks_meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'generation';
END;
CREATE TRIGGER tenants_gen_upd AFTER UPDATE OF name, status, rpm, tpm, concurrency, monthly_tokens
  ON tenants BEGIN
  UPDATE ks_meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'generation';
END;
CREATE TRIGGER tenants_gen_del AFTER DELETE ON tenants BEGIN
  UPDATE ks_meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'generation';
END;
CREATE TRIGGER keys_gen_ins AFTER INSERT ON api_keys BEGIN
  UPDATE ks_meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'generation';
END;
CREATE TRIGGER keys_gen_upd AFTER UPDATE OF tenant_id, status, secret_hash, prev_secret_hash,
  prev_valid_until, models, rpm, tpm, concurrency, expires_at ON api_keys BEGIN
  UPDATE ks_meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'generation';
END;
CREATE TRIGGER keys_gen_del AFTER DELETE ON api_keys BEGIN
  UPDATE ks_meta SET v = CAST(v AS INTEGER) + 1 WHERE k = 'generation';
END;
