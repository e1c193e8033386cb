"""Free text in string features: the rule that tells it from a category, and its per-hour summary.

A string feature can hold categories (``plan = "pro"``) or free text (a support message). Free text
must not be copied into the categorical rollup (issue 15: every distinct message becomes a row,
and whatever PII the scrubber missed is copied a second time) and gives no useful top-categories
chart anyway. So each string value is classified by :class:`TextRule`, in SQL, per value:

* **free text** when it is longer than ``max_category_chars`` characters, or has at least
  ``min_words`` whitespace-separated words (prose: practically every value is distinct), or
  contains a scrubber placeholder (``<PERSON>``, ``<PHONE_NUMBER>``, ...) next to other text;
* a **category** otherwise, including a value that is exactly one placeholder (a column of masked
  e-mails is one category, ``<EMAIL_ADDRESS>``).

Why per value, in SQL, and not per feature in the writer: the rollups are defined by SQL over the
raw rows, and the same SELECT fills them (a roll of each closed hour, ``feature_rolls.py``), rebuilds them
(``rollups.rebuild``) and answers the partial hours at a range's edges and the dashboard's raw
panels. A per-value rule gives all of these the same answer with no state; a per-feature verdict
learnt by the writer ("this feature looked like text so far") is state the raw table does not
hold, so a rebuild or a raw query could not reproduce it, two collectors could disagree, and the
first values of a new feature would leak before the verdict. The price: a feature that mixes
short and long values is split, its short values counted as categories and its long ones as
text (the dashboard shows both). High-cardinality short tokens (ids, hashes) are not free text by
this rule: they stay categories.

:data:`TEXT_SELECT` summarises text values per (model, version, hour, feature) and length bucket
(four per doubling of the length): how many, their total, shortest and longest length, how many
held at least one placeholder, and the placeholders counted by entity type. The dashboard runs it
over the raw log (``dashboard/text_panel.py``). It is not a materialized view: a 14th view on
``predictions`` made chDB 26.9 intermittently skip other views of the same insert (label joins and
shadow pairs went missing in ``tests/dashboard/test_rollups.py``); rolled per closed hour as the
feature rollup is now (``feature_rolls.py``), it would need no view.

The rule is part of the stored data's definition: changing :data:`TEXT_RULE` changes the feature
rollup's SQL, so ``rollups.ensure`` rebuilds ``rollup_features_1h`` from the raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from driftline.collector.store.tables import DATABASE as DB
from driftline.sdk.contract import PREDICTION

#: a placeholder the scrubber leaves where it masked an entity (``<ENTITY_TYPE>``)
PLACEHOLDER_RE = "<([A-Z][A-Z0-9_]*)>"


@dataclass(frozen=True)
class TextRule:
    """When a string feature value is free text (the thresholds' one home)."""

    #: longer than this many characters (Unicode code points): free text
    max_category_chars: int = 64
    #: at least this many whitespace-separated words: free text
    min_words: int = 5

    def __post_init__(self) -> None:
        if self.max_category_chars < 1 or self.min_words < 2:
            raise ValueError("TextRule: max_category_chars must be >= 1 and min_words >= 2")

    def sql(self, v: str) -> str:
        """A ClickHouse boolean expression: the string expression ``v`` is free text."""
        return (f"(lengthUTF8({v}) > {self.max_category_chars} "
                f"OR length(splitByWhitespace({v})) >= {self.min_words} "
                f"OR (position({v}, '<') > 0 AND match({v}, '{PLACEHOLDER_RE}') "
                f"AND NOT match({v}, '^{PLACEHOLDER_RE}$')))")


TEXT_RULE = TextRule()

# Length bucket: four equal-width buckets per doubling of the length (1-7 exact, 8-15 by 2, ...),
# so at most ~4 × log2(max_text_chars) rows per feature and hour.
_LEN = "lengthUTF8(txt)"
_W = f"bitShiftLeft(toUInt32(1), toUInt8(greatest(0, toInt32(floor(log2(greatest({_LEN}, 1)))) - 2)))"
_ES = f"extractAll(txt, '{PLACEHOLDER_RE}')"
# (mapFilter, not arrayFilter over arrayZip: with the latter chDB 26.9 silently skipped other views
# of the table on some inserts)
_TEXT_MAP = f"mapFilter((k, v) -> {TEXT_RULE.sql('v')}, features_str)"

#: per hour and text feature of the served predictions in ``{src}`` matching ``{where}``
TEXT_SELECT = f"""
SELECT model, model_version, toDateTime(toStartOfHour(timestamp), 'UTC') AS hour, feature,
       toUInt32(intDiv({_LEN}, {_W}) * {_W}) AS len_bin, count() AS n, sum(toUInt64({_LEN})) AS chars,
       min(toUInt32({_LEN})) AS len_lo, max(toUInt32({_LEN})) AS len_hi,
       countIf(notEmpty({_ES})) AS flagged,
       sumMap(mapFromArrays(arrayDistinct({_ES}),
                            arrayMap(e -> toUInt64(countEqual({_ES}, e)), arrayDistinct({_ES})))) AS entities
FROM {{src}} ARRAY JOIN mapKeys({_TEXT_MAP}) AS feature, mapValues({_TEXT_MAP}) AS txt
WHERE variant NOT LIKE 'shadow%' AND {{where}}
GROUP BY model, model_version, hour, feature, len_bin"""

__all__ = ["PLACEHOLDER_RE", "TEXT_RULE", "TEXT_SELECT", "TextRule"]
