-- 0002: the gateway's record of its marketplace sessions (issue 6): one row per session it opened
-- or found on chain, written by the gateway on every state change and read by
-- `morgatectl sessions`. Keyed by the gateway's local id, because the on-chain session id is
-- known only once openSession is mined; one row per session id (the unique index below).
--
-- Deliberately no generation trigger (see 0001): these rows never change a key verdict, and a
-- busy gateway writes them often; bumping ks_meta.generation would flush every gateway's verify
-- cache on each write.
CREATE TABLE sessions (
  local_id INTEGER PRIMARY KEY CHECK (local_id <> 0),
  id TEXT CHECK (id IS NULL OR (length(id) = 66 AND id GLOB '0x*'
    AND NOT substr(id, 3) GLOB '*[^0-9a-f]*')),
  model TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 128),
  model_id TEXT CHECK (model_id IS NULL OR length(model_id) = 66),
  bid_id TEXT CHECK (bid_id IS NULL OR length(bid_id) = 66),
  provider TEXT CHECK (provider IS NULL OR length(provider) = 42),
  endpoint TEXT CHECK (endpoint IS NULL OR length(endpoint) <= 256),
  provider_key TEXT CHECK (provider_key IS NULL OR length(provider_key) = 132),
  stake TEXT CHECK (stake IS NULL OR (length(stake) BETWEEN 1 AND 78
    AND NOT stake GLOB '*[^0-9]*')),
  price TEXT CHECK (price IS NULL OR (length(price) BETWEEN 1 AND 78
    AND NOT price GLOB '*[^0-9]*')),
  opened_at INTEGER NOT NULL DEFAULT 0 CHECK (opened_at >= 0),
  ends_at INTEGER NOT NULL DEFAULT 0 CHECK (ends_at >= 0),
  closed_at INTEGER NOT NULL DEFAULT 0 CHECK (closed_at >= 0),
  state TEXT NOT NULL
    CHECK (state IN ('opening', 'open', 'retired', 'closing', 'closed', 'failed')),
  dispute INTEGER NOT NULL DEFAULT 0 CHECK (dispute IN (0, 1)),
  requests INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
  failures INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
  open_tx TEXT CHECK (open_tx IS NULL OR length(open_tx) = 66),
  close_tx TEXT CHECK (close_tx IS NULL OR length(close_tx) = 66),
  updated_at INTEGER NOT NULL CHECK (updated_at >= 0)
) STRICT;
CREATE UNIQUE INDEX sessions_id ON sessions (id); -- NULLs (sessions still opening) are distinct
CREATE INDEX sessions_state ON sessions (state);
