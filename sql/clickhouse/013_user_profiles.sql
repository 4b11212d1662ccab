-- User profiles (serving/analytics/profiles.py): per-user properties of a tenant (plan, signup date,
-- acquisition campaign …), upserted through the API or loaded from a CSV/Parquet file. Every upsert of a user
-- appends the next `version` with the whole property set after the change (a delete appends a tombstone), so
-- the table is the profile's history; a question reads each user's newest version (argMax by version).
-- Values are strings, as the events' dimensions are.
CREATE TABLE IF NOT EXISTS user_profiles
(
    tenant      String,
    user_id     String,
    version     UInt64,
    properties  Map(String, String),
    deleted     UInt8,
    updated     DateTime64(3, 'UTC'),
    source      LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (tenant, user_id, version);
