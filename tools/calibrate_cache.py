"""Measure the semantic-cache guard on labelled prompt pairs.

Each input line is a JSON object ``{"id", "a", "b", "same_answer", "kind"}``: ``a`` is the
cached prompt, ``b`` the new one, and ``same_answer`` is true when a correct response to
``a`` also correctly responds to ``b``. The script embeds both prompts with the cache's
embedder, runs ``decide`` on every pair and prints precision, recall, the false hits per
kind and a sweep of similarity thresholds.

    python -m tools.calibrate_cache PAIRS.jsonl [--threshold 0.8] [--half odd] [--show-misses]

``--half`` keeps only the pairs whose id ends in an odd (or even) number. Word lists tuned
while reading one half can then be measured on the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.cache.embeddings import Embedder
from services.cache.semantic import DEFAULT_POLICY, MatchDecision, SemanticPolicy, decide


@dataclass(frozen=True)
class Pair:
    """One labelled pair of prompts."""

    id: str
    cached: str
    new: str
    same_answer: bool
    kind: str


@dataclass(frozen=True)
class Scores:
    """Counts and rates of one run of the guard over the pairs."""

    true_hits: int
    false_hits: int
    positives: int
    negatives: int

    @property
    def precision(self) -> float:
        served = self.true_hits + self.false_hits
        return self.true_hits / served if served else 1.0

    @property
    def recall(self) -> float:
        return self.true_hits / self.positives if self.positives else 0.0


def load_pairs(path: Path) -> list[Pair]:
    """Read labelled pairs from a JSON Lines file."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append(
                Pair(row["id"], row["a"], row["b"], bool(row["same_answer"]), row.get("kind", ""))
            )
        except (ValueError, KeyError) as exc:
            raise SystemExit(f"{path}:{number}: invalid pair line: {exc}") from exc
    return pairs


def select_half(pairs: Sequence[Pair], half: str) -> list[Pair]:
    """Return the pairs whose id ends in an odd number (``half="odd"``) or an even one.

    Raises SystemExit naming the id when an id does not end in digits.
    """
    selected = []
    for pair in pairs:
        match = re.search(r"(\d+)$", pair.id)
        if match is None:
            raise SystemExit(f"invalid pair id {pair.id!r}: --half needs ids that end in a number")
        if (int(match.group(1)) % 2 == 1) == (half == "odd"):
            selected.append(pair)
    return selected


def similarities(embedder: Embedder, pairs: Sequence[Pair]) -> np.ndarray:
    """Return the cosine similarity of each pair's prompts."""
    cached = embedder.embed([p.cached for p in pairs])
    new = embedder.embed([p.new for p in pairs])
    return np.einsum("ij,ij->i", cached, new)


def evaluate(
    pairs: Sequence[Pair], sims: np.ndarray, policy: SemanticPolicy
) -> list[MatchDecision]:
    """Run the guard on every pair."""
    return [decide(p.cached, p.new, float(s), policy) for p, s in zip(pairs, sims, strict=True)]


def score(pairs: Sequence[Pair], decisions: Sequence[MatchDecision]) -> Scores:
    """Count true and false hits."""
    true_hits = sum(1 for p, d in zip(pairs, decisions, strict=True) if d.accept and p.same_answer)
    false_hits = sum(
        1 for p, d in zip(pairs, decisions, strict=True) if d.accept and not p.same_answer
    )
    positives = sum(1 for p in pairs if p.same_answer)
    return Scores(true_hits, false_hits, positives, len(pairs) - positives)


def report(
    pairs: Sequence[Pair], sims: np.ndarray, policy: SemanticPolicy, show_misses: bool
) -> None:
    """Print the scores at ``policy``, the false hits by kind and a threshold sweep."""
    decisions = evaluate(pairs, sims, policy)
    scores = score(pairs, decisions)
    print(f"pairs: {len(pairs)} ({scores.positives} same answer, {scores.negatives} different)")
    print(f"policy: {policy}")
    print(
        f"precision {scores.precision:.3f}  recall {scores.recall:.3f}  "
        f"true hits {scores.true_hits}  false hits {scores.false_hits}"
    )

    kinds = sorted({p.kind for p in pairs})
    print("\nkind               pairs  true  hits  false hits")
    for kind in kinds:
        members = [(p, d) for p, d in zip(pairs, decisions, strict=True) if p.kind == kind]
        hits = sum(1 for _, d in members if d.accept)
        false = sum(1 for p, d in members if d.accept and not p.same_answer)
        true = sum(1 for p, _ in members if p.same_answer)
        print(f"{kind:18} {len(members):5}  {true:4}  {hits:4}  {false:10}")

    reasons = Counter(d.reason for d in decisions)
    print("\nreasons: " + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common()))

    false_hits = [
        (p, d) for p, d in zip(pairs, decisions, strict=True) if d.accept and not p.same_answer
    ]
    if false_hits:
        print("\nfalse hits:")
        for pair, decision in false_hits:
            print(
                f"  {pair.id} [{pair.kind}] sim {decision.similarity:.3f}: "
                f"{pair.cached!r} -> {pair.new!r}"
            )

    if show_misses:
        print("\nmissed same-answer pairs:")
        for pair, decision in zip(pairs, decisions, strict=True):
            if pair.same_answer and not decision.accept:
                print(
                    f"  {pair.id} {decision.reason} sim {decision.similarity:.3f}: "
                    f"{pair.cached!r} -> {pair.new!r}"
                )

    print("\nthreshold sweep, guard on / similarity only:")
    print("threshold  precision  recall  false hits | precision  recall  false hits")
    for threshold in np.arange(0.50, 1.0, 0.05):
        guarded = score(
            pairs, evaluate(pairs, sims, dataclasses.replace(policy, threshold=float(threshold)))
        )
        plain_accept = [MatchDecision(bool(s >= threshold), float(s), "") for s in sims]
        plain = score(pairs, plain_accept)
        print(
            f"{threshold:9.2f}  {guarded.precision:9.3f}  {guarded.recall:6.3f}  "
            f"{guarded.false_hits:10} | "
            f"{plain.precision:9.3f}  {plain.recall:6.3f}  {plain.false_hits:10}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, embed the pairs and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path, help="JSON Lines file of labelled prompt pairs")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_POLICY.threshold,
        help=f"minimum cosine similarity (default {DEFAULT_POLICY.threshold})",
    )
    parser.add_argument(
        "--half",
        choices=("odd", "even"),
        help="measure only the pairs whose id ends in an odd or an even number",
    )
    parser.add_argument(
        "--show-misses",
        action="store_true",
        help="also list the same-answer pairs the guard rejects",
    )
    args = parser.parse_args(argv)

    pairs = load_pairs(args.pairs)
    if args.half:
        pairs = select_half(pairs, args.half)
    if not pairs:
        print(f"{args.pairs}: no pairs", file=sys.stderr)
        return 1
    embedder = Embedder.load()
    sims = similarities(embedder, pairs)
    report(
        pairs, sims, dataclasses.replace(DEFAULT_POLICY, threshold=args.threshold), args.show_misses
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
