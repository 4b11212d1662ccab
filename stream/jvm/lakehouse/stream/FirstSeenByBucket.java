package lakehouse.stream;

import java.sql.Timestamp;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.streaming.ExpiredTimerInfo;
import org.apache.spark.sql.streaming.MapState;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.types.StructType;

import scala.Tuple2;
import scala.collection.Iterator;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The hot query's de-duplication: the first event of each (tenant, event_id) passes, every later one with that key
 * is dropped until the watermark passes the first one's event time plus the delay; events later than the watermark
 * are dropped before (Spark counts them in {@code numRowsDroppedByWatermark}). These are the semantics of Spark's
 * {@code dropDuplicatesWithinWatermark}, except that a key may be remembered up to a minute of event time longer.
 *
 * <p>Why not Spark's operator: it finds the keys to forget by reading every key of the state at every micro-batch,
 * and a key lives about twice the watermark delay, so at a steady 5,000 events/s that scan of millions of keys took
 * seconds per batch and grew with the stream's uptime. Here the keys are spread over {@link #BUCKETS} buckets (the
 * grouping key; each holds its keys and their expiries in a map) and each bucket forgets its expired keys once a
 * minute, at a second of the minute of its own: every second about 1/60 of the state is read, not all of it.
 * Grouping by bucket instead of by key also pays Spark's per-group cost once per bucket and batch, not per event.
 */
public final class FirstSeenByBucket extends StatefulProcessor<Integer, Row, Row> {
    private static final long serialVersionUID = 1L;

    /**
     * Buckets of keys: enough that one bucket's map is small, few enough that a batch visits each rarely. A key is
     * looked up in its bucket only, so changing this number is for new checkpoints only.
     */
    public static final int BUCKETS = 1024;
    private static final long MINUTE_MS = 60_000L;
    private static final String BUCKET_COLUMN = "__dedup_bucket";

    private final long delayMs;
    private final int tenantIndex;
    private final int eventIdIndex;
    private final int timestampIndex;
    private transient MapState<String, Long> expiries;
    /** Per bucket, in this task: every key expiring at or before this time is gone from its map. */
    private transient Map<Integer, Long> forgottenThrough;

    private FirstSeenByBucket(long delayMs, int tenantIndex, int eventIdIndex, int timestampIndex) {
        this.delayMs = delayMs;
        this.tenantIndex = tenantIndex;
        this.eventIdIndex = eventIdIndex;
        this.timestampIndex = timestampIndex;
    }

    /**
     * {@code events} (with a watermark on {@code timestamp} of {@code delayMs}) without the duplicates of their
     * {@code (tenant, event_id)}: a streaming Dataset with the same columns.
     */
    public static Dataset<Row> apply(Dataset<Row> events, long delayMs) {
        StructType schema = events.schema();
        // The bucket as a column of the plan (generated code), not a function of a deserialized row: Spark's
        // groupByKey would turn every event into a Row object once more only to call it.
        Column bucket = functions.pmod(functions.hash(functions.col("tenant"), functions.col("event_id")),
                functions.lit(BUCKETS));
        Dataset<Row> bucketed = events.withColumn(BUCKET_COLUMN, bucket);
        StructType rows = bucketed.schema();
        return bucketed.groupBy(functions.col(BUCKET_COLUMN)).as(Encoders.INT(), Encoders.row(rows))
                .transformWithState(
                        new FirstSeenByBucket(delayMs, schema.fieldIndex("tenant"), schema.fieldIndex("event_id"),
                                schema.fieldIndex("timestamp")),
                        TimeMode.EventTime(), OutputMode.Append(), Encoders.row(rows))
                .drop(BUCKET_COLUMN);
    }

    private static String key(Row row, int tenant, int eventId) {
        return row.getString(tenant) + '\u0000' + row.getString(eventId);
    }

    @Override
    public void init(OutputMode outputMode, TimeMode timeMode) {
        expiries = getHandle().getMapState("expiries", Encoders.STRING(), Encoders.LONG(), TTLConfig.NONE());
        forgottenThrough = new HashMap<>();
    }

    @Override
    public Iterator<Row> handleInputRows(Integer bucket, Iterator<Row> rows, TimerValues timerValues) {
        List<Row> first = new ArrayList<>();
        Set<Long> evictions = new HashSet<>();
        long second = (bucket % 60) * 1000L;  // this bucket's second of the minute
        while (rows.hasNext()) {
            Row row = rows.next();
            String key = key(row, tenantIndex, eventIdIndex);
            if (expiries.containsKey(key)) {
                continue;
            }
            long expiry = millis(row.get(timestampIndex)) + delayMs;
            expiries.updateValue(key, expiry);
            long eviction = Math.floorDiv(expiry - second + MINUTE_MS - 1, MINUTE_MS) * MINUTE_MS + second;
            if (evictions.add(eviction)) {
                getHandle().registerTimer(eviction);  // the first eviction at or after the expiry
            }
            first.add(row);
        }
        return CollectionConverters.asScala(first.iterator());
    }

    /**
     * Forgets the bucket's keys that expired by the watermark, not only by this timer: when the watermark moves on by
     * hours in one micro-batch (a backlog of a quiet night, whose every batch spans hours of event time), each bucket
     * has a timer due for every minute of them, and a scan per timer read the bucket's whole map some 160 times a batch
     * (3 M events over 20 hours: 50-66 s batches instead of 6-7, docs/benchmarks.md). Now the first due timer of a
     * bucket scans once; the bucket's other timers due in the same batch find their keys gone and read nothing. A key
     * is never forgotten before the watermark passes its expiry, so a repeat of it is late either way.
     */
    @Override
    public Iterator<Row> handleExpiredTimer(Integer bucket, TimerValues timerValues, ExpiredTimerInfo expiredTimerInfo) {
        long due = expiredTimerInfo.getExpiryTimeInMs();
        Long forgotten = forgottenThrough.get(bucket);
        if (forgotten != null && due <= forgotten) {
            return CollectionConverters.asScala(Collections.<Row>emptyIterator());
        }
        long evictedThrough = Math.max(due, timerValues.getCurrentWatermarkInMs());
        List<String> expired = new ArrayList<>();
        Iterator<Tuple2<String, Long>> entries = expiries.iterator();
        while (entries.hasNext()) {
            Tuple2<String, Long> entry = entries.next();
            if (entry._2() <= evictedThrough) {
                expired.add(entry._1());
            }
        }
        for (String key : expired) {
            expiries.removeKey(key);
        }
        forgottenThrough.put(bucket, evictedThrough);
        return CollectionConverters.asScala(Collections.<Row>emptyIterator());
    }

    private static long millis(Object instant) {
        if (instant instanceof Timestamp timestamp) {
            return timestamp.getTime();
        }
        return ((Instant) instant).toEpochMilli();
    }
}
