"""The event timestamp: what producers write, what the collector and detectors read."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from driftline.sdk.contract.timestamps import TIMESTAMP_PATTERN, format_timestamp, parse_timestamp, timestamp_seconds

# Each stamp schema v1 accepts, and the instant it names (written out by hand: the oracle must not
# be fromisoformat, which before Python 3.11 reads neither Z nor 1, 7 or 9 fraction digits).
UTC = timezone.utc
STAMPS = {
    "2026-11-24T03:22:12Z": datetime(2026, 11, 24, 3, 22, 12, tzinfo=UTC),
    "2026-11-24T03:22:12.1Z": datetime(2026, 11, 24, 3, 22, 12, 100000, tzinfo=UTC),
    "2026-11-24T03:22:12.123Z": datetime(2026, 11, 24, 3, 22, 12, 123000, tzinfo=UTC),
    "2026-11-24T03:22:12.123456Z": datetime(2026, 11, 24, 3, 22, 12, 123456, tzinfo=UTC),
    "2026-11-24T03:22:12.123456789Z": datetime(2026, 11, 24, 3, 22, 12, 123456, tzinfo=UTC),
    "2026-11-24T03:22:12+02:00": datetime(2026, 11, 24, 1, 22, 12, tzinfo=UTC),
    "2026-11-24T03:22:12.5-05:30": datetime(2026, 11, 24, 8, 52, 12, 500000, tzinfo=UTC),
    "2026-11-24T03:22:12.1234567+00:00": datetime(2026, 11, 24, 3, 22, 12, 123456, tzinfo=UTC),
    "1969-12-31T23:59:59.999999Z": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
}


def test_format_is_utc_with_microseconds() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert format_timestamp(1_795_000_932_123_456_789) == "2026-11-18T11:22:12.123456Z"
    # the cached date part follows the second, forwards and back
    assert format_timestamp(1_795_000_933_000_000_999) == "2026-11-18T11:22:13.000000Z"
    assert format_timestamp(1_795_000_932_999_999_999) == "2026-11-18T11:22:12.999999Z"


@pytest.mark.parametrize("ts_ns", [0, 1, 1_795_000_932_123_456_789, 4_102_444_799_999_999_000])
def test_format_round_trips_and_matches_the_schema(ts_ns: int) -> None:
    text = format_timestamp(ts_ns)
    assert re.match(TIMESTAMP_PATTERN, text)
    assert parse_timestamp(text) == datetime.fromtimestamp(ts_ns // 1000 * 1000 / 1e9, timezone.utc) \
        .replace(microsecond=ts_ns // 1000 % 1_000_000)
    assert timestamp_seconds(text) == (ts_ns // 1000) / 1_000_000


@pytest.mark.parametrize("text", STAMPS)
def test_parse_is_aware_utc_and_seconds_agree(text: str) -> None:
    assert re.match(TIMESTAMP_PATTERN, text)
    parsed = parse_timestamp(text)
    assert parsed.tzinfo is timezone.utc
    assert parsed == STAMPS[text]
    assert timestamp_seconds(text) == parsed.timestamp()


def test_fractions_past_the_microsecond_are_dropped() -> None:
    assert parse_timestamp("2026-11-24T03:22:12.123456789Z").microsecond == 123456
    assert timestamp_seconds("2026-11-24T03:22:12.123456789Z") == timestamp_seconds("2026-11-24T03:22:12.123456Z")


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z"])
def test_not_a_timestamp_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)
    with pytest.raises(ValueError):
        timestamp_seconds(text)
