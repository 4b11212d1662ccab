package lakehouse.stream;

import java.util.List;

import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat;
import org.apache.spark.sql.execution.streaming.sinks.FileStreamSink;
import org.apache.spark.sql.execution.streaming.sinks.FileStreamSinkLog;

import scala.Option;
import scala.collection.immutable.Map;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Spark's own streaming file sink, called from the {@code landing} query's {@code foreachBatch}: zstd Parquet in
 * {@code dt=/hour=} folders under {@code path}, committed by the {@code _spark_metadata} log.
 *
 * <p>Why not {@code writeStream.format("parquet")}: the landing query also sends the dead letters of the same
 * micro-batch, so that every Kafka record is read and judged by the event contract once for both, and a query has
 * one sink. {@link FileStreamSink#addBatch} is what the file sink runs per micro-batch: a batch id the log already
 * holds is skipped (a replay after a crash writes nothing), any other writes its files and then appends the log
 * entry listing them. The query keeps its checkpoint, so its batch ids, and with them the log, carry on where the
 * file sink left them.
 */
public final class LandingSink {
    private final FileStreamSink sink;
    private final FileStreamSinkLog log;

    public LandingSink(Dataset<Row> any, String path) {
        Map<String, String> options = new Map.Map2<>("path", path, "compression", "zstd");
        sink = new FileStreamSink(any.sparkSession(), path, new ParquetFileFormat(),
                CollectionConverters.asScala(List.of("dt", "hour")).toSeq(), options);
        log = new FileStreamSinkLog(FileStreamSinkLog.VERSION(), any.sparkSession(),
                new Path(path, FileStreamSink.metadataDir()).toString(), Option.empty());
    }

    /** True when the log already holds {@code batchId}: {@link #addBatch} would write nothing. */
    public boolean committed(long batchId) {
        Option<Object> latest = log.getLatestBatchId();
        return latest.isDefined() && batchId <= (Long) latest.get();
    }

    /** Writes {@code events} (with {@code dt} and {@code hour} columns) as micro-batch {@code batchId}, once. */
    public void addBatch(long batchId, Dataset<Row> events) {
        sink.addBatch(batchId, events);
    }
}
