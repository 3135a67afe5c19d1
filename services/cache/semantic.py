"""The guard that decides whether a semantic cache hit may be served.

Cosine similarity of sentence embeddings cannot tell "How many legs does a spider have?"
from "How many legs does an ant have?". On hand-labelled pairs, all-MiniLM-L6-v2 scored
many near misses (one entity, number, negation or direction changed) above 0.95, and true
paraphrases anywhere from 0.5 to 1.0. So a hit is served only when the similarity passes
a threshold and a lexical comparison finds no difference that could change the response.
Both prompts must be in the same natural language and contain the same numbers and
operators, negations, format and length constraints, quoted strings and code, and the
same content words in the same roles.

The comparison ignores letter case, punctuation, word forms (Snowball stemming, except
for the English past tense), function words, politeness and filler, question frames ("how
do I", "what are the steps to"), British against American spelling, and reordering that
keeps every word in its clause and role. Whole clauses and phrases such as "in Python" may
move.

Reworded prompts are served too when every word found on one side only is explained. Such
a word shares a synonym group with a word of the other side ("delivery" and "shipping"),
or it is an English light verb, hedge or question-frame noun ("get", "should", "rules").
The groups and neutral words are listed in ``services.cache.paraphrase_words``. "What
causes X" counts as "why X", and a prompt that joins several questions serves a prompt
that asks one of them. Reworded prompts may move words around, so for them only relation
words are compared, not word order: "to" against "from", or "from" or "than" that moved
to another word.

The guard prefers a miss to a wrong response. Only listed synonyms count as the same word.
Embeddings of single words cannot separate synonyms from swaps: all-MiniLM-L6-v2 rates
"delivery"/"shipping" 0.69 and "nervous"/"anxious" 0.73, but "Monday"/"Tuesday" and
"husband"/"wife" 0.87 and "Japan"/"China" 0.75 (cosine of ``Embedder.embed`` on each word).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import snowballstemmer  # type: ignore[import-untyped]

from services.cache.paraphrase_words import (
    ALIASES,
    CAUSE_WORDS,
    NEUTRAL_WORDS,
    OTHER_SYNONYM_GROUPS,
    SYNONYM_GROUPS,
)

ACCEPTED = "accepted"
BELOW_THRESHOLD = "below_threshold"
LANGUAGE_MISMATCH = "language_mismatch"
NUMBER_MISMATCH = "number_mismatch"
NEGATION_MISMATCH = "negation_mismatch"
FORMAT_MISMATCH = "format_mismatch"
ENTITY_MISMATCH = "entity_mismatch"
AUDIENCE_MISMATCH = "audience_mismatch"
DIRECTION_MISMATCH = "direction_mismatch"
QUESTION_MISMATCH = "question_mismatch"
TENSE_MISMATCH = "tense_mismatch"
ADDED_CONTENT = "added_content"
MISSING_CONTENT = "missing_content"
NO_CONTENT = "no_content"
TOO_LONG = "too_long"


@dataclass(frozen=True)
class SemanticPolicy:
    """Settings of the semantic-hit guard."""

    threshold: float = 0.70
    """Minimum cosine similarity of the two prompts' embeddings, in [-1, 1].

    The word checks make the decision, and the threshold is a safety net. On 208
    hand-labelled development pairs, the guard served no wrong response at any threshold
    down to 0.50, and true paraphrases scored from 0.50 to 1.0.
    """
    max_compared_words: int = 400
    """Prompts with more words than this are served only when their word sequences are equal."""
    typo_tolerance: bool = True
    """Read an English non-word as the dictionary word it misspells ("recieve" as "receive")."""


DEFAULT_POLICY = SemanticPolicy()


@dataclass(frozen=True)
class MatchDecision:
    """Whether a cached response may serve a new prompt, and why."""

    accept: bool
    """True when the cached response may be returned for the new prompt."""
    similarity: float
    """Cosine similarity of the two prompts' embeddings."""
    reason: str
    """``accepted`` or the first check that failed, such as ``number_mismatch``."""


def decide(
    cached_prompt: str, new_prompt: str, similarity: float, policy: SemanticPolicy = DEFAULT_POLICY
) -> MatchDecision:
    """Decide whether the response cached for ``cached_prompt`` may serve ``new_prompt``.

    ``similarity`` is the cosine similarity of the two prompts' embeddings. The decision
    is directional: a cached prompt that joins several questions serves a new prompt
    that asks one of them, but not the reverse. Otherwise the guard is symmetric and
    accepts only prompts that ask the same thing under the same constraints.
    """

    def verdict(reason: str) -> MatchDecision:
        return MatchDecision(accept=reason == ACCEPTED, similarity=similarity, reason=reason)

    if similarity < policy.threshold:
        return verdict(BELOW_THRESHOLD)
    if _plain_text(cached_prompt) == _plain_text(new_prompt):
        return verdict(ACCEPTED)

    cached = _analyse(cached_prompt)
    new = _analyse(new_prompt)
    if cached.language != new.language:
        if cached.language and new.language and (cached.confident or new.confident):
            return verdict(LANGUAGE_MISMATCH)
        # One side is too short to tell: read both in the language of the clearer one.
        language = cached.language if cached.confident or new.language is None else new.language
        cached = _analyse(cached_prompt, language)
        new = _analyse(new_prompt, language)

    if (
        len(cached.tokens) > policy.max_compared_words
        or len(new.tokens) > policy.max_compared_words
    ):
        same = [t.text for t in cached.tokens] == [t.text for t in new.tokens]
        return verdict(ACCEPTED if same else TOO_LONG)

    reason = _compare(cached, new, policy)
    if reason in {MISSING_CONTENT, QUESTION_MISMATCH} and _answers_part_of(
        cached_prompt, cached, new
    ):
        reason = ACCEPTED
    return verdict(reason)


# --- comparison ---------------------------------------------------------------------------


def _compare(cached: _Analysis, new: _Analysis, policy: SemanticPolicy) -> str:
    if cached.numbers != new.numbers or cached.operators != new.operators:
        return NUMBER_MISMATCH
    if cached.negations != new.negations:
        return NEGATION_MISMATCH
    if cached.formats != new.formats:
        return FORMAT_MISMATCH
    # Quotation marks are optional ("what does 'layover' mean"); quoted words are content
    # words anyway. Two different quoted strings, or different code, are different requests.
    if cached.quoted and new.quoted and cached.quoted != new.quoted:
        return ENTITY_MISMATCH
    if cached.code != new.code:
        return ENTITY_MISMATCH
    if cached.questions != new.questions and _is_english(cached) and _is_english(new):
        cached, new = _align_question_frames(cached, new)
    if cached.questions != new.questions:
        return QUESTION_MISMATCH
    # Past forms without an auxiliary ("What caused X?") are not detected, so only two
    # prompts that both show a tense can disagree.
    if cached.tenses and new.tenses and cached.tenses != new.tenses:
        return TENSE_MISMATCH

    # Sets, not counts, because "a Roth IRA and a traditional IRA" means "Roth vs traditional IRA".
    cached_words = Counter({t.text: 1 for t in cached.tokens if not t.is_number})
    new_words = Counter({t.text: 1 for t in new.tokens if not t.is_number})
    if cached_words != new_words:
        only_cached = cached_words - new_words
        only_new = new_words - cached_words
        if policy.typo_tolerance and cached.language == "en":
            corrections = _typo_corrections(only_cached, only_new, cached, new)
            if corrections:
                new = dataclasses.replace(
                    new,
                    tokens=tuple(
                        dataclasses.replace(t, text=corrections.get(t.text, t.text))
                        for t in new.tokens
                    ),
                )
                only_cached -= Counter(set(corrections.values()))
                only_new -= Counter(set(corrections))
        if only_cached or only_new:
            reason = _word_difference_reason(only_cached, only_new, cached, new)
            reworded = None
            if reason not in _UNRECONCILABLE and _reading_language(cached, new) is not None:
                reworded = _reconcile(only_cached, only_new, cached, new)
            if reworded is None:
                return reason
            cached, new = reworded
            if not cached.tokens:
                return NO_CONTENT
            return _reworded_structure_reason(cached, new)

    if not cached.tokens:
        return NO_CONTENT
    return _structure_reason(cached, new)


def _answers_part_of(cached_prompt: str, cached: _Analysis, new: _Analysis) -> bool:
    """Return True when the new prompt asks one of several questions the cached prompt asks.

    A response to "How much protein and how many calories are in X?" also answers "How
    much protein is in X?", but not the reverse. The cached prompt must join questions
    ("and how", "and why", or two question marks), and the new prompt must use only its
    content words, numbers and question words, with the same negations and format.
    """
    if not (_is_english(cached) and _is_english(new)):
        return False
    if not _SEVERAL_QUESTIONS_RE.search(cached_prompt):
        return False
    if new.numbers - cached.numbers or new.operators - cached.operators:
        return False
    if new.negations != cached.negations or new.formats != cached.formats:
        return False
    if new.quoted - cached.quoted or new.code != cached.code or new.questions - cached.questions:
        return False
    if cached.tenses and new.tenses - cached.tenses:
        return False
    new_words = {t.text for t in new.tokens}
    if not new_words or new_words - {t.text for t in cached.tokens}:
        return False
    # Words left out must come from the other questions, not from a statement that sets the
    # context: "I have a cat. Is chocolate toxic?" does not serve "Is chocolate toxic?".
    for sentence in _SENTENCE_END_RE.split(cached_prompt.strip()):
        if sentence.endswith(("?", "？")):
            continue
        statement = _analyse(sentence, cached.language)
        if {t.text for t in statement.tokens} - new_words:
            return False
    return _reworded_structure_reason(cached, new) == ACCEPTED


# The space after the end of a sentence; ".tar.gz" and "3.5" do not end one.
_SENTENCE_END_RE = re.compile(r"(?<=[.?!。？！])\s+")
_SEVERAL_QUESTIONS_RE = re.compile(
    r"\band (?:how|what|why|which|who|whom|when|where|whether)\b|\?.*\S.*\?",
    re.IGNORECASE | re.DOTALL,
)


def _word_difference_reason(
    only_cached: Counter[str], only_new: Counter[str], cached: _Analysis, new: _Analysis
) -> str:
    surface = {cached.surface.get(w, w) for w in only_cached} | {
        new.surface.get(w, w) for w in only_new
    }
    if surface & _ALL_LANGUAGE_WORDS:
        return LANGUAGE_MISMATCH
    if surface & _UNIT_WORDS:
        return NUMBER_MISMATCH
    # "safe" against "unsafe" flips the request, but "advantages and disadvantages" on one
    # side only does not.
    cached_surface = {cached.surface.get(w, w) for w in only_cached}
    new_surface = {new.surface.get(w, w) for w in only_new}
    negated = any(
        _is_negated_form(a, b) or _is_negated_form(b, a)
        for a in cached_surface
        for b in new_surface
    )
    if surface & _NEGATIVE_VERBS or negated:
        return NEGATION_MISMATCH
    if not (only_cached and only_new):
        return ADDED_CONTENT if only_new else MISSING_CONTENT
    # A word replaced by another: label the kind of swap when the words show it.
    if surface & _DIRECTION_WORDS:
        return DIRECTION_MISMATCH
    if surface & _AUDIENCE_WORDS:
        return AUDIENCE_MISMATCH
    return ENTITY_MISMATCH


# Differences that rewording never explains: a language, a unit or a negation changed.
_UNRECONCILABLE = frozenset({LANGUAGE_MISMATCH, NUMBER_MISMATCH, NEGATION_MISMATCH})


def _is_english(analysis: _Analysis) -> bool:
    """Return True when the prompt was read with the English word lists."""
    return _lexicon(analysis.language) is _EN


def _reading_language(cached: _Analysis, new: _Analysis) -> str | None:
    """Return the language whose synonym groups apply to both prompts, or None."""
    if _is_english(cached) and _is_english(new):
        return "en"
    if cached.language == new.language and cached.language in OTHER_SYNONYM_GROUPS:
        return cached.language
    return None


def _reconcile(
    only_cached: Counter[str], only_new: Counter[str], cached: _Analysis, new: _Analysis
) -> tuple[_Analysis, _Analysis] | None:
    """Return both prompts with synonyms merged and neutral words dropped, or None.

    Each word found on one side only must either share a synonym group with a word of the
    other side, or be an English neutral word (a light verb, hedge or question-frame noun).
    Then the word sets are equal again, and the caller compares the relation words of the
    rewritten prompts. None means some word stays unexplained.
    """
    language = _reading_language(cached, new) or "en"
    english = language == "en"
    parent: dict[str, str] = {}

    def root(word: str) -> str:
        while parent.get(word, word) != word:
            word = parent[word]
        return word

    dropped: dict[int, set[str]] = {id(cached): set(), id(new): set()}
    for side_only, side, other in ((only_cached, cached, new), (only_new, new, cached)):
        other_words = {t.text for t in other.tokens if not t.is_number}
        for word in side_only:
            partners = [
                w
                for w in other_words
                if _are_synonyms(word, w, language)
                or (english and _is_participle_of(word, side, w, other))
            ]
            for partner in partners:
                parent[root(word)] = root(partner)
            if partners:
                continue
            surface = side.surface.get(word, word)
            if english and surface in NEUTRAL_WORDS and not (
                surface in _RECEIVING_VERBS and other.words & _GIVING_VERBS
            ):
                dropped[id(side)].add(word)
                continue
            return None

    def rewrite(analysis: _Analysis) -> _Analysis:
        drop = dropped[id(analysis)]
        tokens = tuple(
            dataclasses.replace(t, text=root(t.text)) for t in analysis.tokens if t.text not in drop
        )
        surface = {root(k): v for k, v in analysis.surface.items()}
        return dataclasses.replace(analysis, tokens=tokens, surface=surface)

    cached, new = rewrite(cached), rewrite(new)
    if {t.text for t in cached.tokens} != {t.text for t in new.tokens}:
        return None
    return cached, new


# "get" and "take" add no meaning of their own, unless the other prompt contains "give" or
# "send". Those are function words, never content words, yet "get a refund" and "give a
# refund" differ.
_RECEIVING_VERBS = frozenset("get gets got getting gotten take takes took taking taken".split())
_GIVING_VERBS = frozenset(
    "give gives gave given giving send sends sent sending lend lends lent offer".split()
)


def _are_synonyms(a: str, b: str, language: str) -> bool:
    """Return True when two stems share a synonym group and agree on the past-form mark."""
    base_a, _, past_a = a.partition("~")
    base_b, _, past_b = b.partition("~")
    if past_a != past_b:
        return False
    groups = _synonym_groups(language)
    return bool(groups.get(base_a, frozenset()) & groups.get(base_b, frozenset()))


def _is_participle_of(word: str, side: _Analysis, partner: str, other: _Analysis) -> bool:
    """Return True for a past form against a form of the same verb that is not in the present.

    "an order I placed" matches "after placing an order", and "what caused X" matches "what
    were the causes of X". The past form and the bare present stay apart ("I loved you",
    "I love you"), unless the other prompt shows the past tense too.
    """
    base, _, past = word.partition("~")
    partner_base, _, partner_past = partner.partition("~")
    if base != partner_base or past == partner_past:
        return False
    plain, plain_side = (partner, other) if past else (word, side)
    return plain_side.surface.get(plain, plain).endswith("ing") or "past" in plain_side.tenses


@functools.lru_cache(maxsize=16)
def _synonym_groups(language: str) -> dict[str, frozenset[int]]:
    """Map each stem of the language's synonym groups to the numbers of the groups."""
    lines = SYNONYM_GROUPS if language == "en" else OTHER_SYNONYM_GROUPS.get(language, ())
    lexicon = _lexicon(language)
    groups: dict[str, set[int]] = {}
    for number, line in enumerate(lines):
        for word in line.split():
            stem = lexicon.normalise(word).partition("~")[0]
            groups.setdefault(stem, set()).add(number)
    return {stem: frozenset(numbers) for stem, numbers in groups.items()}


def _align_question_frames(cached: _Analysis, new: _Analysis) -> tuple[_Analysis, _Analysis]:
    """Read "what causes X" as "why X" and "what is the recovery time" as "how long".

    A question word present on one side only is matched to a content word of the other
    side: a cause word that opens a clause ("what led to", "what makes") for "why", or a
    noun of the same question anywhere ("the number of", "the location of"). The matched
    word is removed from the content words, and the question word is counted on both sides.
    """
    for kind, words in _QUESTION_NOUNS.items():
        for side, other in ((cached, new), (new, cached)):
            if side.questions[kind] != other.questions[kind] + 1:
                continue
            frame = _clause_opening_word(other, words, anywhere=kind != "why")
            if frame is None:
                continue
            questions = other.questions.copy()
            questions[kind] += 1
            aligned = dataclasses.replace(
                other,
                tokens=tuple(t for t in other.tokens if t is not frame),
                questions=questions,
            )
            if other is cached:
                cached = aligned
            else:
                new = aligned
            break
    return cached, new


def _clause_opening_word(
    analysis: _Analysis, words: frozenset[str], anywhere: bool = False
) -> _Token | None:
    """Return the first content token of a clause whose word is in ``words``.

    Only the first content word of each clause is looked at, because "what causes X" asks
    why X happens while "what does X cause" asks for its effects. With ``anywhere``, every
    token is looked at.
    """
    seen_clauses: set[int] = set()
    for token in analysis.tokens:
        if token.clause in seen_clauses and not anywhere:
            continue
        seen_clauses.add(token.clause)
        if analysis.surface.get(token.text, token.text) in words:
            return token
    return None


# Question kinds and the content words that ask the same: "how many" and "the number of".
_QUESTION_NOUNS = {
    "why": CAUSE_WORDS,
    "duration": frozenset({"time", "duration", "length"}),
    "quantity": frozenset({"number", "amount", "quantity", "count", "total"}),
    "age": frozenset({"age"}),
    "distance": frozenset({"distance"}),
    "frequency": frozenset({"frequency"}),
    "when": frozenset({"date", "day", "year"}),
    "where": frozenset({"location", "place"}),
}


def _structure_reason(cached: _Analysis, new: _Analysis) -> str:
    """Check that the content words keep their relation words, clauses and order.

    The word sets are already equal here. Reordering is harmless when whole clauses move
    ("I have X. How do I Y?"), when a phrase set off by a comma moves ("On credit cards,
    what is APR?"), or when the two sides of "or", "and" or "vs" swap. "From A to B" against
    "from B to A", "Did A beat B" against "Did B beat A", or "3 pm in Paris, what time in
    Rome" against the reverse keep the words and change the question.
    """
    for word, cached_relations in cached.relations_by_word().items():
        new_relations = new.relations_by_word().get(word, set())
        # A relation word present on one side only is rephrasing ("to cancel" against
        # "cancel"); the same word under two different relations is a swap.
        if cached_relations and new_relations and cached_relations != new_relations:
            return DIRECTION_MISMATCH

    if _relation_moved(cached, new):
        return DIRECTION_MISMATCH
    if not _clauses_compatible(cached.clauses(), new.clauses()):
        return DIRECTION_MISMATCH
    if not _clauses_compatible(new.clauses(), cached.clauses()):
        return DIRECTION_MISMATCH
    return ACCEPTED


# "to" is left out because it also marks infinitives ("a visa to visit Japan").
_REWORDED_DIRECTIONS = frozenset({"from", "than", "before", "after", "until", "against"})


def _reworded_structure_reason(cached: _Analysis, new: _Analysis) -> str:
    """Check that reworded prompts keep each word's direction.

    Rewording moves words and changes plain prepositions ("stains in a carpet", "stains from
    a carpet"), so word order and most relation words are not compared. A word that follows
    "to" on one side and "from" on the other, or "before" against "after", still rejects.

    NOTE: a swap of roles marked only by word order or by "to" ("explain to Alice what Bob
    did") is not detected when the prompts are also reworded.
    """
    new_relations = new.relations_by_word()
    for word, cached_relations in cached.relations_by_word().items():
        cached_flat = {r for relation in cached_relations for r in relation}
        new_flat = {r for relation in new_relations.get(word, set()) for r in relation}
        for relation in cached_flat:
            if _OPPOSITE_RELATIONS.get(relation, relation) in new_flat - cached_flat:
                return DIRECTION_MISMATCH
        if ("than" in cached_flat) != ("than" in new_flat) and cached_flat and new_flat:
            return DIRECTION_MISMATCH
    if _relation_moved(cached, new, _REWORDED_DIRECTIONS):
        return DIRECTION_MISMATCH
    return ACCEPTED


def _relation_moved(
    cached: _Analysis, new: _Analysis, relations: frozenset[str] | None = None
) -> bool:
    """Return True when a relation word leaves one word and lands on another.

    "Convert USD to EUR" against "convert EUR to USD", or "explain to Alice what Bob did"
    against "explain to Bob what Alice did". ``relations`` limits the check to those words.
    """

    def flat(analysis: _Analysis) -> dict[str, set[str]]:
        return {
            word: {r for relation in relations for r in relation}
            for word, relations in analysis.relations_by_word().items()
        }

    cached_relations, new_relations = flat(cached), flat(new)
    for word, word_relations in cached_relations.items():
        for relation in word_relations - new_relations.get(word, set()):
            if relations is not None and relation not in relations:
                continue
            for other, other_relations in new_relations.items():
                gained = other_relations - cached_relations.get(other, set())
                if other != word and relation in gained:
                    return True
    return False


_OPPOSITE_RELATIONS = {
    "to": "from",
    "from": "to",
    "before": "after",
    "after": "before",
    "over": "under",
    "under": "over",
    "up": "down",
    "down": "up",
    "on": "off",
    "off": "on",
    "in": "out",
    "out": "in",
}


def _clauses_compatible(side: list[_Clause], other: list[_Clause]) -> bool:
    """Return True when each clause of ``side`` matches one clause of ``other`` or a run of them.

    A clause that overlaps several clauses of the other side must be their concatenation,
    each kept in its own order. A clause that equals one clause of the other side must keep
    its word order unless both contain "or", "and" or "vs".
    """
    for clause in side:
        words = Counter(clause.words)
        overlapping = [o for o in other if Counter(o.words) & words]
        if not overlapping:
            continue
        if len(overlapping) == 1:
            match = overlapping[0]
            match_words = Counter(match.words)
            if match_words == words:
                # Whole phrases may move: "how do I sort a list in Python" asks "in
                # Python, how do I sort a list", while "from A to B" keeps its phrases.
                reordered = match.words != clause.words and match.phrases != clause.phrases
                if reordered and not (match.symmetric and clause.symmetric):
                    return False
                continue
            if words < match_words:
                continue  # the other side's call checks the larger clause
            return False
        if sum((Counter(o.words) for o in overlapping), Counter()) != words:
            return False
        if not _is_concatenation(clause.words, overlapping, clause.symmetric):
            return False
    return True


def _is_concatenation(sequence: tuple[str, ...], parts: list[_Clause], symmetric: bool) -> bool:
    """Return True when ``sequence`` is the parts joined end to end in some order.

    Each part keeps its word order, unless it and the whole both contain "or", "and" or "vs".
    """
    if not parts:
        return not sequence
    for index, part in enumerate(parts):
        head = sequence[: len(part.words)]
        if head == part.words or (
            symmetric and part.symmetric and sorted(head) == sorted(part.words)
        ):
            rest = parts[:index] + parts[index + 1 :]
            if _is_concatenation(sequence[len(part.words) :], rest, symmetric):
                return True
    return False


def _typo_corrections(
    only_cached: Counter[str], only_new: Counter[str], cached: _Analysis, new: _Analysis
) -> dict[str, str]:
    """Map words of the new prompt to cached words one edit away, when one of them is a typo.

    A typo is a word of 5 or more letters that is not in the dictionary while the other is,
    and that ``_is_typo_of`` the other: "recieve" is read as "receive", but "desert" and
    "dessert" both are words and stay different.
    """
    vocabulary = _english_vocabulary()
    corrections: dict[str, str] = {}
    if not vocabulary:
        return corrections
    unmatched_cached = set(only_cached)
    for new_word in only_new:
        new_surface = new.surface.get(new_word, new_word)
        for cached_word in sorted(unmatched_cached):
            cached_surface = cached.surface.get(cached_word, cached_word)
            if min(len(cached_surface), len(new_surface)) < 5:
                continue
            if (cached_surface in vocabulary) == (new_surface in vocabulary):
                continue
            if _is_typo_of(cached_surface, new_surface):
                corrections[new_word] = cached_word
                unmatched_cached.discard(cached_word)
                break
    return corrections


def _is_typo_of(a: str, b: str) -> bool:
    """Return True when swapping two adjacent letters, or adding or dropping one letter after
    the first, turns one word into the other ("recieve", "acommodation", "enviroment").

    Substituted letters do not count, because "sulfate" and "sulfite" or "nitrate" and
    "nitrite" differ by one letter, and a changed first letter makes a different word
    ("methanol", "ethanol"). A dropped letter counts only in words of 6 or more letters.
    """
    if a == b or abs(len(a) - len(b)) > 1 or a[0] != b[0]:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    for i in range(1, len(longer)):
        doubled = longer[i] == longer[i - 1]
        if (doubled or len(longer) >= 6) and longer[:i] + longer[i + 1 :] == shorter:
            return True
    return False


def _is_negated_form(a: str, b: str) -> bool:
    """Return True for pairs such as "giftig"/"ungiftig" or "safe"/"unsafe"."""
    return any(b == prefix + a for prefix in ("un", "in", "im", "non", "dis", "ir", "il"))


@functools.lru_cache(maxsize=1)
def _english_vocabulary() -> frozenset[str]:
    """Return the whole words of the embedding model's WordPiece vocabulary, or nothing.

    The vocabulary is a fair English dictionary of about 20,000 lower-case words.
    """
    from services.cache.embeddings import EmbeddingModelError, default_model_dir

    try:
        lines = (default_model_dir() / "vocab.txt").read_text(encoding="utf-8").split()
    except (EmbeddingModelError, OSError):
        return frozenset()
    return frozenset(w for w in lines if w.isalpha() and not w.startswith("##"))


# --- analysis of one prompt ---------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    text: str  # stem of a content word, "#<value>" for a number, "?<kind>" for a question word
    clause: int
    relation: tuple[str, ...]  # relation and negation words right before it, such as ("from",)
    is_number: bool = False


@dataclass(frozen=True)
class _Analysis:
    language: str | None
    confident: bool
    tokens: tuple[_Token, ...]
    numbers: Counter[str]
    operators: Counter[str]
    negations: int
    formats: frozenset[str]
    questions: Counter[str]
    tenses: frozenset[str]
    quoted: frozenset[str]
    code: frozenset[str]
    symmetric_clauses: frozenset[int]
    surface: dict[str, str]  # stem -> one lower-case word it came from
    words: frozenset[str]  # every lower-case word, function words included

    def clauses(self) -> list[_Clause]:
        """Return the non-empty clauses in order, each as its sequence of distinct words.

        Each clause also lists its phrases: a phrase starts at a word with relation words
        before it ("to Rome", "in Python") and runs to the next such word. The words
        before the first relation word form a phrase too.
        """
        words_by_clause: dict[int, list[str]] = {}
        phrases_by_clause: dict[int, list[list[str]]] = {}
        for token in self.tokens:
            words = words_by_clause.setdefault(token.clause, [])
            if token.text not in words:
                words.append(token.text)
            phrases = phrases_by_clause.setdefault(token.clause, [])
            if token.relation or not phrases:
                phrases.append(["@" + "+".join(token.relation)])
            phrases[-1].append(token.text)
        return [
            _Clause(
                tuple(words),
                clause in self.symmetric_clauses,
                frozenset(tuple(phrase) for phrase in phrases_by_clause[clause]),
            )
            for clause, words in words_by_clause.items()
        ]

    def relations_by_word(self) -> dict[str, set[tuple[str, ...]]]:
        """Return, for each word, the non-empty relation-word tuples it appears under."""
        relations: dict[str, set[tuple[str, ...]]] = {}
        for token in self.tokens:
            entry = relations.setdefault(token.text, set())
            if token.relation:
                entry.add(token.relation)
        return relations


@dataclass(frozen=True)
class _Clause:
    words: tuple[str, ...]
    symmetric: bool  # contains "or", "and", "vs" or "between"
    phrases: frozenset[tuple[str, ...]] = frozenset()  # see _Analysis.clauses



_CODE_RE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
_QUOTE_RE = re.compile(
    r"\"([^\"\n]{1,300})\"|“([^”\n]{1,300})”|«([^»\n]{1,300})»|„([^“”\n]{1,300})[“”]"
    r"|「([^」\n]{1,300})」|『([^』\n]{1,300})』|‘([^’\n]{1,300})’|(?<![\w'])'([^'\n]{1,300})'(?![\w])"
)
_PROGRAMMING_NAMES = (
    (re.compile(r"(?<![\w+])c\+\+(?![\w+])", re.IGNORECASE), " cplusplus "),
    (re.compile(r"(?<!\w)([cfj])#(?!\w)", re.IGNORECASE), r" \1sharp "),
    (re.compile(r"(?<![\w.])\.net(?!\w)", re.IGNORECASE), " dotnet "),
    (re.compile(r"(?<=\w)\.js(?!\w)", re.IGNORECASE), "js"),
)
# Numbers are digits with optional separators; "3,000" and "3000" both become 3000.
_TOKEN_RE = re.compile(
    r"(?P<number>(?:(?<![\w)])-)?\d+(?:[.,]\d+)*)"
    r"|(?P<word>[^\W\d_]+(?:['’][^\W\d_]+)*)"
    r"|(?P<minus>(?<![^\s\d(])-(?=\s*\d))"
    r"|(?P<symbol>[+*/=<>^%$€£¥₹~|×÷≠≤≥]|!=)"
    r"|(?P<boundary>[.?!;:,。？！；：、，\n–—]|(?<=\s)-(?=\s+\D))",
)
_THOUSANDS_RE = re.compile(r"^\d{1,3}(,\d{3})+$")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_RE = re.compile(r"[\u3040-\u30ff]")
_HANGUL_RE = re.compile(r"[\uac00-\ud7af]")
_CYRILLIC_RE = re.compile(r"[\u0400-\u04ff]")


def _plain_text(prompt: str) -> str:
    """Return the prompt in lower case with single spaces and no trailing punctuation."""
    text = unicodedata.normalize("NFKC", prompt).casefold()
    return " ".join(text.split()).rstrip(" .?!。？！")


@functools.lru_cache(maxsize=4096)
def _analyse(prompt: str, language: str | None = None) -> _Analysis:
    text = unicodedata.normalize("NFKC", prompt)
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 12 and sum(c.isupper() for c in letters) >= 0.9 * len(letters):
        text = text.lower()  # shouting carries no meaning, unlike "US" against "us"

    code = frozenset(" ".join(m.group(0).strip("`").split()) for m in _CODE_RE.finditer(text))
    text = _CODE_RE.sub(" , ", text)
    quoted = frozenset(
        " ".join(next(g for g in m.groups() if g is not None).casefold().split())
        for m in _QUOTE_RE.finditer(text)
    )
    for pattern, replacement in _PROGRAMMING_NAMES:
        text = pattern.sub(replacement, text)

    detected, confident = _detect_language(text)
    if language is None:
        language = detected
    else:
        confident = False
    lexicon = _lexicon(language)
    return _Tokenizer(lexicon, language, confident, code, quoted).run(text)


class _Tokenizer:
    """Walk one prompt once, collecting content words, numbers, negations and markers."""

    def __init__(
        self,
        lexicon: _Lexicon,
        language: str | None,
        confident: bool,
        code: frozenset[str],
        quoted: frozenset[str],
    ) -> None:
        self.lexicon = lexicon
        self.language = language
        self.confident = confident
        self.code = code
        self.quoted = quoted
        self.tokens: list[_Token] = []
        self.numbers: Counter[str] = Counter()
        self.operators: Counter[str] = Counter()
        self.negations = 0
        self.formats: set[str] = set()
        self.questions: Counter[str] = Counter()
        self.tenses: set[str] = set()
        self.symmetric: set[int] = set()
        self.surface: dict[str, str] = {}
        self.clause = 0
        self.pending: list[str] = []  # relation words waiting for the next content word
        self.clause_has_content = False
        self.clause_opens_with_relation = False  # the clause's first word follows "in", "to" ...

    def run(self, text: str) -> _Analysis:
        words = self._split(text)
        index = 0
        while index < len(words):
            index = self._take(words, index)
        self._flush_pending()
        return _Analysis(
            language=self.language,
            confident=self.confident,
            tokens=tuple(self.tokens),
            numbers=self.numbers,
            operators=self.operators,
            negations=self.negations,
            formats=frozenset(self.formats),
            questions=self.questions,
            tenses=frozenset(self.tenses),
            quoted=self.quoted,
            code=self.code,
            symmetric_clauses=frozenset(self.symmetric),
            surface=self.surface,
            words=frozenset(value for kind, value in words if kind in {"word", "name"}),
        )

    def _split(self, text: str) -> list[tuple[str, str]]:
        """Return (kind, text) pairs: number, word, symbol or boundary; CJK split per character."""
        pieces: list[tuple[str, str]] = []
        for match in _TOKEN_RE.finditer(text):
            kind = match.lastgroup or ""
            value = match.group(0)
            if kind == "word" and _CJK_RE.search(value):
                pieces.extend(("cjk", char) for char in value)
            elif kind == "word":
                pieces.extend(self._split_word(value))
            elif kind == "minus":
                pieces.append(("symbol", "-"))
            else:
                pieces.append((kind, value))
        return pieces

    def _split_word(self, word: str) -> list[tuple[str, str]]:
        lower = word.casefold().replace("’", "'")
        # "US", "IT" and "WHERE" in capitals are names, not the function words "us", "it", "where".
        keep_case = word.isupper() and len(word) >= 2 and lower not in _CAPITALISED_FILLERS
        if "'" not in lower:
            return [("name" if keep_case else "word", lower)]
        head, _, tail = lower.partition("'")
        if tail == "t" and head.endswith("n"):  # don't, can't, won't, isn't
            base = {"ca": "can", "wo": "will", "sha": "shall"}.get(head[:-1], head[:-1])
            return [("word", base), ("word", "not")]
        if tail in {"s", "re", "ve", "ll", "d", "m"}:
            return [("word", head)]
        if head in _ELIDED_PREFIXES:  # French and Italian l'eau, d'un, n'est, dell'acqua
            return [("word", "ne" if head == "n" else head), ("word", tail)]
        return [("word", head), ("word", tail)]

    def _take(self, words: list[tuple[str, str]], index: int) -> int:
        kind, value = words[index]
        lexicon = self.lexicon
        if kind in {"word", "name"}:
            value = ALIASES.get(value, value)
        if kind == "boundary":
            self._start_clause()
            return index + 1
        if kind == "number":
            number = (
                value.replace(",", "") if _THOUSANDS_RE.match(value) else value.replace(",", ".")
            )
            following = words[index + 1] if index + 1 < len(words) else ("", "")
            if following[0] == "word" and following[1] in {"st", "nd", "rd", "th"}:
                self._add_number(number + following[1])  # "1st" is the same as "first"
                return index + 2
            self._add_number(number)
            return index + 1
        if kind == "symbol":
            self.operators[value] += 1
            if value in {"%", "$", "€", "£", "¥", "₹"}:
                self._add_content(value, value)
            return index + 1
        if kind == "cjk":
            return self._take_cjk(words, index)
        if kind == "name":
            if value in lexicon.formats:  # "CSV" and "csv" are the same format
                self.formats.add(lexicon.formats[value])
                self._add_content(lexicon.normalise(value), value)
            else:
                self._add_content(value, value)
            return index + 1

        phrase_end = self._match_phrase(words, index)
        if phrase_end is not None:
            return phrase_end
        if value in lexicon.numbers:
            self._add_number(lexicon.numbers[value])
        elif value in lexicon.negations:
            self.negations += 1
            self.pending.append("not")
        elif value in lexicon.formats:
            self.formats.add(lexicon.formats[value])
            self._add_content(lexicon.normalise(value), value)
        elif value in _PERCENT_WORDS:
            self._add_content("%", value)
        elif value in lexicon.questions:
            following = words[index + 1] if index + 1 < len(words) else ("", "")
            # "when I buy" and "when booking" are conjunctions, "When did" is a question. In
            # English, a conjunction opens a clause that may move as a whole.
            gerund = lexicon is _EN and following[0] == "word" and following[1].endswith("ing")
            if not self.clause_has_content and not gerund:
                self.questions[lexicon.questions[value]] += 1
            elif lexicon is _EN:
                self._start_clause()
        elif lexicon is _EN and value in _SUBORDINATORS:
            self._start_clause()
        elif lexicon is _EN and value in _WH_WORDS and self.clause_opens_with_relation:
            # "In Python how do I ..." is "In Python, how do I ..." without the comma.
            self._start_clause()
        elif value in lexicon.tenses:
            self.tenses.add(lexicon.tenses[value])
        elif value in lexicon.synonyms:
            self._add_content(lexicon.synonyms[value], value)
        elif value in lexicon.symmetric:
            self.symmetric.add(self.clause)
            if value in {"and", "or"}:
                self.clause_has_content = (
                    False  # "Who was X and why is she famous?" contains two questions
                )
        elif value in lexicon.relations:
            self.pending.append(lexicon.relations[value])
        elif value in lexicon.stopwords:
            pass
        else:
            self._add_content(lexicon.normalise(value), value)
        return index + 1

    def _match_phrase(self, words: list[tuple[str, str]], index: int) -> int | None:
        """Handle multi-word markers such as "how many", "step by step" or "quick question"."""
        for phrase, (kind, label) in self.lexicon.phrases.get(words[index][1], ()):
            end = index + len(phrase)
            if end > len(words):
                continue
            if all(
                words[index + k][0] == "word" and words[index + k][1] == part
                for k, part in enumerate(phrase)
            ):
                if kind == "question":
                    if not self.clause_has_content:
                        self.questions[label] += 1
                elif kind == "number":
                    self._add_number(label)
                elif kind == "format":
                    self.formats.add(label)
                elif kind == "negation":
                    self.negations += 1
                    self.pending.append("not")
                # kind == "filler" adds nothing
                return end
        return None

    def _take_cjk(self, words: list[tuple[str, str]], index: int) -> int:
        char = words[index][1]
        if char in _CJK_NEGATIONS:
            self.negations += 1
            self.pending.append("not")
        elif self.language == "zh" and char in _ZH_FUNCTION_CHARS:
            pass
        elif self.language == "ja" and char in _JA_PARTICLES:
            pass
        else:
            self._add_content(char, char)
        # Japanese negation is an ending spelled over several kana: ない, ません, ず.
        if self.language == "ja":
            following = "".join(w[1] for w in words[index : index + 3])
            if following.startswith(("ない", "ません", "なかっ")):
                self.negations += 1
        return index + 1

    def _start_clause(self) -> None:
        self._flush_pending()
        self.clause += 1
        self.clause_has_content = False
        self.clause_opens_with_relation = False

    def _add_number(self, value: str) -> None:
        self._mark_content()
        self.numbers[value] += 1
        self.tokens.append(_Token("#" + value, self.clause, tuple(self.pending), is_number=True))
        self.pending = []

    def _add_content(self, key: str, surface: str) -> None:
        self._mark_content()
        self.tokens.append(_Token(key, self.clause, tuple(self.pending)))
        self.surface.setdefault(key, surface)
        self.pending = []

    def _mark_content(self) -> None:
        if not self.clause_has_content:
            self.clause_opens_with_relation = bool(self.pending)
        self.clause_has_content = True

    def _flush_pending(self) -> None:
        # A particle with no word after it ("turn the heating off") is itself content;
        # "to" or "from" with nothing after it ("explain it to me") carries no meaning.
        for relation in self.pending:
            if relation in _PARTICLES:
                self.tokens.append(_Token("@" + relation, self.clause, ()))
        self.pending = []


def _detect_language(text: str) -> tuple[str | None, bool]:
    """Return (language code, confident) from the script, or from function-word hits."""
    if _KANA_RE.search(text):
        return "ja", True
    if _CJK_RE.search(text):
        return "zh", True
    if _HANGUL_RE.search(text):
        return "ko", True
    cyrillic = len(_CYRILLIC_RE.findall(text))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    if cyrillic > latin:
        return "ru", True

    words = [w.casefold() for w in re.findall(r"[^\W\d_]+", text)]
    scores = {
        code: sum(1 for w in words if w in lexicon.markers) for code, lexicon in _LEXICONS.items()
    }
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, best_score), (_, second_score) = ranked[0], ranked[1]
    if best_score == 0 or best_score == second_score:
        return None, False
    return best, best_score >= 2 and best_score >= 2 * second_score


# --- word lists ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lexicon:
    """Function words of one language, sorted by the role they play in the comparison."""

    stemmer_name: str | None
    stopwords: frozenset[str]  # articles, pronouns, auxiliaries, fillers, question frames
    negations: frozenset[str]
    relations: dict[str, str]  # directional words whose object must stay the same
    symmetric: frozenset[str]  # "or", "and", "vs": swapping their two sides is harmless
    questions: dict[str, str]  # question words that fix the kind of answer: who, when, where
    numbers: dict[str, str]  # number words to digits, ordinals to "1st" style
    formats: dict[str, str]  # words that constrain format or length
    phrases: dict[
        str, list[tuple[tuple[str, ...], tuple[str, str]]]
    ]  # first word -> (phrase, (kind, label))
    tenses: dict[str, str] = dataclasses.field(default_factory=dict)  # auxiliary -> past or future
    synonyms: dict[str, str] = dataclasses.field(
        default_factory=dict
    )  # word -> the word it counts as

    @functools.cached_property
    def markers(self) -> frozenset[str]:
        return self.stopwords | self.negations | frozenset(self.relations) | self.symmetric

    def normalise(self, word: str) -> str:
        if self.stemmer_name is None:
            return word
        if self.stemmer_name != "english":
            return _stem(self.stemmer_name, word)
        word = _american_spelling(word)
        stem = _stem(self.stemmer_name, word)
        # Stemming would merge "I loved you" with "I love you"; keep the past form apart.
        if word.endswith("ed") and stem != word and not stem.endswith("ed"):
            return stem + "~ed"
        return stem


@functools.lru_cache(maxsize=65536)
def _stem(stemmer_name: str, word: str) -> str:
    # Snowball stemmer objects keep state between calls, so threads must not share one unlocked.
    with _STEMMER_LOCK:
        stemmer = _STEMMERS.get(stemmer_name)
        if stemmer is None:
            stemmer = _STEMMERS[stemmer_name] = snowballstemmer.stemmer(stemmer_name)
        return str(stemmer.stemWord(word))


_STEMMERS: dict[str, Any] = {}
_STEMMER_LOCK = threading.Lock()


def _american_spelling(word: str) -> str:
    """Map British spellings to American ones so "summarise" matches "summarize"."""
    word = re.sub(r"(?<=\w{2})is(e|es|ed|ing|ation|ations)$", r"iz\1", word)
    word = re.sub(r"(?<=\w{2})ys(e|es|ed|ing)$", r"yz\1", word)
    if len(word) >= 6:
        word = re.sub(r"(?<=\w{3})our(?=\w*$)", "or", word)
    return re.sub(r"(?<=\w{2})([tb])re$", r"\1er", word)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _mapping(pairs: str) -> dict[str, str]:
    """Parse "a:b c:d" into {"a": "b", "c": "d"}."""
    return dict(pair.split(":", 1) for pair in pairs.split())


def _phrases(
    entries: Iterable[tuple[str, str, str]],
) -> dict[str, list[tuple[tuple[str, ...], tuple[str, str]]]]:
    index: dict[str, list[tuple[tuple[str, ...], tuple[str, str]]]] = {}
    # Longer phrases first, so "i was wondering" wins over a shorter phrase with the same start.
    for phrase, kind, label in sorted(entries, key=lambda e: -len(e[0].split())):
        words = tuple(phrase.split())
        index.setdefault(words[0], []).append((words, (kind, label)))
    return index


_ELIDED_PREFIXES = _words("l d j m n s t c qu dell nell all dall sull un quest")

_FORMAT_WORDS_EN = _mapping(
    "json:json yaml:yaml yml:yaml csv:csv xml:xml html:html markdown:markdown table:table "
    "tables:table tabular:table bullet:bullets bullets:bullets bulleted:bullets numbered:numbered "
    "list:list sentence:sentences sentences:sentences word:words words:words paragraph:paragraphs "
    "paragraphs:paragraphs line:lines lines:lines characters:characters brief:short briefly:short "
    "short:short shorter:short concise:short concisely:short succinct:short summary:short "
    "tl:short detailed:long thorough:long comprehensive:long elaborate:long haiku:haiku poem:poem "
    "limerick:poem tweet:tweet emoji:emoji emojis:emoji oneliner:oneline lambda:oneline"
)
_FORMAT_WORDS_OTHER = _mapping(
    "tabla:table tableau:table tabelle:table tabella:table tabela:table frase:sentences "
    "frases:sentences phrase:sentences phrases:sentences satz:sentences sätze:sentences "
    "palabras:words mots:words wörter:words parole:words palavras:words párrafo:paragraphs "
    "paragraphe:paragraphs absatz:paragraphs lista:list liste:list breve:short bref:short "
    "brève:short kurz:short kurze:short resumen:short résumé:short zusammenfassung:short "
    "riassunto:short resumo:short viñetas:bullets puces:bullets stichpunkte:bullets "
    "detallado:long détaillé:long ausführlich:long dettagliato:long detalhado:long"
)

_EN = _Lexicon(
    stemmer_name="english",
    stopwords=_words(
        # articles, pronouns, auxiliaries and plain prepositions
        "a an the this that these those some any each such i me my mine myself you your yours "
        "yourself we us our ours ourselves it its itself they them their theirs one's someone "
        "somebody something anyone anybody anything am is are be been being do does doing can "
        "could would have has having of at with about as like within via and but so if then "
        "because while whether "
        # question frames, politeness and filler
        "what which how what's whats please pls plz kindly thanks thank thx hi hello hey dear ok "
        "okay um uh er lol haha yo hmm well oh just sorry bother wondering wonder curious u ur "
        "tell explain explaining describe show give let help know want wanted need needed define "
        "definition mean means meant meaning concept way ways method methods steps step procedure "
        "process approach tips tip tricks trick advice advise guide instructions recommend "
        "recommended suggest suggestion suggestions there here also too really actually basically "
        "simply very quite pretty thing things stuff kind possible able currently anyway exactly "
        "main typical typically usually generally common commonly specifically difference "
        "differences differ different best good effective proper correct"
    ),
    negations=_words(
        "not no never without none nobody nothing neither nor cannot except excluding unless non "
        "nope"
    ),
    relations=_mapping(
        "to:to from:from into:to onto:to than:than toward:to towards:to before:before after:after "
        "for:for by:by in:in on:on over:over under:under above:over below:under against:against "
        "until:until till:until up:up down:down out:out off:off back:back forward:forward "
        "instead:instead"
    ),
    # Comparisons are symmetric too: "X vs Y" requests what "how does Y differ from X" requests.
    symmetric=_words(
        "or and vs versus between nor difference differences differ different compare compared "
        "comparison"
    ),
    questions=_mapping("who:who whom:who whose:who when:when where:where why:why"),
    numbers=_mapping(
        "zero:0 one:1 two:2 three:3 four:4 five:5 six:6 seven:7 eight:8 nine:9 ten:10 eleven:11 "
        "twelve:12 thirteen:13 fourteen:14 fifteen:15 sixteen:16 seventeen:17 eighteen:18 "
        "nineteen:19 twenty:20 thirty:30 forty:40 fifty:50 sixty:60 seventy:70 eighty:80 "
        "ninety:90 hundred:100 thousand:1000 million:1000000 billion:1000000000 dozen:12 half:0.5 "
        "twice:2x first:1st second:2nd third:3rd fourth:4th fifth:5th sixth:6th seventh:7th "
        "eighth:8th ninth:9th tenth:10th last:last"
    ),
    formats=_FORMAT_WORDS_EN,
    phrases=_phrases(
        [
            ("how many", "question", "quantity"),
            ("how much", "question", "quantity"),
            ("how long", "question", "duration"),
            ("how often", "question", "frequency"),
            ("how old", "question", "age"),
            ("how far", "question", "distance"),
            ("how come", "question", "why"),
            ("what time", "question", "when"),
            ("step by step", "format", "steps"),
            ("one line", "format", "oneline"),
            ("one sentence", "format", "sentences"),
            ("in short", "format", "short"),
            ("bullet points", "format", "bullets"),
            ("bullet point", "format", "bullets"),
            ("quick question", "filler", ""),
            ("real quick", "filler", ""),
            ("thank you", "filler", ""),
            ("could you", "filler", ""),
            ("would you", "filler", ""),
            ("can you", "filler", ""),
            ("i was wondering", "filler", ""),
            ("walk me through", "filler", ""),
            ("is there", "filler", ""),
            ("as well", "filler", ""),
            ("which one", "filler", ""),
            ("this one", "filler", ""),
            ("that one", "filler", ""),
            ("the one", "filler", ""),
            ("one of", "filler", ""),
            ("no one", "negation", ""),
            ("no longer", "negation", ""),
            ("free of", "negation", ""),
            ("rather than", "negation", ""),
        ]
    ),
    tenses=_mapping(
        "is:present are:present am:present do:present does:present has:present have:present "
        "was:past were:past did:past had:past will:future shall:future"
    ),
    # Gendered pronouns stay, because "a gift for him" and "a gift for her" differ.
    synonyms=_mapping("him:he his:he himself:he her:she hers:she herself:she"),
)


def _other_lexicon(
    stemmer_name: str,
    phrases: list[tuple[str, str, str]],
    stopwords: str,
    negations: str,
    relations: str,
    symmetric: str,
    questions: str,
    numbers: str,
) -> _Lexicon:
    return _Lexicon(
        stemmer_name=stemmer_name,
        stopwords=_words(stopwords),
        negations=_words(negations),
        relations=_mapping(relations),
        symmetric=_words(symmetric),
        questions=_mapping(questions),
        numbers=_mapping(numbers),
        formats=_FORMAT_WORDS_OTHER
        | {
            k: v
            for k, v in _FORMAT_WORDS_EN.items()
            if k in {"json", "yaml", "csv", "xml", "html", "markdown"}
        },
        phrases=_phrases(phrases),
    )


_LEXICONS: dict[str, _Lexicon] = {
    "en": _EN,
    "es": _other_lexicon(
        "spanish",
        [
            ("por qué", "question", "why"),
            ("para qué", "question", "why"),
            ("quiere decir", "filler", ""),
            ("cuánto tiempo", "question", "duration"),
        ],
        "el la los las un una unos unas lo al del de en con por para sobre como y e pero si que "
        "qué cómo como cual cuál cuáles es son está están ser estar soy eres fue era hay he ha "
        "han tengo tiene puedo puede pueden podría debo debe se me te le les nos mi mis tu tus su "
        "sus yo tú usted ustedes este esta estos estas ese esa eso esto mucho muy favor gracias "
        "hola oye explícame explica dime forma manera pasos hacer hace procedimiento método "
        "significa significado",
        "no nunca sin ni nada nadie ningún ninguna ninguno jamás tampoco excepto salvo",
        "a:to hacia:to desde:from hasta:until contra:against antes:before después:after",
        "o u vs entre",
        "quién:who quien:who quiénes:who cuándo:when cuando:when dónde:where donde:where "
        "cuánto:quantity cuánta:quantity cuántos:quantity cuántas:quantity",
        "dos:2 tres:3 cuatro:4 cinco:5 seis:6 siete:7 ocho:8 nueve:9 diez:10 once:11 doce:12 "
        "quince:15 veinte:20 treinta:30 cien:100 ciento:100 mil:1000 primer:1st primero:1st "
        "primera:1st segundo:2nd segunda:2nd tercer:3rd tercero:3rd tercera:3rd",
    ),
    "fr": _other_lexicon(
        "french",
        [
            ("veut dire", "filler", ""),
            ("est-ce que", "filler", ""),
            ("combien de temps", "question", "duration"),
        ],
        "le la les l un une des du de d en dans avec par pour sur comme et mais si que qu quoi "
        "comment quel quelle quels quelles est sont être suis es était a ai as ont avoir peut "
        "peux puis pouvez dois doit faut on il elle ils elles je j tu vous nous me m te t se s "
        "mon ma mes ton ta tes son sa ses notre nos votre vos ce cet cette ces ça cela fait faire "
        "fais plaît merci bonjour salut explique expliquez dis dites façon manière étapes y "
        "procédure méthode signifie",
        "ne n pas jamais sans aucun aucune rien ni sauf plus_jamais",
        "à:to au:to aux:to vers:to depuis:from jusqu:until contre:against avant:before après:after",
        "ou vs entre",
        "qui:who quand:when où:where pourquoi:why combien:quantity",
        "deux:2 trois:3 quatre:4 cinq:5 six:6 sept:7 huit:8 neuf:9 dix:10 onze:11 douze:12 "
        "quinze:15 vingt:20 trente:30 cent:100 mille:1000 premier:1st première:1st deuxième:2nd "
        "second:2nd seconde:2nd troisième:3rd quatrième:4th",
    ),
    "de": _other_lexicon(
        "german",
        [],
        "der die das den dem des ein eine einen einem einer eines in im mit für auf an am bei um "
        "über wie und aber wenn dass ob ist sind war bin bist sein habe hat haben kann kannst "
        "können muss soll sollte man ich du sie er es wir ihr mich mir dich dir sich mein meine "
        "meinen meinem dein deine unser unsere ihre ihren was welche welcher welches bitte danke "
        "hallo erkläre erklär erklären sag mal eigentlich denn doch schritte art weise vorgehen "
        "methode anleitung bedeutet bedeutung",
        "nicht kein keine keinen keinem keiner keines nie niemals ohne weder nichts außer",
        "zu:to zum:to zur:to nach:to von:from vom:from aus:from gegen:against vor:before als:than",
        "oder und vs zwischen",
        "wer:who wen:who wem:who wann:when wo:where wohin:where warum:why wieso:why weshalb:why "
        "wieviel:quantity wieviele:quantity",
        "zwei:2 drei:3 vier:4 fünf:5 sechs:6 sieben:7 acht:8 neun:9 zehn:10 elf:11 zwölf:12 "
        "fünfzehn:15 zwanzig:20 dreißig:30 hundert:100 tausend:1000 erste:1st ersten:1st "
        "erster:1st erstes:1st zweite:2nd zweiten:2nd dritte:3rd dritten:3rd",
    ),
    "pt": _other_lexicon(
        "portuguese",
        [
            ("por que", "question", "why"),
            ("por quê", "question", "why"),
            ("quer dizer", "filler", ""),
            ("quanto tempo", "question", "duration"),
        ],
        "o a os as um uma uns umas do da dos das de em no na nos nas com por pelo pela para sobre "
        "como e mas se que quê qual quais é são está estão ser estar sou foi era há tem tenho "
        "posso pode podem devo deve eu você vocês ele ela eles elas me te lhe nos meu minha meus "
        "minhas seu sua seus suas este esta isto esse essa isso favor obrigado obrigada olá oi "
        "explique explica faço faz fazer forma maneira passos procedimento método significa "
        "significado",
        "não nunca sem nem nada ninguém nenhum nenhuma jamais exceto",
        "ao:to aos:to à:to até:until desde:from contra:against antes:before depois:after",
        "ou vs entre",
        "quem:who quando:when onde:where porque:why quanto:quantity quanta:quantity "
        "quantos:quantity quantas:quantity",
        "dois:2 duas:2 três:3 quatro:4 cinco:5 seis:6 sete:7 oito:8 nove:9 dez:10 onze:11 doze:12 "
        "quinze:15 vinte:20 trinta:30 cem:100 mil:1000 primeiro:1st primeira:1st segundo:2nd "
        "segunda:2nd terceiro:3rd terceira:3rd",
    ),
    "it": _other_lexicon(
        "italian",
        [("vuol dire", "filler", ""), ("quanto tempo", "question", "duration")],
        "il lo la i gli le un uno una l di del della dei delle dello degli in nel nella con per "
        "su sul sulla come e ma se che cosa quale quali è sono sei essere era c ci ho ha hanno "
        "posso può possono devo deve io tu lui lei noi voi loro mi ti si mio mia miei mie tuo tua "
        "suo sua questo questa quello quella favore grazie ciao spiega spiegami dimmi modo "
        "maniera passi fare fa procedimento metodo passaggi significa significato qual",
        "non mai senza né niente nulla nessuno nessuna tranne",
        "a:to al:to alla:to ai:to verso:to da:from dal:from dalla:from fino:until contro:against "
        "prima:before dopo:after",
        "o oppure vs tra fra",
        "chi:who quando:when dove:where perché:why quanto:quantity quanta:quantity "
        "quanti:quantity quante:quantity",
        "due:2 tre:3 quattro:4 cinque:5 sei:6 sette:7 otto:8 nove:9 dieci:10 undici:11 dodici:12 "
        "quindici:15 venti:20 trenta:30 cento:100 mille:1000 primo:1st prima:1st secondo:2nd "
        "seconda:2nd terzo:3rd terza:3rd",
    ),
    "nl": _other_lexicon(
        "dutch",
        [],
        "de het een van in op met voor bij aan als en maar of dat is zijn was ben heb heeft "
        "hebben kan kun kunnen moet moeten ik jij je u hij zij ze wij we mij me mijn jouw uw zijn "
        "haar ons onze wat welke hoe alstublieft alsjeblieft bedankt dank hallo hoi leg uit",
        "niet geen nooit zonder niets niemand behalve",
        "naar:to tot:until vanaf:from uit:from tegen:against voor:before na:after dan:than",
        "of en vs tussen",
        "wie:who wanneer:when waar:where waarom:why hoeveel:quantity",
        "twee:2 drie:3 vier:4 vijf:5 zes:6 zeven:7 acht:8 negen:9 tien:10 twaalf:12 twintig:20 "
        "honderd:100 duizend:1000 eerste:1st tweede:2nd derde:3rd",
    ),
    "ru": _other_lexicon(
        "russian",
        [],
        "в во на с со по для о об у к ко и а но или если что как какой какая какие какое это этот "
        "эта эти тот та то быть есть был была было были я ты вы мы он она они оно мне меня тебя "
        "вам нам мой моя мои твой ваш наш свой себя можно нужно надо ли же бы пожалуйста спасибо "
        "привет объясни объясните расскажи скажи способ",
        "не нет ни никогда без ничего никто кроме",
        "из:from от:from до:until против:against перед:before после:after чем:than",
        "или и vs между",
        "кто:who когда:when где:where куда:where почему:why зачем:why сколько:quantity",
        "два:2 две:2 три:3 четыре:4 пять:5 шесть:6 семь:7 восемь:8 девять:9 десять:10 двадцать:20 "
        "сто:100 тысяча:1000 первый:1st первая:1st первое:1st второй:2nd вторая:2nd третий:3rd",
    ),
}

# Languages without a word list here keep every word as content and are never stemmed.
_BARE = _Lexicon(None, frozenset(), frozenset(), {}, frozenset(), {}, {}, _FORMAT_WORDS_EN, {})
_PARTICLES = _words("up down out off back over forward in on")
# English conjunctions that open a subordinate clause, which may move as a whole:
# "What does X mean when booking a flight?" asks "When booking a flight, what is X?".
_SUBORDINATORS = _words("if because while whenever although though whereas")
_WH_WORDS = _words("how what which")
_PERCENT_WORDS = _words("percent percentage prozent procent percento")
_CAPITALISED_FILLERS = _words("ok okay hi hey lol pls plz thx asap btw fyi imo tl dr")


def _lexicon(language: str | None) -> _Lexicon:
    return _LEXICONS.get(language or "en", _BARE)


# CJK: every Han character is content; these few particles carry no meaning of their own.
_ZH_FUNCTION_CHARS = frozenset("的了吗呢吧啊呀嘛么请您你我")
_JA_PARTICLES = frozenset("はがをにへのとかねよ")
_CJK_NEGATIONS = frozenset("不没無无別别未勿非")

# Words that label why a difference matters. Rewording never explains a differing language,
# unit or negative word, and explains a direction or audience word only by a synonym group.
_NATURAL_LANGUAGES = _words(
    "english spanish french german portuguese italian dutch russian chinese japanese korean "
    "arabic hindi turkish polish swedish norwegian danish finnish greek hebrew czech ukrainian "
    "vietnamese thai indonesian mandarin cantonese latin español inglés francés alemán français "
    "anglais allemand espagnol deutsch englisch französisch spanisch inglese francese tedesco "
    "inglês francês alemão"
)
_PROGRAMMING_WORDS = _words(
    "python javascript js typescript ts java kotlin swift go golang rust c cplusplus csharp "
    "fsharp ruby php perl scala haskell elixir erlang clojure lua r julia dart bash zsh fish "
    "powershell sh sql postgresql postgres mysql sqlite mariadb oracle mongodb redis react vue "
    "angular svelte nextjs nodejs node deno django flask fastapi rails laravel spring express "
    "pandas polars numpy pytorch tensorflow jquery requests aiohttp httpx argparse click typer "
    "pytest unittest junit docker podman kubernetes terraform ansible linux windows macos ubuntu "
    "debian fedora dotnet"
)
_ALL_LANGUAGE_WORDS = _NATURAL_LANGUAGES | _PROGRAMMING_WORDS
_UNIT_WORDS = _words(
    "second seconds minute minutes hour hours day days week weeks month months year years decade "
    "kg g mg lb lbs oz gram grams kilogram kilograms pound pounds ounce ounces km m cm mm mile "
    "miles meter meters metre metres foot feet inch inches litre liter litres liters ml gallon "
    "gallons celsius fahrenheit c f % $ € £ ¥ ₹ euro euros dollar dollars usd eur gbp"
)
_NEGATIVE_VERBS = _words("avoid avoiding evitar éviter vermeiden evitare 避")
_DIRECTION_WORDS = _words(
    "ascending descending upload download import export increase decrease raise raising lower "
    "lowering cut cutting high low higher lower buy sell encrypt decrypt compress decompress "
    "encode decode serialize deserialize landlord tenant employer employee buyer seller forward "
    "back local remote reverse push pull send receive lend borrow inbound outbound upstream "
    "downstream input output min max minimum maximum north south east west left right before "
    "after"
)
_AUDIENCE_WORDS = _words(
    "child children kid kids toddler beginner beginners novice newbie expert experts professional "
    "professionals engineer engineers developer developers student students teacher resident "
    "doctor doctors layperson adult adults school grandma grandmother grandpa senior seniors "
    "scientist statistician economist analyst manager executive"
)
