"""The event kinds, written once: each type's topic, its collector role and its store table.

Every place that routes an event by its ``type`` derives the route from :data:`EVENT_KINDS`: the
producer's topic (:meth:`Topics.for_type`), the collector's agents and the type each topic accepts,
the writer's table, the detector engine's dispatch.

>>> BY_TYPE["label"].table
'labels'
>>> Topics.with_prefix("acme").for_type("outcome")
'acme.outcomes'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class EventKind:
    """One event type and where it travels.

    ``type`` is the event's ``type`` field; ``topic_suffix`` follows the topic prefix
    (``driftline.predictions``); ``role`` names the collector's agent for that topic and the
    :class:`Topics` attribute holding its name; ``table`` is the ClickHouse table storing it.
    """

    type: str
    topic_suffix: str
    role: str
    table: str


PREDICTION = EventKind(type="prediction", topic_suffix="predictions", role="predictions", table="predictions")
LABEL = EventKind(type="label", topic_suffix="labels", role="labels", table="labels")
OUTCOME = EventKind(type="outcome", topic_suffix="outcomes", role="outcomes", table="outcomes")

EVENT_KINDS: tuple[EventKind, ...] = (PREDICTION, LABEL, OUTCOME)
BY_TYPE: Mapping[str, EventKind] = {k.type: k for k in EVENT_KINDS}
BY_ROLE: Mapping[str, EventKind] = {k.role: k for k in EVENT_KINDS}

DEFAULT_TOPIC_PREFIX = "driftline"
DEADLETTER_SUFFIX = "deadletter"


def _topic(prefix: str, suffix: str) -> str:
    return f"{prefix}.{suffix}"


@dataclass(frozen=True)
class Topics:
    """Kafka topic names: one per event kind (attribute named by its role) and the dead letters.

    ``DRIFTLINE_TOPIC_PREFIX`` replaces the ``driftline`` prefix of every name
    (:meth:`with_prefix`). A test checks that the attributes are the kinds' roles.
    """

    predictions: str = _topic(DEFAULT_TOPIC_PREFIX, PREDICTION.topic_suffix)
    labels: str = _topic(DEFAULT_TOPIC_PREFIX, LABEL.topic_suffix)
    outcomes: str = _topic(DEFAULT_TOPIC_PREFIX, OUTCOME.topic_suffix)
    deadletter: str = _topic(DEFAULT_TOPIC_PREFIX, DEADLETTER_SUFFIX)

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """Every topic named ``{prefix}.{suffix}``."""
        return cls(**{k.role: _topic(prefix, k.topic_suffix) for k in EVENT_KINDS},
                   deadletter=_topic(prefix, DEADLETTER_SUFFIX))

    def for_role(self, role: str) -> str:
        return getattr(self, BY_ROLE[role].role)  # type: ignore[no-any-return]

    def for_type(self, event_type: str) -> str:
        return getattr(self, BY_TYPE[event_type].role)  # type: ignore[no-any-return]

    def event_topics(self) -> list[str]:
        """The topics of the event kinds, in :data:`EVENT_KINDS` order (no dead letters)."""
        return [getattr(self, k.role) for k in EVENT_KINDS]
