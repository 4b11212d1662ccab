-- Macros that batch/archive.py defines on each of its DuckDB connections.
--
-- archive_row_digest: md5 of one archived row's content, the unit of the archive's content checksum
-- (sha256 over the digests in archive order). The row is rendered as a JSON array of text so that
-- every value is unambiguous (NULL stays null, distinct from ''; quotes are escaped); instants are
-- epoch milliseconds (the archive's precision) so the session time zone cannot change the text, and
-- doubles use DuckDB's shortest round-trip text. Changing this changes every checksum: bump
-- CHECKSUM_VERSION in batch/archive.py with it.
CREATE OR REPLACE TEMP MACRO archive_row_digest(
    tenant, event, ts, event_id, user_id, page, country, device, revenue, properties, received_at
) AS md5(to_json([
    tenant, event, CAST(epoch_ms(ts) AS VARCHAR), event_id, user_id, page, country, device,
    CAST(revenue AS VARCHAR), properties, CAST(epoch_ms(received_at) AS VARCHAR)
]));
