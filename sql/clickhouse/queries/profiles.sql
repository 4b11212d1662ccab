-- Statements of the user profiles (serving/analytics/profiles.py), one per `-- name:` section.

-- name: versions
-- Every version of one user's profile, the newest first.
SELECT version, properties, deleted, updated, source
FROM user_profiles
WHERE tenant = {tenant:String} AND user_id = {user_id:String}
ORDER BY version DESC
LIMIT {limit:UInt32};

-- name: current_versions
-- The newest version number of each of the given users (absent: never profiled).
SELECT user_id, max(version) AS newest, argMax(properties, version) AS props, argMax(deleted, version) AS gone
FROM user_profiles
WHERE tenant = {tenant:String} AND user_id IN {user_ids:Array(String)}
GROUP BY user_id;

-- name: property
-- One property of every profiled user of the tenant, from each user's newest version ('' when it lacks it).
SELECT user_id, argMax(properties[{name:String}], version) AS value
FROM user_profiles
WHERE tenant = {tenant:String}
GROUP BY user_id
HAVING argMax(deleted, version) = 0;

-- name: count
SELECT count() AS users FROM (
    SELECT user_id FROM user_profiles WHERE tenant = {tenant:String}
    GROUP BY user_id HAVING argMax(deleted, version) = 0
);

-- name: stamp
-- Changes whenever the tenant's profiles do (every upsert or delete appends a version): the lookups' cache key.
SELECT count() AS versions, max(updated) AS newest FROM user_profiles WHERE tenant = {tenant:String};
