"""The retention audit log: append-only, hash-chained records of every tier move, purge, hold and restatement.

Layout: ``<lake>/audit/log/<12-digit seq>.json``, one JSON object per record, and ``<lake>/audit/head.json``
(the anchor: the newest seq and hash, rewritten after each append). A record holds ``seq``, ``at`` (UTC
ISO), ``action``, ``dataset``, ``partition``, ``tier_from``, ``tier_to``, ``rows``, ``bytes``,
``checksum``, ``run_id``, ``reason``, ``details``, ``prev_hash`` (the previous record's ``hash``, 64
zeros for the first) and ``hash`` = HMAC-SHA256 (hex) of the canonical JSON (sorted keys, no spaces,
UTF-8) of the record without ``hash``, keyed with ``audit_hmac_key``: a key kept outside the lake (a
setting from the operator's secret store, or ``<home>/secrets/audit-hmac.key`` generated once, mode
0600), so someone who can write the lake cannot recompute a valid chain after editing a record.

Every append also writes a signed anchor ``{"seq", "hash", "mac"}`` as a new, never-replaced object in
the anchor store (``audit_anchor_uri``: a folder outside the lake, by default ``<home>/audit-anchor``;
in production an S3 bucket with Object Lock in compliance mode, where nobody can overwrite or delete
an object before its retention ends). ``verify`` checks each anchor's signature and that the log's
record of that seq still has the anchored hash, so a history rewritten end to end (edit, recomputed
chain, rewritten ``head.json``) is named at its first altered record even by someone holding the key,
as long as they cannot rewrite the anchor store.

Appends never overwrite: a record is created only if its name does not exist yet (a hard link, which
fails on an existing name, on a local lake; a conditional ``PUT`` with ``If-None-Match: *`` on S3/MinIO,
which MinIO honours with 412).
Two writers racing for the same seq: one wins, the other re-reads the head and retries, so the chain
stays linear without a lock.

``verify`` recomputes every hash and link: an altered record (hash mismatch), a removed one (gap in
the seqs, or a broken link), reordered ones (a record's seq differs from its file name, or links no
longer match) are named by seq. Removing the newest records is caught by the anchor as long as the
anchor is not rewritten too; whoever can rewrite both can truncate the tail undetected — the anchor
is also reported in the Dagster metadata of each tier run, and copying it elsewhere (an object-lock
bucket, a ticket) closes that gap. See docs/architecture.md, "Tiers, retention and legal holds".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs as pafs

from common.events import format_ts
from common.lake import audit_log_path, fs_path, is_s3, lake_filesystem
from common.local_secret import read_or_create_secret
from common.settings import Settings

ACTIONS = ("move", "drop_hot", "compact_cold", "mark_cold", "purge", "hold_placed", "hold_released", "restate")
GENESIS = "0" * 64
_NAME = re.compile(r"^(\d{12})\.json$")
_APPEND_ATTEMPTS = 50


class AuditError(RuntimeError):
    """The audit log cannot be appended to; the message says why and what to do."""


@dataclass
class AuditVerification:
    ok: bool
    records: int
    problems: list[str] = field(default_factory=list)
    head: dict[str, Any] | None = None

    @property
    def first_bad_seq(self) -> int | None:
        """The lowest seq a problem names: where the history stops being trustworthy."""
        seqs = [int(m) for p in self.problems for m in re.findall(r"record (\d{12})", p)]
        return min(seqs) if seqs else None

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.records} record(s), chain and anchor verified"
        return f"audit log NOT intact ({self.records} record(s)):\n" + "\n".join(f"  - {p}" for p in self.problems)


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the record's canonical JSON without its ``hash`` field."""
    return hmac.new(key, canonical({k: v for k, v in record.items() if k != "hash"}), hashlib.sha256).hexdigest()


def anchor_mac(seq: int, record_hash_hex: str, key: bytes) -> str:
    return hmac.new(key, f"anchor:{seq}:{record_hash_hex}".encode(), hashlib.sha256).hexdigest()


def audit_key(settings: Settings) -> bytes:
    """``audit_hmac_key``, else a key generated once into ``<home>/secrets/audit-hmac.key`` (mode 0600)."""
    if settings.audit_hmac_key:
        return settings.audit_hmac_key.encode()
    return read_or_create_secret(settings.home / "secrets" / "audit-hmac.key").encode()


def anchor_location(settings: Settings) -> str:
    return settings.audit_anchor_uri or str(settings.home / "audit-anchor")


def _name(seq: int) -> str:
    return f"{seq:012d}.json"


class _LocalObjects:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []

    def read(self, name: str) -> bytes | None:
        try:
            with open(os.path.join(self.folder, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def create(self, name: str, body: bytes) -> bool:
        """Create ``name`` with ``body`` unless it exists: written aside, then hard-linked into place (``link``
        fails if the name exists), so a reader never sees a record half written and a loser never overwrites."""
        os.makedirs(self.folder, exist_ok=True)
        staged = os.path.join(self.folder, f".{name}.{uuid.uuid4().hex}.tmp")
        with open(staged, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(staged, 0o444)
        try:
            os.link(staged, os.path.join(self.folder, name))
        except FileExistsError:
            return False
        finally:
            os.remove(staged)
        return True

    def replace(self, name: str, body: bytes) -> None:
        os.makedirs(self.folder, exist_ok=True)
        staged = os.path.join(self.folder, f".{name}.{uuid.uuid4().hex}.tmp")
        with open(staged, "wb") as f:
            f.write(body)
        os.replace(staged, os.path.join(self.folder, name))


class _S3Objects:
    def __init__(self, settings: Settings, prefix_path: str, filesystem: pafs.FileSystem) -> None:
        from common.s3 import s3_client

        self.bucket, _, self.prefix = prefix_path.partition("/")
        self.client = s3_client(settings)
        self.fs = filesystem
        self.path = prefix_path

    def names(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    def read(self, name: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(f"{self.path}/{name}") as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def create(self, name: str, body: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}", Body=body, IfNoneMatch="*",
                                   ContentType="application/json")
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412) or exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return False
            raise
        return True

    def replace(self, name: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}", Body=body,
                               ContentType="application/json")


class AuditLog:
    """The lake's audit log (see the module docstring for format and guarantees)."""

    def __init__(self, settings: Settings, filesystem: pafs.FileSystem | None = None) -> None:
        self.settings = settings
        fs = filesystem or lake_filesystem(settings)
        log = fs_path(audit_log_path(settings))
        parent = log.rsplit("/", 1)[0]
        if is_s3(settings.effective_lake_uri):
            self._log: _LocalObjects | _S3Objects = _S3Objects(settings, log, fs)
            self._anchor: _LocalObjects | _S3Objects = _S3Objects(settings, parent, fs)
        else:
            self._log, self._anchor = _LocalObjects(log), _LocalObjects(parent)
        self.location = audit_log_path(settings)
        self._key = audit_key(settings)
        self.anchor_location = anchor_location(settings)
        if self.anchor_location.startswith("s3://"):
            self._anchors: _LocalObjects | _S3Objects = _S3Objects(
                settings, self.anchor_location.removeprefix("s3://").rstrip("/"), lake_filesystem(settings))
        else:
            self._anchors = _LocalObjects(self.anchor_location)

    def hash_of(self, record: dict[str, Any]) -> str:
        """The record's ``hash`` as this log computes it (keyed)."""
        return record_hash(record, self._key)

    # ------------------------------------------------------------------------------------ reading

    def _seq_names(self) -> list[tuple[int, str]]:
        out = []
        for name in self._log.names():
            match = _NAME.match(name)
            if match:
                out.append((int(match[1]), name))
        return sorted(out)

    def records(self, strict: bool = False) -> list[dict[str, Any]]:
        """All records in seq order. Unparseable ones are skipped (``verify`` reports them), unless ``strict``:
        then one raises, for readers that must not act on a partial log (the purge's legal holds)."""
        out = []
        for _, name in self._seq_names():
            body = self._log.read(name)
            if body is None:
                if strict:
                    raise AuditError(f"audit record {name} vanished while reading {self.location}")
                continue
            try:
                out.append(json.loads(body))
            except json.JSONDecodeError as exc:
                if strict:
                    raise AuditError(f"audit record {name} in {self.location} is not valid JSON ({exc.msg}): it may "
                                     "be a legal hold; run `lakehouse audit verify` and restore it") from exc
                continue
        return out

    def head(self) -> dict[str, Any] | None:
        """The anchor: ``{"seq", "hash"}`` of the newest record as last written, or None."""
        body = self._anchor.read("head.json")
        return None if body is None else json.loads(body)

    def _last(self) -> tuple[int, str]:
        """The newest record's seq and hash: from the anchor, walking forward over records appended since
        (normally none or a few), so an append costs a few reads instead of a listing of the whole log."""
        head = self.head()
        if head is None:
            names = self._seq_names()
            if not names:
                return 0, GENESIS
            seq = names[-1][0]
        else:
            seq = int(head["seq"])
        body = self._log.read(_name(seq))
        if body is None:
            raise AuditError(f"audit record {_name(seq)} named by the anchor is missing from {self.location}: "
                             "run `lakehouse audit verify` and restore the log before appending")
        last_hash = json.loads(body)["hash"]
        while (following := self._log.read(_name(seq + 1))) is not None:
            seq, last_hash = seq + 1, json.loads(following)["hash"]
        return seq, last_hash

    # ------------------------------------------------------------------------------------ writing

    def append(
        self,
        action: str,
        dataset: str,
        *,
        partition: str,
        tier_from: str | None = None,
        tier_to: str | None = None,
        rows: int = 0,
        bytes: int = 0,  # the record's field name
        checksum: str | None = None,
        run_id: str | None = None,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one record after the current newest one; safe against concurrent writers (create-if-absent)."""
        if action not in ACTIONS:
            raise AuditError(f"unknown audit action {action!r}; accepted: {list(ACTIONS)}")
        for _ in range(_APPEND_ATTEMPTS):
            last_seq, last_hash = self._last()
            record: dict[str, Any] = {
                "seq": last_seq + 1,
                "at": format_ts(datetime.now(UTC)),
                "action": action,
                "dataset": dataset,
                "partition": partition,
                "tier_from": tier_from,
                "tier_to": tier_to,
                "rows": int(rows),
                "bytes": int(bytes),
                "checksum": checksum,
                "run_id": run_id,
                "reason": reason,
                "details": details or {},
                "prev_hash": last_hash,
            }
            record["hash"] = self.hash_of(record)
            if self._log.create(_name(record["seq"]), canonical(record) + b"\n"):
                self._write_anchor(record)
                signed = {"seq": record["seq"], "hash": record["hash"],
                          "mac": anchor_mac(record["seq"], record["hash"], self._key)}
                self._anchors.create(_name(record["seq"]), canonical(signed) + b"\n")  # never replaced
                return record
        raise AuditError(f"could not append to {self.location} after {_APPEND_ATTEMPTS} attempts (heavy contention)")

    def _write_anchor(self, record: dict[str, Any]) -> None:
        current = self.head()
        if current is not None and current.get("seq", 0) >= record["seq"]:
            return  # a concurrent writer already anchored a newer record
        self._anchor.replace("head.json", canonical({"seq": record["seq"], "hash": record["hash"]}) + b"\n")

    # ---------------------------------------------------------------------------------- verifying

    def verify(self) -> AuditVerification:
        """Check every record's hash, the links between them, contiguous seqs and the anchor."""
        problems: list[str] = []
        names = self._seq_names()
        expected_seq, prev_hash, count = 1, GENESIS, 0
        for seq, name in names:
            label = f"record {seq:012d}"
            if seq != expected_seq:
                missing = f"{expected_seq:012d}" + ("" if seq == expected_seq + 1 else f"..{seq - 1:012d}")
                problems.append(f"{label}: record(s) {missing} removed (gap before it)")
            body = self._log.read(name)
            if body is None:
                problems.append(f"{label}: vanished while verifying")
                expected_seq = seq + 1
                continue
            count += 1
            try:
                record = json.loads(body)
            except json.JSONDecodeError as exc:
                problems.append(f"{label}: not valid JSON ({exc.msg}): altered")
                expected_seq, prev_hash = seq + 1, None
                continue
            if record.get("seq") != seq:
                problems.append(f"{label}: holds seq {record.get('seq')!r}: records reordered or renamed")
            if record.get("hash") != self.hash_of(record):
                problems.append(f"{label}: hash mismatch: its content was altered")
            if prev_hash is not None and record.get("prev_hash") != prev_hash and seq == expected_seq:
                problems.append(f"{label}: prev_hash does not match the hash of record {seq - 1:012d}: "
                                "a record before it was altered, replaced or reordered")
            expected_seq, prev_hash = seq + 1, record.get("hash")
        head = self.head()
        if head is not None:
            last_seq = names[-1][0] if names else 0
            if head["seq"] > last_seq:
                problems.append(f"anchor names record {head['seq']:012d} but the log ends at {last_seq:012d}: "
                                "newest record(s) removed")
            else:
                body = self._log.read(_name(head["seq"]))
                try:
                    anchored = json.loads(body) if body else {}
                except json.JSONDecodeError:
                    anchored = {}  # already reported above as not valid JSON
                if anchored.get("hash") != head["hash"]:
                    problems.append(f"record {head['seq']:012d}: differs from the anchor (head.json): altered")
        elif names:
            problems.append("the anchor (head.json) is missing while the log has records")
        problems += self._check_anchors(names[-1][0] if names else 0)
        return AuditVerification(ok=not problems, records=count, problems=problems, head=head)

    def _check_anchors(self, last_seq: int) -> list[str]:
        """Each signed anchor against the log: a rewritten history differs from what was anchored at append."""
        problems: list[str] = []
        for name in self._anchors.names():
            match = _NAME.match(name)
            body = self._anchors.read(name) if match else None
            if not match or body is None:
                continue
            seq = int(match[1])
            try:
                anchor = json.loads(body)
                valid = hmac.compare_digest(str(anchor.get("mac", "")),
                                            anchor_mac(int(anchor["seq"]), str(anchor["hash"]), self._key))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                valid = False
            if not valid or anchor.get("seq") != seq:
                problems.append(f"record {seq:012d}: its anchor in {self.anchor_location} is not validly signed")
                continue
            if seq > last_seq:
                problems.append(f"record {seq:012d}: anchored but missing from the log (newest records removed)")
                continue
            body = self._log.read(_name(seq))
            try:
                logged = json.loads(body) if body else {}
            except json.JSONDecodeError:
                logged = {}
            if logged.get("hash") != anchor["hash"]:
                problems.append(f"record {seq:012d}: differs from the hash anchored when it was appended "
                                f"({self.anchor_location}): the history was rewritten from here")
        return problems
