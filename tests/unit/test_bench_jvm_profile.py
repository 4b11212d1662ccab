from bench.jvm_profile import OUTSIDE, printed, split_stacks

ROOT = ["org.apache.spark.executor.Executor$TaskRunner.run", "java.lang.Thread.run"]
PARQUET = ["org.apache.parquet.column.impl.ColumnWriterBase.write",
           "org.apache.spark.sql.execution.datasources.parquet.ParquetWriteSupport.write",
           "org.apache.spark.sql.execution.datasources.FileFormatWriter$.executeTask",
           "org.apache.spark.scheduler.ResultTask.runTask", *ROOT]
STATE = ["org.rocksdb.RocksDB.get",
         "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider$RocksDBStateStore.get",
         "lakehouse.stream.FirstSeenByBucket.handleInputRows",
         "org.apache.spark.sql.classic.Dataset.$anonfun$collectAsArrowToPython$6",
         "org.apache.spark.scheduler.ResultTask.runTask", *ROOT]
SHUFFLE = ["org.apache.spark.unsafe.hash.Murmur3_x86_32.hashBytesByInt",
           "org.apache.spark.shuffle.sort.BypassMergeSortShuffleWriter.write",
           "org.apache.spark.scheduler.ShuffleMapTask.runTask", *ROOT]
LOADING = ["java.util.zip.ZipFile$Source.getEntryPos", "java.lang.ClassLoader.loadClass", "java.lang.Thread.run"]


def test_each_sample_goes_to_its_task_s_stage_and_the_part_nearest_its_leaf() -> None:
    result = split_stacks([PARQUET, PARQUET, STATE, SHUFFLE, LOADING], jvm_us=10.0)
    stages = result["stages"]
    assert result["samples"] == 5
    assert list(stages)[0] == "landing: Kafka, contract, Parquet files"  # the most samples first
    assert stages["landing: Kafka, contract, Parquet files"] == {
        "share": 0.4, "us_per_event": 4.0, "parts": {"Parquet encoding": {"share": 0.4, "us_per_event": 4.0}}}
    # the RocksDB frame is nearer the leaf than the operator that called it
    assert stages["hot: shuffle read, de-duplication, collect to the driver"]["parts"] == {
        "de-duplication state (RocksDB)": {"share": 0.2, "us_per_event": 2.0}}
    assert list(stages["hot: Kafka, contract, shuffle write"]["parts"]) == ["shuffle"]
    assert list(stages[OUTSIDE]["parts"]) == ["class loading"]
    assert sum(stage["share"] for stage in stages.values()) == 1.0


def test_without_the_jvm_s_cpu_the_split_is_shares_only_and_prints() -> None:
    result = split_stacks([SHUFFLE, [], LOADING])
    assert "us_per_event" not in result["stages"][OUTSIDE]
    assert result["stages"][OUTSIDE]["parts"] == {"class loading": {"share": 0.333}, "other": {"share": 0.333}}
    text = printed(result)
    assert text.startswith("3 samples") and "33.3%  hot: Kafka, contract, shuffle write" in text
