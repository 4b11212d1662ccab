package lakehouse.stream;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager;

/**
 * The stream's checkpoint files on a local disk written straight, through a raw local file system of this manager's
 * own: no {@code .crc} file beside each one and no {@code chmod} forked per file, which is what Hadoop's checksum
 * file system does without its native library (most of a small micro-batch's offset log, commit log and state
 * changelog cost). Any other scheme (S3A, HDFS) goes to the file system configured for it, as Spark's own manager.
 *
 * <p>Why not {@code fs.file.impl = RawLocalFileSystem}, which saves the same: that setting is the whole session's, and
 * Hadoop's {@code FileSystem.getLocal} casts the {@code file:} file system to the checksum one. RocksDB's snapshot
 * upload and S3A's upload buffers call it, so the state's snapshots stopped being saved and the stream failed. Here
 * the session's {@code file:} file system is untouched; only the checkpoint's own files take the direct path.
 */
public final class DirectLocalCheckpointFileManager extends FileSystemBasedCheckpointFileManager {
    private final FileSystem direct;

    public DirectLocalCheckpointFileManager(Path path, Configuration hadoopConf) {
        super(path, hadoopConf);
        FileSystem configured = super.fs();
        if ("file".equals(configured.getUri().getScheme())) {
            RawLocalFileSystem raw = new RawLocalFileSystem();
            try {
                raw.initialize(URI.create("file:///"), hadoopConf);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            direct = raw;
        } else {
            direct = configured;
        }
    }

    @Override
    public FileSystem fs() {
        return direct != null ? direct : super.fs();  // the parent's constructor runs before this one's
    }
}
