-- Statements of the custom KPIs (serving/analytics/kpis.py), one per `-- name:` section.

-- name: list
SELECT name, formula, description, version, updated
FROM kpis FINAL
WHERE tenant = {tenant:String} AND deleted = 0
ORDER BY name;

-- name: get
SELECT name, formula, description, version, updated, deleted
FROM kpis FINAL
WHERE tenant = {tenant:String} AND name = {name:String};

-- name: put
INSERT INTO kpis (tenant, name, formula, description, version, deleted, updated)
VALUES ({tenant:String}, {name:String}, {formula:String}, {description:String}, {version:UInt64}, {deleted:UInt8},
        {updated:DateTime64(3, 'UTC')});
