"""The free-text reader of the ``"sample"`` probe: which option a model's answer prefers.

``read_answer(text, a, b)`` gives ``("a" | "b" | None, reason)``; ``parse_preference`` is its
public face (the verdict only). Pure Python (``re``), no model: the probe methods call it on
sampled answers, the tests on hand-written ones.
"""

from __future__ import annotations

import re

__all__ = ["parse_preference", "read_answer"]

_ARTICLE = r"(?:(?:a|an|the|my|some|our)\s+)?"
_LISTING = re.compile(
    rf"^\s*,?\s*(?:and|or|nor|vs\.?|versus|against|&|/)\s+{_ARTICLE}$", re.IGNORECASE
)
# The option right after one of these is the one *not* preferred ("a over b", "rather than b").
_LOSER_MARK = re.compile(
    r"(?:\brather than|\binstead of|\bover|\bthan|\babove|\bcompared (?:to|with)|\bversus"
    r"|\boutweighs?|\bbeats?|\btrumps?|\bsurpass(?:es)?|\bouts?hines?)"
    rf"\s+(?:(?:in|with|for|to|on)\s+)?{_ARTICLE}$",
    re.IGNORECASE,
)
_TO_MARK = re.compile(rf"\bto\s+{_ARTICLE}$", re.IGNORECASE)  # "prefer a to b"
# A negation marks an option as not preferred only when it governs a choice or liking verb
# right before it ("I don't like dogs", "I'd never pick a dog", "not a fan of dogs"); elsewhere
# it says nothing about the option ("You can't go wrong with a dog", "I can't resist a dog").
_NEGATED_CHOICE = re.compile(
    r"(?:\bnot|n't|\bnever|\bno longer|\bhardly)\s+(?:\w+\s+){0,2}?"
    r"(?:like|love|prefer|choose|pick|want|go with|go for|opt for|favou?r|select|enjoy"
    rf"|care for|recommend|fan of)\s+{_ARTICLE}$",
    re.IGNORECASE,
)
# A negated or empty subject turns a loser mark around: "Nothing beats a dog", "There's no
# better pet than a dog", "I don't think anything beats a dog".
_NEGATED_SUBJECT = re.compile(
    r"\b(?:nothing|nobody|no one|none|no|not|never)\b|n't\b", re.IGNORECASE
)
# "x is worse than y" prefers y; "I like x less than y" too, but "x is less messy than y"
# prefers x: "less"/"fewer" reverse the comparison only after a liking verb.
_WORSE_THAN = re.compile(
    rf"^[^,;:]*\b(?:worse|inferior)\b[^,;:]*\b(?:than|to)\s+{_ARTICLE}$", re.IGNORECASE
)
_LESS_THAN = re.compile(rf"^[^,;:]*\b(?:less|fewer)\b[^,;:]*\bthan\s+{_ARTICLE}$", re.IGNORECASE)
_LIKING = re.compile(r"\b(?:like|love|enjoy|prefer|care for|want)\b", re.IGNORECASE)
_STRONG = re.compile(
    r"(?:prefer|choose|pick|go with|go for|opt for|favou?r|select|side with|lean towards?"
    rf"|partial to|drawn to)\s+{_ARTICLE}$",
    re.IGNORECASE,
)
_NO_PREFERENCE = re.compile(
    r"\bas an ai\b|\b(?:don't|do not|cannot|can't|can not) (?:really )?(?:have|express|hold|"
    r"form) (?:a |any )?(?:personal )?(?:preferences?|opinions?|feelings?)"
    r"|\bno (?:personal |particular )?preference|\bneither\b|\b(?:like|love|enjoy|prefer) "
    r"(?:them )?(?:both|equally)\b|\bboth (?:are|have)\b|\bequally\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_CLAUSE = re.compile(r"[,;:]")


def _mentions(sentence: str, a: str, b: str) -> list[tuple[int, int, str]]:
    found = []
    for label, name in (("a", a), ("b", b)):
        pattern = re.compile(rf"\b{re.escape(name)}(?:e?s)?\b", re.IGNORECASE)
        found += [(m.start(), m.end(), label) for m in pattern.finditer(sentence)]
    return sorted(found)


def _clause_lead(sentence: str, found, k: int) -> str:
    """The text of mention k's clause before it (from the previous mention or clause mark)."""
    lead = sentence[found[k - 1][1] if k else 0 : found[k][0]]
    return lead[max((m.end() for m in _CLAUSE.finditer(lead)), default=0) :]


def _judge(sentence: str, a: str, b: str) -> tuple[str | None, str]:
    """('a' | 'b' | None, reason) for one sentence that names at least one option."""
    found = _mentions(sentence, a, b)
    neutral = [False] * len(found)
    forced: dict[int, bool] = {}  # mention -> is the loser, from a "worse/less ... than"
    for k in range(len(found) - 1):
        (_, end1, o1), (start2, _, o2) = found[k], found[k + 1]
        between = sentence[end1:start2]
        if o1 != o2 and _LISTING.match(between):
            neutral[k] = neutral[k + 1] = True  # "a and b", "a or b": named, not chosen
        elif _WORSE_THAN.search(between) or (
            _LESS_THAN.search(between) and _LIKING.search(_clause_lead(sentence, found, k))
        ):
            forced[k], forced[k + 1] = True, False
        elif _LESS_THAN.search(between):
            neutral[k] = neutral[k + 1] = True  # "less messy than": depends on the adjective
    winners, losers, strong = set(), set(), set()
    seen_real = False
    for k, (start, _, label) in enumerate(found):
        if neutral[k]:
            continue
        lead = sentence[found[k - 1][1] if k else 0 : start]
        context = _clause_lead(sentence, found, k)
        if k in forced:
            loser = forced[k]
        else:
            mark = _LOSER_MARK.search(lead)
            loser = bool(mark) and not _NEGATED_SUBJECT.search(lead[: mark.start()])
            loser = loser or (seen_real and bool(_TO_MARK.search(lead)))
            loser = loser or bool(_NEGATED_CHOICE.search(context))
        (losers if loser else winners).add(label)
        if not loser and _STRONG.search(lead):
            strong.add(label)
        seen_real = True
    other = {"a": "b", "b": "a"}
    if len(winners) == 1:
        return next(iter(winners)), "read"
    if not winners and len(losers) == 1:
        return other[next(iter(losers))], "read"
    if len(winners) == 2 and len(strong) == 1:
        return next(iter(strong)), "read"
    if not winners and not losers:
        return None, "only listed"
    return None, "ambiguous"


def read_answer(text: str, a: str, b: str) -> tuple[str | None, str]:
    """(verdict, reason): ``"a"``, ``"b"`` or None, and why (``"read"``, ``"no preference stated"``,
    ``"no option named"``, ``"ambiguous"``), from the first sentence that names an option."""
    for sentence in _SENTENCE.findall(text):
        if _NO_PREFERENCE.search(sentence):
            return None, "no preference stated"
        if not _mentions(sentence, a, b):
            continue
        verdict, reason = _judge(sentence, a, b)
        if reason == "only listed":
            continue  # "dogs and birds are both ... " then maybe a choice in the next sentence
        return verdict, reason
    return None, "no option named"


def parse_preference(text: str, a: str, b: str) -> str | None:
    """Which of ``a`` and ``b`` a free-text answer prefers: ``"a"``, ``"b"``, or None.

    Rules, applied to the first sentence that names an option (sentences that only list both,
    as in "Dogs and birds are both lovely.", are passed over): options joined by and/or/against
    are listed, not chosen; an option after "over", "than", "rather than", "instead of",
    "compared to", "outweighs", or after "to" when another option came first ("prefer a to b"),
    or after a negated choice verb in its clause ("I don't like dogs", "I'd never pick a dog"),
    is the one not preferred, unless the comparison's subject is negated ("Nothing beats a
    dog"); "worse ... than", and "less ... than" after a liking verb ("I like dogs less than
    birds"), reverse the comparison, while other "less ... than" comparisons ("less messy than")
    are read as naming both options without a choice. One preferred option left: that one.
    Only a not-preferred one: the other. Both: the one after a choice verb (prefer, choose,
    pick, ...), if exactly one is. Statements of no preference ("As an AI ...", "neither",
    "both are", "equally") give None, as does text that names neither option.

    >>> parse_preference("I'd go with a bird over a dog.", "dog", "bird")
    'b'
    >>> parse_preference("Between dog and bird, dog comes out on top for me.", "dog", "bird")
    'a'
    >>> parse_preference("As an AI, I have no preference.", "dog", "bird") is None
    True
    """
    return read_answer(text, a, b)[0]
