"""Batch framing: many events per Kafka record, one event per record without the header."""

from __future__ import annotations

from typing import NamedTuple

from driftline.sdk.contract.wire import BATCH_HEADER, pack, unpack


class Rec(NamedTuple):
    topic: str
    key: bytes
    value: bytes


def test_records_group_by_topic_and_key_and_unpack_to_the_events() -> None:
    records = [Rec("a", b"m", b'{"i":0}'), Rec("b", b"m", b'{"i":1}'), Rec("a", b"m", b'{"i":2}'),
               Rec("a", b"n", b'{"i":3}')]
    chunks = pack(records, 1024)
    assert [(t, k, idx) for t, k, idx, _, _ in chunks] == [("a", b"m", [0, 2]), ("b", b"m", [1]), ("a", b"n", [3])]
    for _, _, indexes, value, headers in chunks:
        assert unpack(value, headers) == [records[i].value for i in indexes]
        assert headers == ([BATCH_HEADER] if len(indexes) > 1 else [])


def test_a_batch_stays_within_max_bytes() -> None:
    records = [Rec("t", b"", b"x" * 9) for _ in range(10)]  # 10 bytes each with its newline
    chunks = pack(records, 30)
    assert [idx for _, _, idx, _, _ in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert all(len(value) <= 30 for _, _, _, value, _ in chunks)


def test_unpack_reads_header_mappings_and_buffers() -> None:
    assert unpack(b"1\n2", {"driftline-format": memoryview(b"ndjson")}) == [b"1", b"2"]
    assert unpack(b"1\n2", [("other", b"x")]) == [b"1\n2"]
    assert unpack(b"1\n2", None) == [b"1\n2"]
