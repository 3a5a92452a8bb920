"""Audit ledger: hash chain, tamper detection, concurrent appends, completeness, frame hashing."""

import datetime as dt
import hashlib
import json
import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest

from quant_assets.audit.ledger import GENESIS, AuditLedger, LedgerBatch, OptimisationLog, frame_hash, record_hash


def fill(ledger: AuditLedger, n: int = 3) -> list[dict]:
    out = []
    for i in range(n):
        intent = ledger.intent(
            step="sleeve_optimise",
            asset="sleeve_weights_x_hrp",
            partition=f"2020-01-{i + 3:02d}",
            run_id="run-1",
            params={"profile": "hrp"},
            input_hashes={"streams": "abc"},
        )
        out += [intent, ledger.outcome(intent, status="success", output_hash="def")]
    return out


def test_chain_links_every_record(tmp_path):
    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    records = fill(ledger)
    assert records[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(records, records[1:]))
    assert all(record_hash(r) == r["hash"] for r in records)
    assert records[1]["intent_hash"] == records[0]["hash"]
    assert ledger.verify().ok and ledger.verify().records == 6
    assert ledger.records() == records


@pytest.mark.parametrize(
    "tamper, line, reason",
    [
        (lambda lines: lines.__setitem__(2, lines[2].replace('"hrp"', '"max_sharpe"')), 3, "content does not match"),
        (lambda lines: lines.pop(1), 2, "prev_hash does not match"),
        (lambda lines: lines.insert(0, lines.pop(2)), 1, "prev_hash does not match"),
        (lambda lines: lines.__setitem__(4, "{not json"), 5, "is not JSON"),
    ],
)
def test_tampering_is_detected_at_the_first_broken_link(tmp_path, tamper, line, reason):
    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    fill(ledger)
    lines = ledger.path.read_text().splitlines()
    tamper(lines)
    ledger.path.write_text("\n".join(lines) + "\n")
    result = ledger.verify()
    assert not result.ok
    assert result.first_broken == line
    assert reason in result.reason


def test_rehashing_a_tampered_record_still_breaks_the_next_link(tmp_path):
    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    fill(ledger)
    lines = [json.loads(x) for x in ledger.path.read_text().splitlines()]
    lines[2]["params"]["profile"] = "max_sharpe"
    lines[2]["hash"] = record_hash(lines[2])  # a careful forger recomputes the hash ...
    ledger.path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = ledger.verify()
    assert (result.ok, result.first_broken) == (False, 4)  # ... and breaks the link after it


def test_dangling_intents_and_supersession(tmp_path):
    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    fill(ledger, 2)
    crashed = ledger.intent(
        step="meta_optimise",
        asset="meta_weights_m_hrp",
        partition="2020-01-10",
        run_id="run-2",
        params={},
        input_hashes={},
    )
    assert [r["hash"] for r in ledger.dangling_intents()] == [crashed["hash"]]
    assert ledger.dangling_intents(asset="sleeve_weights_x_hrp") == []
    assert ledger.dangling_intents(partitions={"2020-01-03"}) == []
    # re-materialising the partition appends a new intent and outcome: the crash is superseded
    again = ledger.intent(
        step="meta_optimise",
        asset="meta_weights_m_hrp",
        partition="2020-01-10",
        run_id="run-3",
        params={},
        input_hashes={},
    )
    ledger.outcome(again, status="success", output_hash="x")
    assert ledger.dangling_intents() == []
    assert len(ledger.records()) == 7 and ledger.verify().ok  # history kept, chain intact


def _append_many(path: str, worker: int, n: int) -> None:
    ledger = AuditLedger(path)
    for i in range(n):
        intent = ledger.intent(
            step="s", asset=f"a{worker}", partition=str(i), run_id=f"w{worker}", params={}, input_hashes={}
        )
        ledger.outcome(intent, status="success", output_hash=None)


def test_two_processes_append_without_breaking_the_chain(tmp_path):
    path = str(tmp_path / "ledger.jsonl")
    ctx = mp.get_context("spawn")
    # Two plain processes rather than a Pool: a Pool waits forever for a task whose worker vanished,
    # which would hang CI instead of failing the test.
    workers = [ctx.Process(target=_append_many, args=(path, w, 100)) for w in (0, 1)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0]
    ledger = AuditLedger(path)
    result = ledger.verify()
    assert result.ok and result.records == 400
    assert ledger.dangling_intents() == []


def test_frame_hash_is_deterministic_and_content_sensitive():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        rng.normal(0, 0.01, (50, 4)), index=pd.bdate_range("2020-01-01", periods=50), columns=list("abcd")
    )
    assert frame_hash(df) == frame_hash(df[list("dcba")].iloc[::-1])  # column and row order do not matter
    assert frame_hash(df) != frame_hash(df + 1e-6)  # an 8th-decimal change does
    assert frame_hash(pd.DataFrame()) == hashlib.sha256(b"empty").hexdigest()
    mixed = pd.DataFrame({"symbol": ["NYSE:KO", "NASDAQ:AAPL"], "weight": [0.25, 0.75]})
    assert frame_hash(mixed) == frame_hash(mixed.iloc[::-1][["weight", "symbol"]])
    assert frame_hash(mixed) != frame_hash(mixed.assign(weight=[0.75, 0.25]))
    assert frame_hash(pd.Series([0.5, 0.5], index=["a", "b"], name="w")) == frame_hash(
        pd.Series([0.5, 0.5], index=["b", "a"], name="w")
    )


def test_truncated_tail_blocks_appends_with_a_clear_error(tmp_path):
    from quant_assets.audit.ledger import AuditLedgerError

    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    fill(ledger, 1)
    with open(ledger.path, "ab") as f:
        f.write(b'{"type": "intent", "hash": "abc')  # a writer died mid-append
    with pytest.raises(AuditLedgerError, match="the last record is incomplete"):
        fill(ledger, 1)
    result = ledger.verify()
    assert (result.ok, result.first_broken) == (False, 3) and "is not JSON" in result.reason


def test_a_failing_optimisation_leaves_its_error_outcome_and_the_batch_in_the_ledger(tmp_path):
    import datetime as dt

    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    logs = [
        OptimisationLog("sleeve_optimise", f"sleeve_weights_x_{r}", "2020", "run1", {"profile": r})
        for r in ("hrp", "min_variance")
    ]
    batch = LedgerBatch(ledger, logs)
    d1, d2 = dt.date(2020, 1, 3), dt.date(2020, 1, 10)
    with batch.recording(logs[0], d1, {"returns": "h1"}):
        logs[0].add(d1, {"returns": "h1"}, "success", "w1")
    with pytest.raises(RuntimeError, match="solver exploded"):
        with batch.recording(logs[1], d2, {"returns": "h2"}):
            raise RuntimeError("solver exploded")
    records = list(ledger.records())
    assert [(r["type"], r["asset"], r["status"] if r["type"] == "outcome" else "") for r in records] == [
        ("intent", "sleeve_weights_x_hrp", ""),
        ("outcome", "sleeve_weights_x_hrp", "success"),
        ("intent", "sleeve_weights_x_min_variance", ""),
        ("outcome", "sleeve_weights_x_min_variance", "error"),
    ]
    entry = records[-1]["detail"]["optimisations"][0]
    assert entry["rebalance_date"] == "2020-01-10" and "solver exploded" in entry["error"]
    assert ledger.verify().ok and ledger.dangling_intents() == []


def test_a_committed_batch_is_verified_from_disk(tmp_path):
    import datetime as dt

    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    log = OptimisationLog("meta_optimise", "meta_weights_m_hrp", "2020", "run1", {})
    log.add(dt.date(2020, 1, 3), {"meta_returns": "h"}, "success", "w")
    check, n_records = LedgerBatch(
        ledger, [log, OptimisationLog("meta_optimise", "unused", "2021", "run1", {})]
    ).commit()
    assert check.ok and n_records == 2  # the unused log (no entries) writes nothing


def test_a_garbage_line_mid_file_is_named_and_blocks_steps_before_they_write(tmp_path, monkeypatch, capsys):
    """`audit` used to print a bare JSON error; a step appended on top of the broken chain."""
    from quant_assets.audit.ledger import AuditLedgerError
    from quant_assets.cli.main import main

    lakehouse = tmp_path / "lakehouse"
    ledger = AuditLedger.in_lakehouse(lakehouse)
    fill(ledger)
    ledger.check_chain()  # intact: verified once, then only what is appended
    fill(ledger, 1)
    ledger.check_chain()
    lines = ledger.path.read_text().splitlines()
    lines[3] = "garbage {"
    ledger.path.write_text("\n".join(lines) + "\n")
    size = ledger.path.stat().st_size
    with pytest.raises(AuditLedgerError, match=r"ledger\.jsonl: line 4 is not a JSON record"):
        ledger.records()
    with pytest.raises(AuditLedgerError, match=r"broken at line 4 is not JSON.*nothing was written"):
        ledger.check_chain()
    assert ledger.path.stat().st_size == size
    monkeypatch.setenv("QUANT_ASSETS_LAKEHOUSE", str(lakehouse))
    assert main(["audit"]) == 1
    assert "chain BROKEN at line 4: line 4 is not JSON" in capsys.readouterr().out


def test_a_step_refuses_a_broken_ledger_before_writing_anything(tmp_path):
    import datetime as dt

    from quant_assets.assets.event_log import ephemeral_instance
    from quant_assets.cli.runner import materialize_range
    from quant_assets.config.manifest import load_manifest
    from quant_assets.definitions import build_definitions
    from quant_assets.storage.lakehouse import Lakehouse

    manifest = load_manifest()
    defs = build_definitions(manifest, str(tmp_path))
    instance = ephemeral_instance()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    selection = '+key:"sleeve_weights_factor_rotation_hrp"'
    first = materialize_range(
        defs, manifest, dt.date(1992, 1, 1), dt.date(1992, 12, 31), instance, selection, True, quiet
    )
    assert first.success
    ledger = AuditLedger.in_lakehouse(tmp_path)
    lines = ledger.path.read_text().splitlines()
    lines.insert(1, "garbage {")
    ledger.path.write_text("\n".join(lines) + "\n")
    lh = Lakehouse(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "sleeve_weights").rglob("*.parquet")}
    size = ledger.path.stat().st_size
    again = materialize_range(
        defs,
        manifest,
        dt.date(1992, 1, 1),
        dt.date(1992, 12, 31),
        instance,
        "key:sleeve_weights_factor_rotation_*",
        False,
        quiet,
    )
    assert not again.success
    failure = next(e for e in again.all_events if e.is_step_failure).event_specific_data.error
    while failure.cause is not None:
        failure = failure.cause
    assert "broken at line 2 is not JSON" in failure.message
    assert ledger.path.stat().st_size == size  # nothing appended
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sleeve_weights").rglob("*.parquet")} == before
    assert lh.partitions("sleeve_weights", "sleeve_weights_factor_rotation_hrp") == ["1992"]


def _batch(ledger: AuditLedger, partition: str) -> LedgerBatch:
    log = OptimisationLog("meta_optimise", "meta_weights_m_hrp", partition, "run1", {})
    log.add(dt.date(2020, 1, 3), {"meta_returns": "h"}, "success", "w")
    return LedgerBatch(ledger, [log])


def test_a_committed_batch_extends_the_verified_chain_so_the_next_step_reads_only_what_others_wrote(
    tmp_path, monkeypatch
):
    """A step's own batch, re-read byte for byte after its append, is not hashed again by the next
    step's `check_chain`; records another writer appended are."""
    from quant_assets.audit import ledger as module

    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    fill(ledger)
    ledger.check_chain()
    check, n = _batch(ledger, "2020").commit()
    assert check.ok and n == 2
    starts = []
    original = AuditLedger._verify_from

    def spy(self, offset, prev, line_no):
        starts.append((offset, line_no))
        return original(self, offset, prev, line_no)

    monkeypatch.setattr(AuditLedger, "_verify_from", spy)
    ledger.check_chain()
    assert starts == [(ledger.path.stat().st_size, 8)]  # 6 records of `fill` + the batch's 2, all verified
    fill(ledger, 1)  # another writer (not a verified batch): read and hashed by the next check
    _batch(AuditLedger(ledger.path), "2021").commit()  # after it: does not extend the verified part
    ledger.check_chain()
    assert starts[-1] == (starts[0][0], 8)
    assert module.AuditLedger(ledger.path).verify().ok


def test_a_batch_that_differs_on_disk_from_what_was_appended_names_its_record(tmp_path):
    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    fill(ledger, 1)
    offset, data = ledger.append_pairs(_batch(ledger, "2020")._pairs())
    assert ledger.verify_batch(offset, data).ok
    raw = ledger.path.read_bytes()
    assert raw[offset:] == data
    ledger.path.write_bytes(raw[:offset] + raw[offset:].replace(b'"success"', b'"SUCCESS"', 1))  # its outcome
    check = ledger.verify_batch(offset, data)
    assert not check.ok and check.reason == "batch record 2 differs from what was appended"


def test_a_record_with_int_keys_hashes_as_it_is_read_back(tmp_path):
    """JSON turns int keys into strings, which sort differently (9 < 10, "10" < "9"): hashed as
    written, the record's hash would not recompute from its line, yet its batch's bytes re-read equal."""
    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    log = OptimisationLog("meta_optimise", "meta_weights_m_hrp", "2020", "run1", {9: "a", 10: "b"})
    log.add(dt.date(2020, 1, 3), {"meta_returns": "h"}, "success", "w")
    check, n = LedgerBatch(ledger, [log]).commit()
    assert check.ok and n == 2
    ledger.append({"type": "note", "by_cluster": {2: 0.5, 11: 0.5}})
    assert ledger.verify().ok  # a fresh reader recomputes every hash from the lines


def test_a_last_record_cut_before_its_newline_blocks_appends(tmp_path):
    """A writer that died after the JSON but before its newline: the next record would join its line."""
    from quant_assets.audit.ledger import AuditLedgerError

    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    fill(ledger, 1)
    ledger.path.write_bytes(ledger.path.read_bytes().rstrip(b"\n"))
    size = ledger.path.stat().st_size
    with pytest.raises(AuditLedgerError, match="the last record is incomplete"):
        _batch(ledger, "2020").commit()
    assert ledger.path.stat().st_size == size
