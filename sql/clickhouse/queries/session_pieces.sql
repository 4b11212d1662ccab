-- Session pieces: the pre-aggregate of closed hours behind the hot tier's session metrics (common/session_pieces.py
-- builds and forgets them, serving/analytics/engine.py reads them). Same rules as the session_cuts section of
-- analytics.sql: the order of events is (timestamp, event_id); a client session id is kept whole; otherwise a new
-- session starts after a gap over gap_ms and at 24 hours from the chain's first event.

-- name: pieces
-- One row per (tenant, hour, user, client session id) of the events relation (which gives tenant, user_id, ts,
-- event_id, event, page, sid): the hour's events in (timestamp, event_id) order, cut into pieces where the gap to
-- the previous event exceeds gap_ms (without a client session id; with one, the hour is one piece). Per piece:
-- first and last time (epoch ms), events, page views, the distinct names of its other events (which of them are
-- interactive is the question's choice) and the pages of its first and last page view ('' without one).
SELECT tenant, hour, user_id, sid,
       arraySplit((x, c) -> c, t, cut) AS tp, arraySplit((x, c) -> c, e, cut) AS ep, arraySplit((x, c) -> c, p, cut) AS pp,
       arrayMap(x -> x[1], tp) AS first_ms, arrayMap(x -> x[-1], tp) AS last_ms,
       arrayMap(x -> toUInt32(length(x)), tp) AS events,
       arrayMap(x -> toUInt32(arrayCount(n -> n = 'page_view', x)), ep) AS views,
       arrayMap(x -> arrayDistinct(arrayFilter(n -> n != 'page_view', x)), ep) AS kinds,
       arrayMap((ps, ns) -> arrayFirst((q, n) -> n = 'page_view', ps, ns), pp, ep) AS entry_page,
       arrayMap((ps, ns) -> arrayLast((q, n) -> n = 'page_view', ps, ns), pp, ep) AS exit_page
FROM (
    SELECT tenant, hour, user_id, sid, arrayMap(i -> t0[i], o) AS t, arrayMap(i -> e0[i], o) AS e,
           arrayMap(i -> p0[i], o) AS p,
           arrayMap((d, i) -> toUInt8(i = 1 OR (sid = '' AND d > {gap_ms:Int64})), arrayDifference(t), arrayEnumerate(t)) AS cut
    FROM (
        SELECT tenant, hour, user_id, sid, t0, e0, p0, arraySort((i, x, d) -> (x, d), arrayEnumerate(t0), t0, d0) AS o
        FROM (
            SELECT tenant, toStartOfHour(toDateTime(ts)) AS hour, user_id, sid,
                   groupArray(toUnixTimestamp64Milli(ts)) AS t0, groupArray(event_id) AS d0,
                   groupArray(toString(event)) AS e0, groupArray(page) AS p0
            FROM ({events})
            GROUP BY tenant, hour, user_id, sid
        )
    )
)

-- name: hour_events
-- The events of one hour of events_raw, as the pieces section reads them.
SELECT tenant, user_id, timestamp AS ts, event_id, event, page,
       if(properties = '', '', JSONExtractString(properties, 'session_id')) AS sid
FROM events_raw
WHERE toStartOfHour(toDateTime(timestamp)) = {hour:DateTime('UTC')}

-- name: build
-- The hour's pieces, written (the hour's old pieces are dropped first).
INSERT INTO session_pieces (tenant, hour, user_id, sid, first_ms, last_ms, events, views, kinds, entry_page, exit_page)
SELECT tenant, hour, user_id, sid, first_ms, last_ms, events, views, kinds, entry_page, exit_page
FROM ({pieces})

-- name: build_funnel
-- The hour's funnel pieces (sql/clickhouse/019_funnel_pieces.sql), written with the session pieces.
INSERT INTO funnel_pieces (tenant, hour, user_id, t, event, page, country, device)
SELECT tenant, toStartOfHour(toDateTime(timestamp)) AS hour, user_id, groupArray(toUnixTimestamp64Milli(timestamp)),
       groupArray(event), groupArray(page), groupArray(country), groupArray(device)
FROM events_raw
WHERE toStartOfHour(toDateTime(timestamp)) = {hour:DateTime('UTC')}
GROUP BY tenant, hour, user_id

-- name: mark
-- The hour's mark, written last: from then on questions read the hour's pieces instead of its events (funnel = 1:
-- its funnel pieces too).
INSERT INTO session_piece_hours (hour, built, gap_ms, events, funnel)
SELECT {hour:DateTime('UTC')}, 1, {gap_ms:Int64}, count(), 1
FROM events_raw
WHERE toStartOfHour(toDateTime(timestamp)) = {hour:DateTime('UTC')}

-- name: unmark
-- The hour's pieces are about to change or go: questions read the hour raw from now on.
INSERT INTO session_piece_hours (hour, built, gap_ms, events) VALUES ({hour:DateTime('UTC')}, 0, 0, 0)

-- name: unmark_written
-- The stream wrote events into these hours: those built are read raw from now on (their pieces lack the new
-- events) until the batch layer builds them again.
INSERT INTO session_piece_hours (hour, built, gap_ms, events)
SELECT hour, 0, 0, 0
FROM session_piece_hours
WHERE hour IN {hours:Array(DateTime('UTC'))}
GROUP BY hour
HAVING argMax(built, recorded_at) = 1

-- name: built_hours
-- Per hour of [scan_start, scan_end) with a mark: its newest mark (built with which gap, and when) and how many
-- marks it has; the caller keeps the whole hours built with its gap, and the newest mark and the count of all as
-- the version it compares with marks_version after reading the pieces (one read, one snapshot of the marks).
SELECT toUnixTimestamp(hour) AS epoch, argMax(built, recorded_at) = 1 AND argMax(gap_ms, recorded_at) = {gap_ms:Int64} AS ok,
       toString(max(recorded_at)) AS newest, count() AS marks
FROM session_piece_hours
WHERE hour >= toStartOfHour({scan_start:DateTime64(3, 'UTC')}) AND hour < {scan_end:DateTime64(3, 'UTC')}
GROUP BY hour
ORDER BY hour

-- name: funnel_hours
-- built_hours for funnels: the hours whose newest mark says built with funnel pieces, whatever the session gap.
SELECT toUnixTimestamp(hour) AS epoch, argMax(built, recorded_at) = 1 AND argMax(funnel, recorded_at) = 1 AS ok,
       toString(max(recorded_at)) AS newest, count() AS marks
FROM session_piece_hours
WHERE hour >= toStartOfHour({scan_start:DateTime64(3, 'UTC')}) AND hour < {scan_end:DateTime64(3, 'UTC')}
GROUP BY hour
ORDER BY hour

-- name: marks_version
-- The newest mark of the hours of [scan_start, scan_end) and how many there are: read before and after a
-- question, unchanged means no hour of its range was forgotten or built again while it read the pieces.
SELECT toString(max(recorded_at)) AS newest, count() AS marks
FROM session_piece_hours
WHERE hour >= toStartOfHour({scan_start:DateTime64(3, 'UTC')}) AND hour < {scan_end:DateTime64(3, 'UTC')}

-- name: metrics
-- Session metrics from the pieces: the built hours' stored pieces and the other hours' pieces cut from the raw
-- events of the scan (the raw placeholder), per (user, client session id) put in time order (the hours' rows
-- sorted by hour: hours do not overlap) and joined where the gap from one piece's last event to the next one's
-- first is at most gap_ms (never split with a client session id). s marks the pieces that start a session, e
-- those that end one; a session's first time is its first piece's, its last time its last piece's, its page views
-- and interactive pieces the differences of running sums at its ends. A chain of 24 hours or more would be cut
-- at 24 hours, which needs its events: its user's pieces without a client session id are not counted here but
-- returned as one row with long = 1 and grp = the user id, and the caller counts them from the raw events.
-- interactive: per piece, 1 when one of its other event names is not in non_interactive. entry and exit pages
-- (the pages placeholder: only when grouped by one) are the first and last of the session's pieces with a page
-- view. Otherwise as session_metrics.
SELECT grp, long, sum(sessions) AS sessions, sum(total_duration_ms) AS total_duration_ms,
       sum(total_views) AS total_views, sum(with_views) AS with_views, sum(bounced) AS bounced
FROM (
    {per_group}
    FROM (
    SELECT user_id, long, firsts, lasts,
           arrayMap((x, y) -> toUInt64(x - y), cv, arrayPushFront(arrayPopBack(cv), 0)) AS session_views,
           arrayMap((x, y) -> x - y, ck, arrayPushFront(arrayPopBack(ck), 0)) AS session_interactive,
           arrayMap(x -> long OR (x >= {start_ms:Int64} AND x < {end_ms:Int64}), firsts) AS counted,
           {pages}
    FROM (
            SELECT user_id, f, v, en, ex, s, e,
                   arrayFilter((x, c) -> c = 1, f, s) AS firsts, arrayFilter((x, c) -> c = 1, l, e) AS lasts,
                   arrayFilter((x, c) -> c = 1, arrayCumSum(v), e) AS cv, arrayFilter((x, c) -> c = 1, arrayCumSum(k), e) AS ck,
                   sid = '' AND arrayExists((x, y) -> y - x >= 86400000, firsts, lasts) AS long
            FROM (
                SELECT user_id, sid, f, l, v, k, en, ex,
                       if(sid = '', arrayMap((x, y, i) -> toUInt8(i = 1 OR x - y > {gap_ms:Int64}), f,
                                             arrayPushFront(arrayPopBack(l), toInt64(0)), arrayEnumerate(f)),
                          arrayMap(i -> toUInt8(i = 1), arrayEnumerate(f))) AS s,
                       arrayPushBack(arrayPopFront(s), toUInt8(1)) AS e
                FROM (
                    SELECT user_id, sid, arrayFlatten(arraySort((x, h) -> h, f0, hs)) AS f,
                           arrayFlatten(arraySort((x, h) -> h, l0, hs)) AS l,
                           arrayFlatten(arraySort((x, h) -> h, v0, hs)) AS v,
                           arrayFlatten(arraySort((x, h) -> h, k0, hs)) AS k,
                           arrayFlatten(arraySort((x, h) -> h, en0, hs)) AS en,
                           arrayFlatten(arraySort((x, h) -> h, ex0, hs)) AS ex
                    FROM (
                        SELECT user_id, sid, groupArray(hour) AS hs, groupArray(first_ms) AS f0, groupArray(last_ms) AS l0,
                               groupArray(views) AS v0, groupArray(interactive) AS k0, groupArray({entry}) AS en0,
                               groupArray({exit}) AS ex0
                        FROM (
                            SELECT user_id, sid, hour, first_ms, last_ms, views, arrayMap(ks -> toUInt8(arrayExists(n -> NOT has({non_interactive:Array(String)}, n), ks)), kinds) AS interactive,
                                   entry_page, exit_page
                            FROM session_pieces
                            WHERE tenant = {tenant:String} AND hour IN {built_hours:Array(DateTime('UTC'))}
                            UNION ALL
                            SELECT user_id, sid, hour, first_ms, last_ms, views, arrayMap(ks -> toUInt8(arrayExists(n -> NOT has({non_interactive:Array(String)}, n), ks)), kinds) AS interactive,
                                   entry_page, exit_page
                            FROM ({raw})
                        )
                        GROUP BY user_id, sid
                    )
                )
            )
        )
    )
    {spread}
)
GROUP BY grp, long
SETTINGS max_execution_time = {timeout_seconds}

-- name: session_pages
-- The pages placeholder of metrics when grouped by entry or exit page: per session, the entry page of its first
-- piece with a page view and the exit page of its last.
arrayMap((ps, vs) -> arrayFirst((q, w) -> w > 0, ps, vs), arraySplit((x, c) -> c = 1, en, s),
         arraySplit((x, c) -> c = 1, v, s)) AS session_entry,
arrayMap((ps, vs) -> arrayLast((q, w) -> w > 0, ps, vs), arraySplit((x, c) -> c = 1, ex, s),
         arraySplit((x, c) -> c = 1, v, s)) AS session_exit

-- name: totals
-- The per_group placeholder of metrics for the totals: each (user, client session id)'s counted sessions added up.
SELECT if(long, user_id, '') AS grp, long, toUInt64(arrayCount(counted)) AS sessions,
       arraySum((a, b, c) -> if(c, b - a, 0), firsts, lasts, counted) AS total_duration_ms,
       arraySum((w, c) -> if(c, w, 0), session_views, counted) AS total_views,
       toUInt64(arrayCount((w, c) -> c AND w > 0, session_views, counted)) AS with_views,
       toUInt64(arrayCount((w, k, c) -> c AND w = 1 AND k = 0, session_views, session_interactive, counted)) AS bounced

-- name: per_page
-- The per_group placeholder of metrics grouped by entry or exit page (the group placeholder): one row per session.
SELECT if(long, user_id, {group}) AS grp, long, toUInt64(1) AS sessions, last_ms - first_ms AS total_duration_ms,
       views AS total_views, toUInt64(views > 0) AS with_views, toUInt64(views = 1 AND interactive = 0) AS bounced

-- name: per_page_spread
-- The spread placeholder of metrics grouped by page: the counted sessions as rows.
ARRAY JOIN firsts AS first_ms, lasts AS last_ms, session_views AS views, session_interactive AS interactive,
           session_entry AS entry_page, session_exit AS exit_page, counted AS c
WHERE c

-- name: no_pages
-- The pages placeholder of metrics for the totals: no pages.
arrayMap(x -> '', firsts) AS session_entry, session_entry AS session_exit

-- name: scan_rest
-- The tenant's events of the scan outside the built hours (the ranges placeholder: time ranges as parameters), as
-- the pieces section reads them.
SELECT tenant, user_id, timestamp AS ts, event_id, event, page,
       if(properties = '', '', JSONExtractString(properties, 'session_id')) AS sid
FROM events_raw
WHERE tenant = {tenant:String} AND ({ranges})

-- name: forgotten_hours
-- The marks' retention (common/session_pieces.trim_marks): the hours whose newest mark says not built and whose marks
-- are all older than the grace period. Their marks tell questions nothing (an hour without marks is read raw too).
SELECT toUnixTimestamp(hour) AS epoch
FROM session_piece_hours
GROUP BY hour
HAVING argMax(built, recorded_at) = 0 AND max(recorded_at) < now64(9) - toIntervalSecond({grace_s:UInt32})

-- name: trim_marks
-- Those hours' marks go (only those older than the grace period: a mark written since stays).
ALTER TABLE session_piece_hours DELETE
WHERE hour IN {hours:Array(DateTime('UTC'))} AND recorded_at < now64(9) - toIntervalSecond({grace_s:UInt32})
SETTINGS mutations_sync = 2
