-- Statements of the saved dashboards (serving/dashboards.py), one per `-- name:` section.
-- The table is a ReplacingMergeTree: a save or a delete is a new row with a higher version, read with FINAL.

-- name: list
SELECT id, name, widgets, version, created, updated
FROM dashboards FINAL
WHERE tenant = {tenant:String} AND deleted = 0
ORDER BY name, id;

-- name: get
SELECT id, name, widgets, version, created, updated, deleted
FROM dashboards FINAL
WHERE tenant = {tenant:String} AND id = {id:String};

-- name: put
INSERT INTO dashboards (tenant, id, name, widgets, version, deleted, created, updated)
VALUES ({tenant:String}, {id:String}, {name:String}, {widgets:String}, {version:UInt64}, {deleted:UInt8},
        {created:DateTime64(3, 'UTC')}, {updated:DateTime64(3, 'UTC')});
