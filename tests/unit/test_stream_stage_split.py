"""The stream log's split of a micro-batch, from Spark's progress (pure formatting of its figures)."""

from types import SimpleNamespace

from stream.job import stage_split


def progress(state_operators):
    return SimpleNamespace(
        name="hot", batchId=7, numInputRows=1998, stateOperators=state_operators,
        durationMs={"triggerExecution": 5400, "addBatch": 5100, "latestOffset": 20, "queryPlanning": 30,
                    "walCommit": 100, "commitOffsets": 50})


def test_the_split_names_the_batch_the_dedup_state_and_the_bookkeeping():
    op = SimpleNamespace(allUpdatesTimeMs=1500, allRemovalsTimeMs=250, commitTimeMs=750, numRowsTotal=1_200_000)
    line = stage_split(progress([op]))
    assert line == ("progress hot batch 7: 1,998 records in 5.40s (addBatch 5.10s, offsets+planning 0.05s, "
                    "walCommit+commitOffsets 0.15s; dedup state: updates 1.50s, removals 0.25s, commit 0.75s, "
                    "1,200,000 keys)")


def test_a_stateless_query_has_no_state_part():
    assert "dedup state" not in stage_split(progress([]))
