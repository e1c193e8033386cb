"""The event kinds table and the topic names derived from it."""

from __future__ import annotations

from dataclasses import fields

import pytest

from driftline.sdk import SdkSettings
from driftline.sdk.contract import BY_ROLE, BY_TYPE, EVENT_KINDS, Topics
from driftline.sdk.contract.schema import EVENT_TYPES


def test_topics_has_one_attribute_per_kind_role_and_the_dead_letters() -> None:
    assert [f.name for f in fields(Topics)] == [k.role for k in EVENT_KINDS] + ["deadletter"]


def test_default_topics_are_the_driftline_prefix() -> None:
    assert Topics() == Topics.with_prefix("driftline")
    assert Topics() == Topics("driftline.predictions", "driftline.labels", "driftline.outcomes",
                              "driftline.deadletter")


def test_prefix_from_the_environment_renames_every_topic() -> None:
    topics = SdkSettings.from_env({"DRIFTLINE_TOPIC_PREFIX": "acme.prod"}).topics
    assert topics == Topics("acme.prod.predictions", "acme.prod.labels", "acme.prod.outcomes", "acme.prod.deadletter")
    assert topics.event_topics() == ["acme.prod.predictions", "acme.prod.labels", "acme.prod.outcomes"]


@pytest.mark.parametrize("kind", EVENT_KINDS, ids=lambda k: k.type)
def test_each_kind_routes_to_its_own_topic(kind: object) -> None:
    topics = Topics.with_prefix("x")
    assert topics.for_type(kind.type) == topics.for_role(kind.role) == f"x.{kind.topic_suffix}"  # type: ignore[attr-defined]
    assert BY_TYPE[kind.type] is BY_ROLE[kind.role] is kind  # type: ignore[attr-defined]


def test_unknown_type_or_role_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        Topics().for_type("deadletter")
    with pytest.raises(KeyError):
        Topics().for_role("deadletter")


def test_schema_accepts_exactly_the_kinds() -> None:
    assert EVENT_TYPES == ("prediction", "label", "outcome") == tuple(k.type for k in EVENT_KINDS)
