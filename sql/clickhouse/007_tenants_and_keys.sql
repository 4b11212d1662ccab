-- Control plane of multi-tenancy (serving/tenants.py): tenants and their API keys.
-- Small mutable tables: every change inserts a new row version and readers use FINAL, so every API
-- replica and the CLI see the same state without UPDATEs (ReplacingMergeTree keeps the highest
-- `version` per sorting key). Keys are stored only as sha256 hashes; `prefix` identifies a key for
-- listing and revocation and cannot be used to authenticate.
CREATE TABLE IF NOT EXISTS tenants
(
    id          String,
    name        String,
    created     DateTime64(3, 'UTC'),
    disabled    UInt8,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

CREATE TABLE IF NOT EXISTS api_keys
(
    key_hash        String,
    prefix          String,
    tenant          String,
    role            LowCardinality(String),
    rate_per_second Float64,
    burst           UInt32,
    created         DateTime64(3, 'UTC'),
    revoked         UInt8,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_hash;
