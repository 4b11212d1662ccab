-- Statements of the tenant and API-key directory (serving/tenants.py), one per `-- name:` section.
-- The tables are ReplacingMergeTree: a change is a new row with a higher version, read with FINAL.

-- name: tenants
SELECT id, name, created, disabled
FROM tenants FINAL
ORDER BY id;

-- name: keys
SELECT key_hash, prefix, tenant, role, rate_per_second, burst, created, revoked
FROM api_keys FINAL
ORDER BY tenant, created;

-- name: put_tenant
INSERT INTO tenants (id, name, created, disabled, version)
VALUES ({id:String}, {name:String}, {created:DateTime64(3, 'UTC')}, {disabled:UInt8}, {version:UInt64});

-- name: put_key
INSERT INTO api_keys (key_hash, prefix, tenant, role, rate_per_second, burst, created, revoked, version)
VALUES ({key_hash:String}, {prefix:String}, {tenant:String}, {role:String}, {rate_per_second:Float64},
        {burst:UInt32}, {created:DateTime64(3, 'UTC')}, {revoked:UInt8}, {version:UInt64});
