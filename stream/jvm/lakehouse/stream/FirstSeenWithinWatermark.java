package lakehouse.stream;

import java.sql.Timestamp;
import java.time.Instant;

import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.ExpiredTimerInfo;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import org.apache.spark.sql.types.StructType;

import scala.collection.Iterator;
import scala.collection.Iterator$;

/**
 * The hot query's de-duplication: the first event of each (tenant, event_id) passes, every later one with that key
 * is dropped until the watermark passes the first one's event time plus the delay. These are the semantics of
 * Spark's {@code dropDuplicatesWithinWatermark}, which also drops events later than the watermark before they reach
 * the state (Spark counts them in {@code numRowsDroppedByWatermark}, as it does here).
 *
 * <p>Why not Spark's operator: it finds the keys to forget by reading every key in the state at every micro-batch.
 * A key lives about twice the watermark delay of event time, so at a steady 5,000 events/s the state holds millions
 * of keys and that scan alone takes seconds per batch, growing with the rate: freshness got worse the longer the
 * stream ran. Here each key registers an event-time timer at its expiry; Spark keeps timers in an index ordered by
 * time and reads only the expired ones, so a batch costs what its own events and the keys expiring with it cost.
 */
public final class FirstSeenWithinWatermark extends StatefulProcessor<String, Row, Row> {
    private static final long serialVersionUID = 1L;

    private final long delayMs;
    private final int timestampIndex;
    private transient ValueState<Long> expiresAt;

    private FirstSeenWithinWatermark(long delayMs, int timestampIndex) {
        this.delayMs = delayMs;
        this.timestampIndex = timestampIndex;
    }

    /**
     * {@code events} (with a watermark on {@code timestamp} of {@code delayMs}) without the duplicates of their
     * {@code (tenant, event_id)}: a streaming Dataset with the same columns.
     */
    public static Dataset<Row> apply(Dataset<Row> events, long delayMs) {
        StructType schema = events.schema();
        int tenant = schema.fieldIndex("tenant");
        int eventId = schema.fieldIndex("event_id");
        MapFunction<Row, String> key = row -> row.getString(tenant) + '\u0000' + row.getString(eventId);
        return events.groupByKey(key, Encoders.STRING()).transformWithState(
                new FirstSeenWithinWatermark(delayMs, schema.fieldIndex("timestamp")),
                TimeMode.EventTime(), OutputMode.Append(), Encoders.row(schema));
    }

    @Override
    public void init(OutputMode outputMode, TimeMode timeMode) {
        expiresAt = getHandle().getValueState("expires_at", Encoders.LONG(), TTLConfig.NONE());
    }

    @Override
    public Iterator<Row> handleInputRows(String key, Iterator<Row> rows, TimerValues timerValues) {
        if (expiresAt.exists()) {
            return Iterator$.MODULE$.empty();
        }
        Row first = rows.next();
        long expiry = millis(first.get(timestampIndex)) + delayMs;
        expiresAt.update(expiry);
        getHandle().registerTimer(expiry);
        return Iterator$.MODULE$.single(first);
    }

    @Override
    public Iterator<Row> handleExpiredTimer(String key, TimerValues timerValues, ExpiredTimerInfo expiredTimerInfo) {
        expiresAt.clear();
        return Iterator$.MODULE$.empty();
    }

    private static long millis(Object instant) {
        if (instant instanceof Timestamp timestamp) {
            return timestamp.getTime();
        }
        return ((Instant) instant).toEpochMilli();
    }
}
