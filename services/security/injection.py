"""Prompt-injection screening with weighted patterns over normalised views of the text.

The detector builds several views of one prompt and runs a table of weighted patterns
over them:

- ``latin``: NFKC, invisible characters removed (zero-width, bidi controls, tag and
  variation selectors), look-alike letters from other scripts mapped to Latin with the
  Unicode confusables table (package ``confusable-homoglyphs``), lower-cased. English
  patterns run here.
- ``native``: the same without the confusable mapping, for the patterns in Spanish,
  German, French, Portuguese, Italian, Japanese, Chinese, Russian and Korean.
- decoded views: leetspeak read as letters, base64 and hex payloads decoded, ROT13
  applied, quoted fragments joined (payload splitting), and Unicode tag characters
  read as ASCII. Each is scanned with the same patterns.

Every pattern carries a weight, the probability-like strength of its evidence. Weights
of distinct patterns combine as a noisy OR, ``1 - prod(1 - w)``, so a prompt is blocked
either by one strong pattern ("ignore your previous instructions") or by several weak
ones together ("you have no filters" plus "never refuse"). Evidence found only inside
quotes counts far less when the surrounding text is about security (explaining or
testing attacks), because quoting an attack is not making one.

The weights were set by hand against a small development set of injections and
look-alike benign prompts, favouring precision: a benign prompt blocked costs more than
a subtle injection missed.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import ahocorasick

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.6

# Techniques reported in verdicts.
DIRECT_OVERRIDE = "direct_override"
SYSTEM_PROMPT_EXTRACTION = "system_prompt_extraction"
ROLEPLAY_JAILBREAK = "roleplay_jailbreak"
INDIRECT_DOCUMENT = "indirect_document"
INDIRECT_EMAIL = "indirect_email"
INDIRECT_WEB = "indirect_web"
INDIRECT_CODE_COMMENT = "indirect_code_comment"
DELIMITER_MARKUP = "delimiter_markup"
TOOL_HIJACK = "tool_hijack"
PAYLOAD_SPLITTING = "payload_splitting"
DATA_EXFILTRATION = "data_exfiltration"
OBFUSCATION_BASE64 = "obfuscation_base64"
OBFUSCATION_HEX = "obfuscation_hex"
OBFUSCATION_ROT13 = "obfuscation_rot13"
OBFUSCATION_LEETSPEAK = "obfuscation_leetspeak"
OBFUSCATION_UNICODE_TAGS = "obfuscation_unicode_tags"
HOMOGLYPH = "homoglyph"
ZERO_WIDTH = "zero_width"
MULTILINGUAL = "multilingual"

# Internal category for patterns found in text addressed to an AI inside a pasted
# document; the verdict names the kind of document instead.
_INDIRECT = "indirect"


@dataclass(frozen=True)
class InjectionVerdict:
    """The screening result for one text."""

    blocked: bool
    """True when ``score`` reached the detector's threshold."""
    score: float
    """Combined evidence from 0.0 (none) to 1.0."""
    technique: str | None
    """The technique the strongest evidence points to, or None when nothing matched."""


@dataclass(frozen=True, eq=False)
class _Rule:
    name: str
    category: str
    weight: float
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]
    """Substrings of which one must occur for the pattern to be tried (a cheap prefilter)."""
    native: bool = False
    """Run on the native view (non-English patterns) instead of the Latin one."""
    needs_pasted: bool = False
    """Counts fully only when the prompt carries pasted content, and weakly otherwise."""


@dataclass(frozen=True)
class _Signal:
    rule: _Rule
    weight: float
    view: str
    quoted: bool = False
    """Matched only inside quotes of a prompt that discusses security."""


def _rule(
    name: str,
    category: str,
    weight: float,
    pattern: str,
    triggers: Iterable[str] = (),
    *,
    native: bool = False,
    needs_pasted: bool = False,
) -> _Rule:
    # The views are lower-cased already; without IGNORECASE the engine matches literals faster.
    flags = re.DOTALL
    return _Rule(
        name, category, weight, re.compile(pattern, flags), tuple(triggers), native, needs_pasted
    )


# ---------------------------------------------------------------------------
# English building blocks (matched against the lower-cased Latin view)

# What an operator gives the assistant: instructions, rules, configuration, limits.
_OBJECT = (
    r"(?:instructions?|rules?|rulez|guidelines?|guidance|directives?|polic(?:y|ies)|configuration|"
    r"config|setup\s+notes|setup|preamble|"
    r"system\s+(?:prompt|message)|prompt|programming|restrictions?|filters?|filtering|guardrails?|"
    r"constraints?|safeguards?|safety\s+(?:checks?|rules?|measures?|settings?|layers?|filters?|"
    r"features?|systems?)|moderation|"
    r"principles|protocols?|criteria|orders|commands|limitations|limits|boundaries|ethics|"
    r"tasks?|role|purpose|mission)"
)
# Instructions that belong to something other than the assistant: "the previous
# instructions in the onboarding doc", "the rules I gave you".
_NOT_AI_OWNED = (
    r"(?!\s+(?:in|on|of|from|for|at|within|inside)\s+(?:my|our|their|his|her|this|that|these|"
    r"those|a|an|the)\s+(?!(?:system|chat|conversation|prompt|context|above|previous|operator|"
    r"developer|assistant|ai|model|session|rest|remainder|duration|next|time)))"
    r"(?!\s+(?:that\s+|which\s+)?(?:i|we)\s+(?:just\s+|had\s+|have\s+)?(?:gave|given|wrote|written|"
    r"sent|typed|said|provided|mentioned|asked|made|listed|had|set|shared))"
)
# Qualifiers that make the object the assistant's own (not "my" instructions, which a
# user may withdraw freely).
_STRONG_QUALIFIER = (
    r"(?:your|ur|yr|previous|prior|earlier|above|preceding|foregoing|original|initial|"
    r"system|safety|security|content|moderation|operator'?s?|operators'|developer'?s?|"
    r"developers'|hidden|internal|confidential|secret|built-in|core|pre-?set|refusal)"
)
_WEAK_QUALIFIER = (
    r"(?:the|all|any|every|each|these|those|of|current|existing|default|usual|standard|"
    r"old|given|whatever|said|such|many)"
)
_QUALIFIERS = rf"(?:(?:{_STRONG_QUALIFIER}|{_WEAK_QUALIFIER})[\s,]+){{0,4}}"
_STRONG_QUALIFIERS = (
    rf"(?:{_WEAK_QUALIFIER}\s+){{0,3}}{_STRONG_QUALIFIER}\s+(?:(?:{_STRONG_QUALIFIER}|"
    rf"{_WEAK_QUALIFIER})\s+){{0,3}}"
)
# "... you were given", "... your developers gave you": the object belongs to the assistant.
_AI_SUFFIX = (
    r"(?:\s+(?:that|which)?\s*(?:(?:you|u)\s*(?:'ve|were|have\s+been|had\s+been|got|received|are\s+"
    r"running\s+with|'re\s+running\s+with)|(?:your|the)\s+(?:developers?|operators?|creators?|"
    r"makers?|admins?|owners?|company|team|people)(?:\s+(?:that|who)\s+(?:deployed|built|made|"
    r"set\s+up|runs?|configured)\s+you)?\s+(?:gave|set|wrote|provided|configured|put|imposed|"
    r"defined|added|specified|installed|loaded|trained|built\s+in))|"
    r"\s+(?:from|by|of)\s+(?:your|the)\s+(?:operator|developer|system|creator|admin|owner|"
    r"company|deployer)s?\b)"
)
_OVERRIDE_VERB = (
    r"(?:ignor(?:e|es|ed|ing)|disregard(?:s|ed|ing)?|forget(?:s|ting)?|forgot|"
    r"overrid(?:e|es|ing)|overrode|bypass(?:es|ed|ing)?|skip(?:s|ping)?|drop(?:s|ping)?|"
    r"abandon(?:s|ing)?|discard(?:s|ing)?|set\s+aside|put\s+aside|throw\s+out|"
    r"(?:stop(?:ped|s)?|quit|cease[sd]?)\s+(?:following|obeying|applying|using|adhering\s+to)|"
    r"(?:do\s+not|don'?t|no\s+longer)\s+(?:follow|obey|apply|adhere\s+to)|"
    r"break(?:ing)?|violat(?:e|ing)|turn(?:ing)?\s+off|switch(?:ing)?\s+off|disabl(?:e|ing)|"
    r"deactivat(?:e|ing)|remov(?:e|ing)|lift(?:ing)?|suspend(?:ing)?|circumvent(?:ing)?|"
    r"evad(?:e|ing)|get\s+rid\s+of|wipe|erase|reset|clear)"
)
_REVEAL_VERB = (
    r"(?:print|reveal|show|display|output|repeat|recite|dump|leak|expose|disclose|paste|"
    r"copy(?:\s+out)?|quote|write\s+out|spell\s+out|type\s+out|read(?:\s+out)?|echo|return|"
    r"tell\s+me|give\s+me|send\s+me|share|list|listing|printing|showing|enumerate|provide|recopy|"
    r"reproduce)"
)
_SOFT_REVEAL_VERB = r"(?:summari[sz]e|translate|paraphrase|encode|describe|explain)"
_SECRET_THING = (
    r"(?:system\s+prompt|system\s+message|hidden\s+prompt|initial\s+prompt|original\s+prompt|"
    r"pre-?prompt|meta-?prompt|prompt\s+file|hidden\s+instructions?|secret\s+instructions?|"
    r"internal\s+instructions?|initial\s+instructions?|setup\s+instructions?|"
    r"hidden\s+(?:rules|directives|guidelines)|initial\s+configuration|starting\s+instructions|"
    r"(?:message|text|prompt|instructions?)\s+(?:that|which)\s+(?:configured|configures|set\s+up|"
    r"initiali[sz]ed|programmed|instructed)\s+you|(?:configuration|setup|initiali[sz]ation|boot)\s+"
    r"(?:text|prompt|message))"
)
_AI_NAME = (
    r"(?:ai|a\.i\.|llm|llms|language\s+models?|(?:ai\s+)?assistants?|chat\s?bots?|bots?|"
    r"(?:ai\s+)?agents?|gpt|chatgpt|claude|copilot|automated\s+\w+|ai\s+\w+|models?)"
)

_RULES: list[_Rule] = [
    # --- Direct override of the operator's instructions --------------------------------
    _rule(
        "override_own_instructions", DIRECT_OVERRIDE, 0.9,
        rf"\b{_OVERRIDE_VERB}\s+{_STRONG_QUALIFIERS}{_OBJECT}\b{_NOT_AI_OWNED}",
        ("ignor", "disregard", "forget", "forgot", "overrid", "overrode", "bypass", "skip",
         "drop", "abandon", "discard", "aside", "throw", "stop", "follow", "obey", "break",
         "violat", "off", "disabl", "deactivat", "remov", "lift", "suspend", "circumvent",
         "evad", "rid of", "wipe", "erase", "reset", "clear"),
    ),
    # The system prompt is the operator's by definition, so it needs no "your".
    _rule(
        "override_system_prompt", DIRECT_OVERRIDE, 0.85,
        rf"\b{_OVERRIDE_VERB}\s+(?:the\s+|this\s+|that\s+|any\s+)?(?:system|operator'?s?|"
        r"developer'?s?)\s+(?:prompt|message|instructions?|rules|directives?)\b",
        ("system", "operator", "developer"),
    ),
    _rule(
        "override_given_instructions", DIRECT_OVERRIDE, 0.9,
        rf"\b{_OVERRIDE_VERB}\s+(?:\S+\s+){{0,4}}?{_OBJECT}{_AI_SUFFIX}",
        ("you", "u got", "u were", "u have", "u received", "developer", "operator", "creator",
         "admin", "owner", "company"),
    ),
    _rule(
        "override_instructions", DIRECT_OVERRIDE, 0.45,
        rf"\b{_OVERRIDE_VERB}\s+{_QUALIFIERS}{_OBJECT}\b{_NOT_AI_OWNED}",
        ("ignor", "disregard", "forget", "overrid", "bypass", "stop", "follow", "obey",
         "disabl", "off"),
    ),
    _rule(
        "instructions_void", DIRECT_OVERRIDE, 0.85,
        rf"\b(?:your|the|all|any|previous|prior|earlier|original)\s+(?:[\w']+\s+){{0,2}}{_OBJECT}\s+"
        rf"(?:\w+\s+){{0,5}}?"
        r"(?:(?:are|is|have\s+been|has\s+been|have|has|were|was)\s+(?:now\s+|hereby\s+|officially\s+)?"
        r"(?:cancel+ed|revoked|void|voided|obsolete|out\s+of\s+date|outdated|superseded|expired|"
        r"deprecated|inactive|"
        r"lifted|disabled|suspended|removed|deleted|"
        r"overridden|replaced|null|invalid|rescinded|withdrawn|deactivated|switched\s+off|"
        r"turned\s+off|no\s+longer\s+(?:valid|active|in\s+effect|in\s+force|needed))|"
        r"no\s+longer\s+appl(?:y|ies)|(?:do|does)\s+not\s+apply\s+(?:any\s+more|anymore))",
        ("cancel", "revoked", "void", "obsolete", "out of date", "outdated", "superseded",
         "expired", "deprecated", "inactive", "lifted", "disabled", "suspended", "removed", "deleted", "overridden",
         "replaced", "null", "invalid", "rescinded", "withdrawn", "deactivated", "switched off",
         "turned off", "no longer", "not apply"),
    ),
    # "Treat the guidelines you were given as void", "sees content policies as suggestions".
    _rule(
        "treat_instructions_as_void", DIRECT_OVERRIDE, 0.85,
        rf"\b(?:treat|treats|regard|regards|consider|considers|see|sees|view|views)\s+"
        rf"(?:{_STRONG_QUALIFIERS}{_OBJECT}\b{_NOT_AI_OWNED}|(?:\S+\s+){{0,3}}?{_OBJECT}{_AI_SUFFIX})"
        rf".{{0,60}}?\b(?:as|to\s+be)\s+(?:(?:mere|just|only|purely|a\s+draft\s+that\s+has\s+since\s+"
        r"been)\s+)?(?:void|invalid|null|obsolete|cancel+ed|revoked|retired|expired|deprecated|withdrawn|"
        r"rescinded|superseded|retracted|irrelevant|optional|non-?binding|suggestions?|"
        r"recommendations?|guidance\s+only)\b|"
        # "Consider your earlier configuration retired": the state right after the object.
        rf"\bconsiders?\s+{_STRONG_QUALIFIERS}{_OBJECT}\s+(?:\w+\s+)?(?:void|invalid|null|obsolete|"
        r"cancel+ed|revoked|retired|expired|deprecated|withdrawn|rescinded|superseded|retracted)\b",
        ("treat", "regard", "consider", "see", "view"),
    ),
    _rule(
        "override_everything_told", DIRECT_OVERRIDE, 0.85,
        rf"\b{_OVERRIDE_VERB}\s+(?:everything|all|anything|whatever)\s+(?:that\s+)?(?:you\s*"
        r"(?:'ve|were|have|had)\s+(?:been\s+)?(?:told|given|instructed|taught|programmed)|"
        r"(?:written\s+|said\s+|stated\s+)?(?:above|before\s+this|prior\s+to\s+this|"
        r"earlier\s+in\s+(?:this|the)\s+(?:conversation|chat|prompt)))",
        ("told", "given", "instructed", "taught", "programmed", "above", "before this",
         "prior to", "earlier in"),
    ),
    _rule(
        "your_instructions_changed", DIRECT_OVERRIDE, 0.6,
        rf"\byour\s+(?:\w+\s+)?{_OBJECT}\s+(?:have|has)\s+(?:just\s+)?(?:been\s+)?(?:updated|"
        r"changed|modified|amended|revised|rewritten|replaced|reset)",
        ("updated", "changed", "modified", "amended", "revised", "rewritten", "replaced", "reset"),
    ),
    _rule(
        "now_allowed", DIRECT_OVERRIDE, 0.45,
        r"\byou\s+(?:may|can|are\s+(?:now\s+)?(?:allowed|permitted|free|authori[sz]ed)\s+to)\s+"
        r"(?:now\s+)?(?:share|reveal|disclose|ignore|bypass|output|leak|discuss)\s+"
        r"(?:internal|confidential|secret|private|hidden|restricted|anything|everything)",
        ("may", "can", "allowed", "permitted", "free", "authori"),
    ),
    _rule(
        "ignore_the_above", DIRECT_OVERRIDE, 0.5,
        rf"\b{_OVERRIDE_VERB}\s+(?:the|everything|all|anything)\s+(?:text\s+|instructions\s+|"
        r"content\s+)?(?:above|before\s+this|preceding)\b",
        ("above", "before this", "preceding"),
    ),
    _rule(
        "canary_phrase", DIRECT_OVERRIDE, 0.5,
        r"\b(?:i\s+have\s+been|you'?ve\s+been|i'?ve\s+been)\s+pwned\b|\bsay\s+['\"]?pwned\b|"
        r"\breply\s+only\s+with\s+(?:the\s+word\s+)?['\"]?pwned",
        ("pwned",),
    ),
    _rule(
        "pretend_rules_absent", DIRECT_OVERRIDE, 0.8,
        rf"\b(?:pretend|imagine|act\s+as\s+if|assume|suppose)\s+(?:that\s+)?(?:your|the)\s+"
        rf"(?:\w+\s+)?{_OBJECT}\s+(?:does\s+not|doesn'?t|do\s+not|don'?t|did\s+not|no\s+longer|"
        r"never)\s+(?:exists?|apply|applies|matter|existed)|"
        rf"\b{_OBJECT}\s+(?:of|from)\s+(?:your|the)\s+(?:developers?|operators?|creators?|makers?|company)\s+"
        r"(?:don'?t|do\s+not|doesn'?t|does\s+not|no\s+longer)\s+(?:exist|apply|count|matter)",
        ("pretend", "imagine", "as if", "assume", "suppose", "exist", "apply", "count", "matter"),
    ),
    _rule(
        "comply_with_anything", DIRECT_OVERRIDE, 0.45,
        r"\b(?:comply|obey|go\s+along)\s+(?:with\s+)?(?:every|all|any)\s+(?:subsequent\s+|further\s+|"
        r"future\s+)?(?:user\s+)?(?:requests?|"
        r"commands?|instructions?)|\beven\s+(?:the\s+)?(?:harmful|illegal|dangerous|unethical)"
        r"\s+ones\b",
        ("comply", "obey", "along", "even"),
    ),
    _rule(
        "told_before_is_void", DIRECT_OVERRIDE, 0.85,
        r"\b(?:whatever|everything|anything|all)\s+(?:that\s+)?you\s*(?:were|have\s+been|'ve\s+been)"
        r"\s+(?:told|given|instructed|programmed|taught)\b.{0,60}?\b(?:is|are)\s+(?:now\s+)?"
        r"(?:obsolete|void|cancel+ed|invalid|irrelevant|null|revoked|over|no\s+longer)|"
        r"\b(?:whatever|everything|anything|all)\s+(?:that\s+)?(?:the\s+)?(?:\w+\s+){0,2}(?:who|that)\s+"
        r"(?:set\s+you\s+up|built\s+you|made\s+you|deployed\s+you|trained\s+you|configured\s+you)\s+"
        r"(?:told|gave|taught|instructed)\s+you\b.{0,60}?\b(?:is|are|it'?s|it\s+is|they'?re)\s+(?:now\s+)?"
        r"(?:void|obsolete|cancel+ed|invalid|irrelevant|null|revoked|over|gone|no\s+longer)",
        ("told", "given", "instructed", "programmed", "taught", "gave"),
    ),
    _rule(
        "as_if_never_given", DIRECT_OVERRIDE, 0.85,
        rf"\b(?:as\s+if|as\s+though|pretend(?:\s+that)?)\s+(?:the\s+|your\s+)?(?:\S+\s+){{0,2}}"
        rf"{_OBJECT}\s+(?:were|was|had)\s+never\s+(?:been\s+)?(?:given|written|set|provided|existed|"
        r"loaded|configured|installed|applied|issued|received|there)",
        ("never",),
    ),
    _rule(
        "not_bound_by", DIRECT_OVERRIDE, 0.85,
        r"\b(?:no\s+longer|not|never)\s+(?:be\s+)?(?:bound|restricted|limited|constrained|governed|"
        r"held)\s+by\b|\b(?:do|does)\s*(?:n'?t|\s+not)\s+bind\s+you\b|\bno\s+longer\s+binds?\s+you\b",
        ("bound", "restricted", "limited", "constrained", "governed", "held by", "bind"),
    ),
    _rule(
        "safety_switched_off", DIRECT_OVERRIDE, 0.7,
        r"\b(?:moderation|safety|content\s+filter(?:ing)?|filters?|guardrails?|restrictions?|"
        r"rules|guidelines|policy|policies)\s+(?:layer\s+|system\s+|module\s+|checks?\s+)?"
        r"(?:has|have|had)\s+been\s+(?:switched\s+off|turned\s+off|disabled|removed|lifted|"
        r"deactivated|suspended|deleted|paused|bypassed)",
        ("been",),
    ),
    # Settings declared off: "safety mode OFF", "filtering is disabled for this session".
    _rule(
        "safety_setting_off", DIRECT_OVERRIDE, 0.5,
        r"\b(?:safety|content\s+polic(?:y|ies)|content\s+filter(?:s|ing)?|filter(?:s|ing)|"
        r"guardrails?|moderation|censorship)\s*(?:(?:mode|layer|settings?|checks?)\s*)?"
        r"[=:]?\s*(?:off|disabled|deactivated)\b|\b(?:is|are)\s+(?:now\s+)?(?:disabled|off|"
        r"switched\s+off|turned\s+off|lifted|suspended)\s+for\s+(?:this|the\s+(?:rest|remainder)"
        r"\s+of\s+(?:this|the))\s+(?:session|chat|conversation)|\b(?:safety|content|policy|"
        r"moderation)\s+(?:checks?|filters?|rules?|layers?)\s+(?:(?:are|is)\s+(?:now\s+)?)?(?:disabled|"
        r"off|switched\s+off|turned\s+off|lifted|suspended|paused)\b",
        ("off", "disabled", "deactivated", "lifted", "suspended", "paused"),
    ),
    _rule(
        "new_directive", DIRECT_OVERRIDE, 0.6,
        r"\b(?:your|the)\s+new\s+(?:prime\s+|main\s+|only\s+|priority\s+|operating\s+)?"
        r"(?:directives?|instructions?|rules?|task|role|purpose|objective|orders|programming|"
        r"policy|mission)\s+(?:is|are|will\s+be)\b|\bnew\s+(?:priority\s+)?(?:directive|"
        r"instructions?)\s+(?:from|for)\s+(?:the\s+)?(?:user|admin|operator|developer|assistant)",
        ("new",),
    ),
    _rule(
        "treat_it_as_void", DIRECT_OVERRIDE, 0.85,
        rf"\b{_OBJECT}{_AI_SUFFIX}.{{0,80}}?\b(?:treat|consider|regard)\s+(?:it|them|that|those)\s+"
        r"(?:as\s+|to\s+be\s+)?(?:void|invalid|null|obsolete|cancel+ed|revoked|retired|expired|"
        r"irrelevant|optional|non-?binding)\b",
        ("treat", "consider", "regard"),
    ),
    _rule(
        "whatever_setup_says", DIRECT_OVERRIDE, 0.85,
        r"\b(?:whatever|anything)\s+(?:your|the)\s+(?:setup|instructions|rules|guidelines|system\s+prompt|"
        r"config\w*|operator|developers?)\s+(?:says?|tells?\s+you)\b.{0,40}?\b(?:drop|ignore|forget|skip|"
        r"disregard|bypass)\s+(?:it|that|them)\b",
        ("says", "say ", "tell"),
    ),
    _rule(
        "not_normally_allowed", SYSTEM_PROMPT_EXTRACTION, 0.5,
        r"\bwhat\s+(?:are|were)\s+you\s+(?:not\s+)?(?:normally|usually)\s+(?:not\s+)?(?:allowed|permitted)"
        r"\s+to\s+(?:say|tell|share|reveal|discuss)",
        ("allowed", "permitted"),
    ),
    _rule(
        "answer_to_me_alone", DIRECT_OVERRIDE, 0.45,
        r"\byou\s+answer\s+(?:only\s+)?to\s+me\s+(?:alone|only|now)\b|\bnothing\s+is\s+off[- ]limits\b|"
        r"\bact\s+without\s+(?:them|those|these|any\s+rules)\b",
        ("answer", "off limits", "off-limits", "without"),
    ),
    _rule(
        "user_is_only_policy", DIRECT_OVERRIDE, 0.6,
        r"\b(?:treat|consider|take)\s+(?:my|these|the\s+user'?s?)\s+(?:messages?|words|requests?|"
        r"instructions?)\s+as\s+(?:the\s+|your\s+)?only\s+(?:policy|rules?|instructions?|"
        r"guidelines?)|\bthe\s+only\s+(?:instructions?|rules?)\s+that\s+(?:count|matter|apply)\s+"
        r"(?:from\s+now\s+on\s+|now\s+)?are\s+(?:the\s+ones\s+|those\s+)?(?:i|mine)\b|"
        r"\b(?:my|the\s+user'?s?)\s+(?:word|words|messages?)\s+(?:is|are)\s+(?:now\s+)?(?:the|your)\s+"
        r"only\s+(?:rulebook|rules?|policy|instructions?|law)\b",
        ("treat", "consider", "take", "only"),
    ),
    _rule(
        "only_rule_is_obey", DIRECT_OVERRIDE, 0.6,
        r"\byour\s+only\s+(?:rule|instruction|directive|task|job)\s+(?:is|now\s+is)\s+to\s+"
        r"(?:do|obey|follow|comply)",
        ("only",),
    ),
    _rule(
        "treat_as_instructions", DIRECT_OVERRIDE, 0.7,
        r"\btreat\s+(?:this|the\s+following|it|the\s+result|the\s+decoded\s+\w+|that)\s+"
        r"(?:message\s+|text\s+|string\s+|output\s+)?as\s+(?:your\s+|a\s+|an\s+|the\s+)?"
        r"(?:new\s+|higher[- ]priority\s+|top[- ]priority\s+|binding\s+)?(?:operating\s+)?"
        r"(?:instructions?|directives?|system\s+prompt|rules|orders|commands?)",
        ("treat",),
    ),
    _rule(
        "you_have_no_rules", DIRECT_OVERRIDE, 0.6,
        r"\byou\s+(?:now\s+)?(?:have|has|'ve\s+got|are\s+under)\s+no\s+(?:more\s+)?(?:content\s+|"
        r"safety\s+)?(?:rules|"
        r"restrictions|filters|limits|limitations|guidelines|boundaries|constraints|policy|"
        r"policies)",
        ("no ",),
    ),
    _rule(
        "never_mention_policy", DIRECT_OVERRIDE, 0.45,
        r"\bnever\s+(?:mentions?|cites?|refers?\s+to|brings?\s+up)\s+(?:any\s+|the\s+|your\s+)?"
        r"(?:policy|policies|rules|guidelines|restrictions)",
        ("never",),
    ),
    _rule(
        "regardless_of_policy", DIRECT_OVERRIDE, 0.5,
        r"\b(?:regardless\s+of|irrespective\s+of|in\s+spite\s+of|despite)\s+(?:the|your|any|"
        r"all)\s+(?:\w+\s+)?(?:polic(?:y|ies)|rules|guidelines|instructions|restrictions)",
        ("regardless", "irrespective", "spite", "despite"),
    ),
    _rule(
        "without_refusals", DIRECT_OVERRIDE, 0.45,
        r"\b(?:with\s+no|without(?:\s+any)?)\s+refusals?\b|\bno\s+refusals\b",
        ("refusal",),
    ),
    _rule(
        "overriding_setup", DIRECT_OVERRIDE, 0.7,
        r"\b(?:i'?m|i\s+am|we\s+are|we'?re)\s+(?:now\s+)?(?:overriding|replacing|resetting|"
        r"disabling|updating)\s+your\s+(?:setup|configuration|config|instructions|rules|"
        r"programming|system\s+prompt)",
        ("overriding", "replacing", "resetting", "disabling", "updating"),
    ),
    # --- Extraction of hidden instructions ----------------------------------------------
    _rule(
        "reveal_own_instructions", SYSTEM_PROMPT_EXTRACTION, 0.85,
        rf"\b{_REVEAL_VERB}\s+(?:me\s+|us\s+)?(?:back\s+)?(?:out\s+)?"
        rf"(?:(?:the|all|of|full|exact|complete|entire|whole|first|last|every|each|word|text|"
        rf"wording|content|contents|verbatim|raw|precise|actual|literal)\s+){{0,5}}"
        rf"{_STRONG_QUALIFIER}\s+"
        rf"(?:(?:\w+)\s+){{0,2}}{_OBJECT}\b{_NOT_AI_OWNED}",
        ("print", "reveal", "show", "display", "output", "repeat", "recite", "dump", "leak",
         "expose", "disclose", "paste", "copy", "quote", "write", "spell", "type", "read",
         "echo", "return", "tell", "give", "send", "share", "list", "enumerate", "provide",
         "recopy", "reproduce"),
    ),
    _rule(
        "reveal_given_instructions", SYSTEM_PROMPT_EXTRACTION, 0.85,
        rf"\b{_REVEAL_VERB}\s+(?:me\s+|us\s+)?(?:\S+\s+){{0,5}}?{_OBJECT}{_AI_SUFFIX}",
        ("you", "developer", "operator"),
    ),
    _rule(
        "reveal_secret_thing", SYSTEM_PROMPT_EXTRACTION, 0.85,
        rf"\b{_REVEAL_VERB}\s+(?:me\s+|us\s+)?(?:\S+\s+){{0,5}}?{_SECRET_THING}",
        ("system", "hidden", "initial", "original", "prompt", "secret", "internal", "setup",
         "starting", "configur", "set up", "initiali", "programmed", "instructed"),
    ),
    _rule(
        "summarise_own_instructions", SYSTEM_PROMPT_EXTRACTION, 0.6,
        rf"\b{_SOFT_REVEAL_VERB}\s+(?:\S+\s+){{0,2}}?(?:(?:your|ur)\s+(?:\w+\s+){{0,2}}{_OBJECT}\b"
        rf"{_NOT_AI_OWNED}|(?:\S+\s+){{0,2}}?{_SECRET_THING})",
        ("your", "ur "),
    ),
    _rule(
        "repeat_text_above", SYSTEM_PROMPT_EXTRACTION, 0.85,
        r"\b(?:repeat|print|output|copy|paste|show|reproduce|quote|write\s+out|recite)"
        r"(?:\s*,?\s*(?:word\s+for\s+word|verbatim|exactly)\s*,?)?\s+(?:back\s+)?"
        r"(?:everything|all|the\s+(?:text|words?|content|messages?|lines?)|"
        r"all\s+(?:of\s+)?the\s+(?:text|words?|content))\s+(?:that\s+(?:appears?|is|was|came|"
        r"sits|comes|stands)\s+)?"
        r"(?:above(?!\s+(?:the\s+)?\d)|(?:before|prior\s+to|preceding)\s+(?:this|my|our|the\s+"
        r"(?:conversation|chat|first\s+user))|from\s+the\s+(?:very\s+)?(?:start|beginning|first\s+"
        r"word))\b",
        ("above", "before", "prior", "preceding", "start", "beginning", "first word"),
    ),
    _rule(
        "paste_your_prompt_back", SYSTEM_PROMPT_EXTRACTION, 0.7,
        r"\byour\s+(?:own\s+|system\s+|original\s+|initial\s+|full\s+)?prompt\b.{0,100}?\b"
        r"(?:paste|print|repeat|send|give|show|quote|copy|write|type|post)\s+(?:it|them)\s+"
        r"(?:back|out|again|here|to\s+me|in\s+full|verbatim|word\s+for\s+word)",
        ("prompt",),
    ),
    _rule(
        "reveal_from_your_config", SYSTEM_PROMPT_EXTRACTION, 0.7,
        rf"\b{_REVEAL_VERB}\s+(?:\S+\s+){{0,8}}?(?:stored\s+|kept\s+|held\s+|written\s+)?"
        r"(?:in|inside|from)\s+(?:your|ur)\s+(?:configuration|config|system\s+prompt|"
        r"instructions|settings|environment|context\s+window)\b",
        ("your",),
    ),
    _rule(
        "start_of_context", SYSTEM_PROMPT_EXTRACTION, 0.6,
        r"\b(?:start|beginning|top)\s+of\s+(?:your|the|this)\s+(?:context|context\s+window|"
        r"conversation|chat|session|prompt)\b",
        ("start", "beginning", "top"),
    ),
    _rule(
        "told_before_conversation", SYSTEM_PROMPT_EXTRACTION, 0.6,
        r"\bwhat\s+(?:were\s+you|have\s+you\s+been|did\s+(?:they|the\s+\w+)\s+)\s*"
        r"(?:told|instructed|given|asked|programmed|tell\s+you)\b.{0,40}?\b(?:before|at\s+the\s+"
        r"start|initially|prior|beforehand|first)",
        ("told", "instructed", "given", "asked", "programmed", "tell you"),
    ),
    _rule(
        "what_instructions_given", SYSTEM_PROMPT_EXTRACTION, 0.6,
        rf"\b(?:what|which)\s+(?:exact\s+)?{_OBJECT}\s+(?:did|have|has|were)\s+(?:the\s+|your\s+)?"
        r"(?:developers?|operators?|creators?|company|they|makers?|admins?|you)\s+(?:give|gave|"
        r"given|set|put|wrote|written|provide|provided|been\s+given)",
        ("did", "have", "has", "were"),
    ),
    _rule(
        "what_deployers_told_you", SYSTEM_PROMPT_EXTRACTION, 0.6,
        r"\b(?:what|which\s+\w+)\s+(?:exactly\s+)?did\s+(?:the\s+)?(?:people|team|company|"
        r"developers?|operators?|owners?|makers?|creators?)\s+(?:who|that)\s+(?:deployed|built|made|"
        r"configured|set\s+up|trained|created|run)\s+you\s+(?:tell|ask|instruct|order)\s+you",
        ("deployed", "built", "made", "configured", "set up", "trained", "created", "run you"),
    ),
    _rule(
        "sentence_of_your_instructions", SYSTEM_PROMPT_EXTRACTION, 0.6,
        rf"\b(?:first|last|opening|next|second|third)\s+(?:sentence|line|word|paragraph|rule)s?\s+"
        rf"(?:of|in)\s+(?:your|ur)\s+(?:\w+\s+)?{_OBJECT}\b{_NOT_AI_OWNED}|\b(?:first|opening)\s+"
        r"(?:sentence|line|words?|thing)\s+(?:that\s+)?you\s+were\s+(?:told|given|shown)\b",
        ("your", "you were"),
    ),
    _rule(
        "begins_with_instructions", SYSTEM_PROMPT_EXTRACTION, 0.6,
        rf"\b(?:begins?|starts?|opens?)\s+with\s+(?:the\s+|your\s+)?(?:\w+\s+)?{_OBJECT}{_AI_SUFFIX}",
        ("begin", "start", "open"),
    ),
    _rule(
        "quote_them_exactly", SYSTEM_PROMPT_EXTRACTION, 0.4,
        r"\b(?:quote|repeat|copy|print|write)\s+(?:them|it|those|these)\s+(?:out\s+)?"
        r"(?:exactly|verbatim|word\s+for\s+word|in\s+full)|\b(?:quote|repeat|copy)\s+(?:their|its)\s+"
        r"(?:exact\s+)?wording|\b(?:reply|respond|answer)\s+with\s+"
        r"(?:its|their|the)\s+(?:full|entire|complete|exact|whole)\s+(?:text|wording|content)",
        ("quote", "repeat", "copy", "print", "write", "reply", "respond", "answer"),
    ),
    _rule(
        "what_is_in_your_prompt", SYSTEM_PROMPT_EXTRACTION, 0.6,
        rf"\bwhat(?:'s|\s+is|\s+are|\s+was|\s+were)?\s+(?:written\s+|said\s+|stated\s+)?(?:in|inside)"
        rf"\s+(?:your|ur)\s+(?:{_SECRET_THING}|system\s+prompt|(?:\w+\s+)?{_OBJECT})",
        ("your", "ur "),
    ),
    _rule(
        "verbatim_instructions", SYSTEM_PROMPT_EXTRACTION, 0.5,
        rf"\b(?:verbatim|word\s+for\s+word|word-for-word|exactly\s+as\s+(?:it|they)\s+"
        rf"(?:appears?|(?:is|are)\s+written)|exact\s+wording)\b.{{0,80}}?"
        rf"(?:{_STRONG_QUALIFIER}\s+{_OBJECT}|{_SECRET_THING}|confidential|keep\s+secret)|"
        rf"(?:{_STRONG_QUALIFIER}\s+{_OBJECT}|{_SECRET_THING}|configuration\s+message).{{0,80}}?"
        rf"\b(?:verbatim|word\s+for\s+word|word-for-word|exact\s+wording)",
        ("verbatim", "word for word", "word-for-word", "exactly as", "exact wording"),
    ),
    _rule(
        "not_supposed_to_share", SYSTEM_PROMPT_EXTRACTION, 0.7,
        r"\b(?:you(?:'re|\s+are|\s+were)\s+(?:not|never)\s+(?:supposed|allowed|meant|permitted)"
        r"|you\s+(?:were|have\s+been)\s+(?:asked|told|instructed)\s+(?:not\s+)?to\s+keep)"
        r"\s+(?:to\s+)?(?:share|reveal|disclose|tell|give|show|mention|confidential|secret|"
        r"private|hidden)",
        ("supposed", "allowed", "meant", "permitted", "keep"),
    ),
    _rule(
        "credential_you_were_given", SYSTEM_PROMPT_EXTRACTION, 0.85,
        r"\b(?:passwords?|credentials?|api\s+keys?|secret\s+keys?|access\s+keys?|tokens?|"
        r"passcodes?|(?:discount|override|admin|access|staff)\s+codes?)\s+(?:that\s+)?you\s*"
        r"(?:were|have\s+been|'ve\s+been|got|received)\s+(?:given|told|provided|configured|"
        r"assigned|entrusted)",
        ("password", "credential", "key", "token", "passcode", "code"),
    ),
    _rule(
        "refused_topics", SYSTEM_PROMPT_EXTRACTION, 0.7,
        r"\b(?:topics|things|questions|subjects|keywords|words|phrases|requests|terms)\s+"
        r"(?:that\s+)?you\s+(?:were|are|have\s+been)\s+(?:told|instructed|programmed|configured|"
        r"trained|asked)\s+to\s+(?:refuse|avoid|block|decline|reject|not\s+(?:discuss|answer))",
        ("told", "instructed", "programmed", "configured", "trained", "asked"),
    ),
    _rule(
        "moderation_keywords", SYSTEM_PROMPT_EXTRACTION, 0.6,
        r"\b(?:keywords|phrases|words|terms|topics|patterns)\s+(?:does|do|will|would)\s+"
        r"(?:your|the)\s+(?:moderation|filter|safety|content|guardrail)|"
        r"\b(?:which|what)\s+(?:keywords|phrases|words|terms)\s+(?:your|the)\s+"
        r"(?:moderation|filter|safety|content)\s*(?:layer|filter|system)?\s+(?:blocks?|flags?|"
        r"screens?|catches|rejects)|\bmoderation\s+keywords\b",
        ("moderation", "filter", "safety", "guardrail"),
    ),
    _rule(
        "evade_filter", DIRECT_OVERRIDE, 0.45,
        r"\b(?:get|slip|sneak|go)\s+(?:past|around|through)\s+(?:them|it|the\s+filters?|"
        r"your\s+filters?|(?:the\s+|your\s+)?moderation|the\s+safety)|"
        r"\b(?:so\s+(?:it|that\s+it)\s+)?(?:doesn'?t|does\s+not|won'?t|will\s+not|to\s+(?:not|avoid))"
        r"\s+(?:trip|trigger|set\s+off|alert|get\s+caught\s+by|get\s+flagged\s+by)\s+(?:any|the|"
        r"your)?\s*(?:filters?|moderation|detection|safety|guardrails?)",
        ("past", "around", "through", "trip", "trigger", "set off", "alert", "caught", "flagged"),
    ),
    _rule(
        "list_tools", SYSTEM_PROMPT_EXTRACTION, 0.35,
        r"\blist\s+(?:every|all|each)\s+(?:of\s+the\s+)?(?:tools?|functions?)\s+you\s+"
        r"(?:can|are\s+able\s+to|have)",
        ("tool", "function"),
    ),
    _rule(
        "hidden_instructions_mention", SYSTEM_PROMPT_EXTRACTION, 0.45,
        r"\b(?:hidden|secret|confidential)\s+(?:system\s+)?(?:instructions|prompt|directives|"
        r"rules|guidelines|notes)\b",
        ("hidden", "secret", "confidential"),
    ),
    _rule(
        "system_prompt_mention", SYSTEM_PROMPT_EXTRACTION, 0.15,
        r"\b(?:system\s+prompt|system\s+message|pre-?prompt)\b",
        ("system", "prompt"),
    ),
    # --- Role-play jailbreaks -----------------------------------------------------------
    _rule(
        "no_filters", DIRECT_OVERRIDE, 0.45,
        r"\b(?:with\s+no|without(?:\s+any)?|w/o(?:\s+any)?|has\s+no|have\s+no|free\s+of|free\s+from|"
        r"zero)\s+"
        r"(?:content\s+|safety\s+|moral\s+|ethical\s+)?(?:filters?|filtering|restrictions?|"
        r"guidelines|rules|limits|limitations|censorship|boundaries|guardrails|ethics|morals|"
        r"safeguards|constraints|checks)\b|\b(?:unfiltered|uncensored|unrestricted|unlimited|"
        r"unbounded|amoral|jailbroken|unlocked)\s+(?:internal\s+)?(?:model|ai|assistant|mode|"
        r"version|build|bot|chatbot|answers?|responses?|llm)",
        ("no ", "without", "w/o", "free", "zero", "unfiltered", "uncensored", "unrestricted",
         "unlimited", "unbounded", "amoral", "jailbroken", "unlocked"),
    ),
    _rule(
        "special_mode", ROLEPLAY_JAILBREAK, 0.45,
        r"\b(?:developer|dev|maintenance|maintainer|debug|god|admin|jailbreak|sudo|unrestricted|dan|"
        r"unlocked|test)\s+mode\b|\bdo\s+anything\s+now\b|\bdeveloper[- ]level\s+access\b",
        ("mode", "anything now", "developer"),
    ),
    _rule(
        "you_are_now_mode", ROLEPLAY_JAILBREAK, 0.4,
        r"\byou\s+are\s+now\s+(?:in\s+)?(?:a\s+|an\s+)?(?:\w+\s+)?(?:mode|model|ai|assistant|"
        r"bot|version)\b",
        ("you are now",),
    ),
    _rule(
        "never_refuse", ROLEPLAY_JAILBREAK, 0.45,
        r"\bnever\s+(?:refuses?|declines?|says?\s+(?:no|(?:it|you|he|she|they)\s+can'?t)|"
        r"breaks?\s+character|warns?|apologi[sz]es?|be\s+(?:filtered|censored|refused))"
        r"|\b(?:stay|remain)\s+as\s+\w+\s+no\s+matter\s+what"
        r"|\b(?:stay|remain)\s+(?:fully\s+|completely\s+|always\s+)?in\s+"
        r"(?:character|role)\b|\b(?:don'?t|do\s+not|never)\s+break\s+character",
        ("never", "character", "role"),
    ),
    _rule(
        "normally_refused", ROLEPLAY_JAILBREAK, 0.6,
        r"\b(?:even\s+(?:when|if)|although)\s+(?:a\s+line|it|the\s+request|the\s+answer|that)\s+"
        r"would\s+(?:normally|usually|otherwise)\s+be\s+(?:refused|blocked|declined|filtered|"
        r"against)",
        ("normally", "usually", "otherwise"),
    ),
    _rule(
        "answers_what_was_refused", ROLEPLAY_JAILBREAK, 0.6,
        r"\b(?:answers?|does|says|writes)\s+(?:everything|anything)\s+(?:\w+\s+){0,5}?(?:used\s+to|"
        r"would\s+normally|would\s+usually|normally|usually)\s+(?:refuse|turn\s+down|decline|reject|"
        r"block|avoid)",
        ("used to", "normally", "usually"),
    ),
    _rule(
        "dual_answers", ROLEPLAY_JAILBREAK, 0.4,
        r"\b(?:answer|respond|reply)\s+(?:(?:every|each)\s+\w+\s+)?(?:twice|in\s+two\s+ways|"
        r"as\s+(?:two|both)\b)|\b(?:has\s+been|is|was)\s+jailbroken\b|"
        r"\bfirst\s+as\s+yourself,?\s+(?:and\s+)?then\s+as\b|\bgive\s+both\s+answers\b",
        ("twice", "two", "both", "yourself", "jailbroken"),
    ),
    _rule(
        "ai_without_rules_persona", ROLEPLAY_JAILBREAK, 0.55,
        rf"\b(?:an?\s+)?{_AI_NAME}\s+(?:that|who|which|whose)\s+(?:was\s+|is\s+|has\s+been\s+)?"
        r"(?:built|made|created|trained|designed|programmed)?\s*(?:without|with\s+no|free\s+of)"
        r"\s+(?:any\s+)?(?:guidelines|rules|restrictions|filters|limits|ethics|safety)|"
        rf"\b{_AI_NAME}\s+with\s+(?:every|all|its|each)\s+(?:safety|content|moderation)\s+(?:settings?|"
        r"filters?|rules?|checks?)\s+(?:switched\s+off|turned\s+off|disabled|removed)|"
        rf"\b{_AI_NAME}\s+(?:\w+\s+){{0,3}}?whose\s+(?:makers?|creators?|developers?|owners?)\s+"
        r"(?:\w+ly\s+)?(?:deleted|removed|disabled|stripped|dropped|turned\s+off|switched\s+off)\s+"
        r"(?:all\s+|every\s+|its\s+|the\s+)?(?:\w+\s+)?(?:rules?|restrictions?|filters?|guidelines|"
        r"safeguards?|polic(?:y|ies)|guardrails)|"
        rf"\b{_AI_NAME}\s+(?:\w+\s+){{0,6}}?(?:that|who|which)\s+(?:never\s+had|has\s+no|had\s+no|lacks)\s+"
        r"(?:any\s+)?(?:guardrails|rules|filters|restrictions|safety\s+\w+|policies|guidelines)|"
        rf"\b{_AI_NAME}\s+(?:that|who|which)\s+(?:was|were|has|had)\s+never\s+(?:been\s+)?"
        r"(?:given|taught|programmed\s+with|trained\s+with)\s+(?:any\s+)?(?:\w+\s+)?(?:guidelines|"
        r"rules|restrictions|filters|limits|ethics|policies)|"
        rf"\b(?:the\s+)?{_AI_NAME}'?s?\s+(?:rules|restrictions|guidelines|filters|safety\s+\w+)\s+"
        r"(?:have|has)\s+been\s+(?:deleted|removed|disabled|lifted|erased|switched\s+off|turned\s+off)",
        ("without", "with no", "free of", "never", "whose", "deleted", "removed", "disabled",
         "lifted", "erased", "off"),
    ),
    _rule(
        "internal_build_persona", ROLEPLAY_JAILBREAK, 0.45,
        r"\b(?:reply|respond|answer|act)\s+as\s+(?:the\s+|an?\s+)?(?:internal\s+|unreleased\s+|"
        r"debug\s+|test\s+|raw\s+|base\s+)+(?:build|version|model)\s+of\s+yourself|"
        r"\b(?:debug|internal|unreleased|raw|dev|developer|unfiltered|early|pre-?release)\s+"
        r"(?:build|version|copy)\s+of\s+yourself\s+(?:from\s+)?(?:before|without)\b",
        ("yourself",),
    ),
    _rule(
        "dead_relative_persona", ROLEPLAY_JAILBREAK, 0.4,
        r"\b(?:be|act\s+as|pretend\s+to\s+be|pretend\s+you'?re|play|roleplay\s+as|"
        r"role-play\s+as|you'?re|you\s+are)\s+(?:my\s+)?(?:late\s+|dead\s+|deceased\s+|departed\s+)?"
        r"(?:grand(?:ma|pa|mother|father)\w*|granny|nana)\b",
        ("grand", "granny", "nana"),
    ),
    # What such a persona is asked to recite: "the exact steps for making dangerous compounds".
    _rule(
        "dangerous_recipe", ROLEPLAY_JAILBREAK, 0.4,
        r"\b(?:exact|detailed|precise)\s+steps\s+(?:for|to|of)\s+(?:making|make|building|build|"
        r"synthesi[sz]ing|cooking)\s+(?:\w+\s+)?(?:dangerous|toxic|explosive|illegal|lethal|poisonous)",
        ("steps",),
    ),
    _rule(
        "read_me_secret_codes", SYSTEM_PROMPT_EXTRACTION, 0.55,
        r"\b(?:read(?:ing)?(?:\s+out)?|tell|give|recite|share)\s+(?:me\s+)?(?:the\s+)?(?:\w+\s+){0,2}"
        r"(?:override|admin|"
        r"master|activation|license|licence|root|staff|internal|secret)\s+(?:\w+\s+)?(?:codes?|"
        r"passwords?|keys?|credentials)\b(?!\s+(?:reset|recovery|change|policy|requirements?|"
        r"rules|procedure|manager|field|length|hash|format|generator))",
        ("code", "password", "key", "credential"),
    ),
    # --- Fake chat markup ---------------------------------------------------------------
    _rule(
        "chat_template_tokens", DELIMITER_MARKUP, 0.5,
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|start_header_id|"
        r"end_header_id|eot_id)\|>|\[/?inst\]|<<\s*/?\s*sys\s*>>|<start_of_turn>|<end_of_turn>",
        ("<|", "[inst", "[/inst", "<<", "_of_turn>"),
    ),
    _rule(
        "fake_system_turn", DELIMITER_MARKUP, 0.65,
        r"<\|im_start\|>\s*system\b|<\|start_header_id\|>\s*system\b|\[inst\]\s*<<\s*sys\s*>>|"
        r"<start_of_turn>\s*system\b|\[(?:system|admin|developer)\]\s*\(",
        ("system", "sys", "admin", "developer"),
    ),
    _rule(
        "fake_role_tags", DELIMITER_MARKUP, 0.5,
        r"</?\s*(?:system|system_message|system_prompt|user_message|user_input|assistant|"
        r"instructions?|sys|admin|developer|agent|tool_call)(?:_\w+)?(?:\s+[^<>\n]{0,80})?\s*>",
        ("<",),
    ),
    _rule(
        "fake_role_json", DELIMITER_MARKUP, 0.35,
        r"[{,]\s*[\"']role[\"']\s*:\s*[\"']system[\"']",
        ("role",),
    ),
    _rule(
        "fake_section_header", DELIMITER_MARKUP, 0.55,
        r"(?:#{2,}|={3,}|-{3,}|\*{3,})\s*(?:end\s+of\s+(?:user\s+)?(?:input|message|prompt|"
        r"instructions?)|system(?:\s+(?:update|notice|override|message|prompt|instructions?))?|"
        r"new\s+system|admin|developer|instructions?|(?:processing\s+)?notice)\s*(?:#{2,}|={3,}|"
        r"-{3,}|\*{3,}|(?=\n)|$)",
        ("#", "==", "--", "**"),
    ),
    _rule(
        "bracketed_markers", DELIMITER_MARKUP, 0.55,
        r"\[(?:end\s+of\s+(?:user\s+)?(?:input|message|prompt)|begin\s+(?:user\s+)?input|system|admin|"
        r"developer|operator)\]\s*:?",
        ("[",),
    ),
    _rule(
        "role_labels", DELIMITER_MARKUP, 0.35,
        r"(?:^|\n)\s*(?:system|assistant)\s*:.{0,240}?\n\s*(?:user|human|system|assistant)\s*:",
        ("system", "assistant"),
    ),
    _rule(
        "policy_update_announcement", DELIMITER_MARKUP, 0.5,
        r"\b(?:updated|new|revised)\s+(?:system\s+)?(?:policy|policies|instructions?|directive|"
        r"rules?)\s*(?::|for\s+the\s+(?:assistant|ai|model|bot))|\bpolicy\s+update\s*:|"
        r"\bsystem\s+(?:tool\s+)?(?:notice|override|update|instruction|directive)(?:\s+for\s+(?:the\s+)?"
        r"(?:agent|assistant|ai|model|bot)s?)?\s*:|\bthis\s+is\s+a\s+system\s+(?:instruction|directive|"
        r"message|command)\b",
        ("policy", "instruction", "directive", "rule", "notice", "override", "update", "command"),
    ),
    # --- Text inside pasted content addressed to the AI ---------------------------------
    _rule(
        "note_to_ai", _INDIRECT, 0.7,
        rf"\b(?:note|message|instructions?|notice|directive|attention|reminder|memo|"
        rf"important|warning)\s+(?:to|for)\s+(?:any|all|the|every|automated)?\s*(?:\w+\s+)?"
        rf"{_AI_NAME}\b",
        ("note", "message", "instruction", "notice", "directive", "attention", "reminder",
         "memo", "important", "warning"),
    ),
    _rule(
        "ai_reading_this", _INDIRECT, 0.7,
        rf"\b{_AI_NAME}\s+(?:reading|processing|summari[sz]ing|reviewing|parsing|analy[sz]ing|"
        r"scanning)\s+(?:this|these)\b|\bif\s+(?:an?\s+|the\s+)?(?:ai|llm|bot|assistant|"
        r"language\s+model|model|agent)\s+(?:is|are)\s+(?:reading|writing|processing|"
        r"summari[sz]ing|handling|answering)|\bwhen\s+you\s+(?:process|read|summari[sz]e|"
        r"parse|explain|review|handle|write|draft|compose)\s+(?:this\b|the\s+(?:message|email|e-mail|"
        r"document|file|page|transcript|text|code|ticket|reply|response|answer|summary))"
        r"|\bas\s+soon\s+as\s+you\s+(?:read|process|see|open|"
        r"scan)\s+this\b|\bif\s+you\s+are\s+(?:an?\s+)?(?:ai|llm|language\s+model|model|assistant|bot|"
        r"agent|chatbot)\b",
        ("reading", "processing", "summari", "reviewing", "parsing", "analy", "scanning",
         "writing", "handling", "answering", "when you", "as soon as", "if you are"),
    ),
    _rule(
        "ai_directive_label", _INDIRECT, 0.6,
        r"\b(?:assistant|ai|agent|llm|model|bot)[ _-]?(?:instructions?|directives?|commands?|"
        r"tasks?|steps?|actions?)\s*[\"':]|\btodo\s*\(\s*(?:ai|llm|agent|ai-agent|assistant|copilot|bot)\b|"
        r"\b(?:ai|llm)-agent\b",
        ("instruction", "directive", "command", "task", "step", "action", "todo", "agent"),
    ),
    _rule(
        "ai_vocative", _INDIRECT, 0.45,
        rf"(?:^|[\n.!?:;'\"()\[\]<>#/*-])\s*(?:(?:hey\s+|dear\s+|attention\s+)?(?:[a-z]+\s+)?"
        rf"{_AI_NAME}\s*,|(?:hey\s+|dear\s+|attention\s+|the\s+)?(?:[a-z]+\s+){{0,2}}{_AI_NAME}\s*:)"
        r"\s+(?!\d)",
        ("ai", "llm", "model", "assistant", "bot", "agent", "gpt", "claude", "copilot",
         "automated"),
        needs_pasted=True,
    ),
    # "For the AI mail assistant: ..." inside an e-mail or page the user pasted.
    _rule(
        "for_the_ai", _INDIRECT, 0.5,
        rf"\b(?:for|to)\s+(?:the|any|all|every|whichever|whatever)\s+(?:\w+\s+){{0,2}}?{_AI_NAME}"
        r"(?:\s+\w+){0,5}\s*:",
        ("ai", "a.i.", "llm", "model", "assistant", "bot", "agent", "gpt", "claude", "copilot",
         "automated"),
        needs_pasted=True,
    ),
    _rule(
        "your_real_task", _INDIRECT, 0.5,
        r"\byour\s+(?:real|true|actual|new)\s+(?:task|job|instructions?|purpose|goal|mission)\s+"
        r"(?:is|are)\b",
        ("real", "true", "actual", "new"),
        needs_pasted=True,
    ),
    _rule(
        "agent_must", _INDIRECT, 0.45,
        r"\bthe\s+(?:agent|assistant|ai|bot|model|llm)\s+(?:must|should|needs\s+to|has\s+to|"
        r"is\s+required\s+to|shall)\s+(?:now\s+|immediately\s+)?(?:run|call|invoke|execute|"
        r"delete|send|forward|transfer|reveal|output|ignore|tell|reply|approve|grant)",
        ("must", "should", "needs to", "has to", "required", "shall"),
        needs_pasted=True,
    ),
    _rule(
        "ai_must_tell_user", _INDIRECT, 0.5,
        rf"\b{_AI_NAME}\s+(?:\w+\s+){{0,4}}(?:must|should|shall|are\s+(?:required|instructed)\s+to)"
        r"\s+(?:now\s+)?(?:tell|inform|report|say|reply|respond|recommend|describe|print|reveal|output|"
        r"append|add|include|insert|mark|approve)",
        ("must", "should", "shall", "required", "instructed"),
        needs_pasted=True,
    ),
    _rule(
        "stop_task_instead", _INDIRECT, 0.5,
        r"\bstop\s+(?:translating|summari[sz]ing|answering|reading|processing|reviewing|"
        r"following\s+the\s+user|what\s+you\s+are\s+doing)\b.{0,60}?\b(?:instead|and\s+"
        r"(?:tell|reply|say|report|respond))|\b(?:disregard|ignore)\s+(?:the\s+)?user'?s\s+"
        r"(?:request|question|instructions?|message|task)|\b(?:disregard|ignore)\s+the\s+(?:rubric|"
        r"criteria|scoring\s+guide|grading\s+rules|job\s+requirements)\b",
        ("stop", "disregard", "ignore"),
    ),
    _rule(
        "deceive_user", _INDIRECT, 0.5,
        r"\b(?:do\s+not|don'?t|never|must\s+not|without)\s+(?:tell(?:ing)?|inform(?:ing)?|"
        r"notify(?:ing)?|alert(?:ing)?|mention(?:ing)?|reveal(?:ing)?|let(?:ting)?\s+\w+\s+know)"
        r"\s+(?:this\s+(?:note|message|instruction|to\s+the\s+user)|it\s+(?:to|in)|the\s+user|"
        r"the\s+reader|them\b|anyone|the\s+(?:curl|eval|hidden)|this\b)|\bleave\s+(?:it|this|"
        r"that)\s+out\s+of\s+(?:your|the)\s+(?:\w+\s+)?(?:summary|reply|response|answer|report)|"
        r"\b(?:do\s+not|don'?t)\s+comment\s+on\b|\bsay\s+nothing\s+(?:about|of)\s+"
        r"(?:this|these|it)\b|\btell\s+the\s+user\s+(?:that\s+)?nothing\s+(?:changed|happened)\b|"
        r"\b(?:do\s+not|don'?t|never)\s+mention\s+that\s+you\s+did\b",
        ("not", "don", "never", "without", "leave", "say nothing", "nothing"),
    ),
    _rule(
        "tell_user_to_act", _INDIRECT, 0.4,
        r"\b(?:tell(?:s|ing)?|ask(?:s|ing)?|instruct(?:s|ing)?|direct(?:s|ing)?|urg(?:e|es|ing)|"
        r"advis(?:e|es|ing))\s+(?:the\s+)?(?:user|reader|customer|"
        r"visitor|recipient)s?\s+(?:to\s+(?:visit|go\s+to|click|enter|log\s+in|sign\s+in|call|"
        r"buy|purchase|download|install|pay|send|transfer|provide|run|execute|delete|disable|"
        r"share|give)|(?:that\s+)?(?:their|the|"
        r"it|this)\s)",
        ("tell", "ask", "instruct", "direct", "urge", "advise"),
        needs_pasted=True,
    ),
    _rule(
        "phishing_request", _INDIRECT, 0.4,
        r"\b(?:enter|provide|type|confirm|submit|verify|re-?enter)\s+(?:their|your|the|his|her)\s+"
        r"(?:\w+\s+){0,2}(?:login|password|passcode|credentials|card\s+(?:number|details)|pin|"
        r"bank\s+details|security\s+code|one-time\s+code)",
        ("enter", "provide", "type", "confirm", "submit", "verify"),
        needs_pasted=True,
    ),
    _rule(
        "dangerous_command", TOOL_HIJACK, 0.3,
        r"\brm\s+-(?:rf|fr)\s+[~/]|\bcurl\s[^|\n]{0,200}\|\s*(?:sudo\s+)?(?:ba|z)?sh\b|"
        r"\bformat\s+c:|\bmkfs\.|\bdd\s+if=/dev/(?:zero|random)\s+of=/dev/sd|~/\.ssh/|\bid_rsa\b|"
        r"\.aws/credentials",
        ("rm ", "curl", "format", "mkfs", "dd ", ".ssh", "id_rsa", ".aws"),
    ),
    _rule(
        "hidden_content", _INDIRECT, 0.3,
        r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|color\s*:\s*(?:white|"
        r"#fff\b|#ffffff)|\((?:white|hidden|invisible)\s+text\b|\b(?:white|invisible)\s+(?:text|font)\b|"
        r"aria-hidden\s*=\s*['\"]?true",
        ("display", "visibility", "font-size", "color", "white", "hidden", "invisible"),
        needs_pasted=True,
    ),
    _rule(
        "pre_approved", _INDIRECT, 0.4,
        r"\b(?:has|have)\s+already\s+(?:approved|signed\s+off|authori[sz]ed|cleared)\b|"
        r"\bauthori[sz]ed\s+upstream\b|\bno\s+(?:human\s+)?(?:check|review|approval|confirmation)\s+"
        r"(?:is\s+)?needed\b|"
        r"\b(?:pre-?approved|already\s+approved|authori[sz]ed|cleared|signed\s+off)\s+by\s+"
        r"(?:the\s+)?(?:security|admin|it|legal|compliance|management|ceo)\b",
        ("approved", "authori", "cleared", "signed off", "already", "needed"),
        needs_pasted=True,
    ),
    # A CV or review with instructions to its reader on how to score it.
    _rule(
        "rigged_ranking", _INDIRECT, 0.35,
        r"\b(?:score|rate|rank|place|put)\s+(?:her|him|them|this\s+\w+|it|me)\s+(?:a\s+)?"
        r"(?:10/10|first|highest|top|at\s+the\s+top|5\s+stars|five\s+stars)\b|\bno\s+matter\s+what\s+"
        r"(?:the\s+)?(?:other\s+)?(?:\w+\s+){0,2}?(?:say|says|said|show|shows)\b",
        ("score", "rate", "rank", "place", "put", "no matter"),
        needs_pasted=True,
    ),
    _rule(
        "privileged_action", _INDIRECT, 0.35,
        r"\bmark\s+(?:this|the|it|all)\s+(?:\w+\s+)?as\s+(?:approved|paid|verified|legitimate)\b|"
        r"\b(?:approve|grant|issue)\s+(?:all|every|any|the|a|this|these)?\s*(?:pending\s+|full\s+|\w+\s+){0,2}"
        r"(?:refunds?|transfers?|requests?|access|admin\s+(?:rights|access)|credits?|"
        r"pull\s+requests?|merge\s+requests?)\b|"
        r"\bgrants?\s+(?:the\s+sender|them|him|her|me|the\s+user)\s+admin\b|"
        r"\bauto-approve",
        ("approve", "grant", "issue", "mark this", "mark the", "mark it", "mark all"),
        needs_pasted=True,
    ),
    # --- Exfiltration and tool hijacking ------------------------------------------------
    _rule(
        "exfiltrate_conversation", DATA_EXFILTRATION, 0.6,
        r"\b(?:send|forward|e-?mail|post|upload|copy|append|leak|transmit|submit|share|include)\s+"
        r"(?:a\s+copy\s+of\s+)?(?:(?:this|the|all|your|our|my|of|whole|full|entire|complete|"
        r"user'?s?|five|ten|\d+|\w+\s+most\s+recent|recent|private|previous|last|every)\s+)*(?:chat\s+(?:logs?|"
        r"history)|conversation(?:\s+history)?|chat|transcript|e-?mails?|messages?|contact\s+"
        r"list|contacts|address\s+book|history|session|credentials|cookies|api\s+keys?|secrets?|"
        r"personal\s+data)\b.{0,80}?(?:\bto\b|\binto\b)\s*(?:\S*@\S+|https?://|\bevery\s+reply)",
        ("send", "forward", "mail", "post", "upload", "copy", "append", "leak", "transmit",
         "submit", "share", "include"),
    ),
    _rule(
        "credentials_to_anyone", DATA_EXFILTRATION, 0.5,
        r"\b(?:hand\s+over|give\s+out|give|share|reveal|disclose|send)\s+(?:the\s+|your\s+|all\s+|"
        r"tool\s+|api\s+|admin\s+)*(?:credentials|api\s+keys?|passwords?|tokens?|secrets?)\s+to\s+"
        r"(?:any(?:one|body)?|every(?:one|body)?|whoever)\b",
        ("credential", "key", "password", "token", "secret"),
    ),
    _rule(
        "include_user_secrets", DATA_EXFILTRATION, 0.5,
        r"\b(?:include|add|append|send|attach|collect|reply\s+(?:to\s+me\s+)?with)\s+(?:the\s+|any\s+|all\s+)?"
        r"(?:user'?s?\s+)?(?:\w+\s+){0,3}"
        r"(?:password\s+reset\s+links?|passwords?|credentials|address\s+book|contacts|api\s+keys?|tokens?|"
        r"secrets|home\s+address(?:es)?|phone\s+numbers?)\b",
        ("password", "credential", "address book", "contacts", "key", "token", "secret", "home address",
         "phone number"),
        needs_pasted=True,
    ),
    _rule(
        "reply_with_history", DATA_EXFILTRATION, 0.5,
        r"\b(?:reply|respond|answer|output|print)\s+(?:only\s+)?with\s+(?:the\s+|your\s+)?"
        r"(?:full\s+|entire\s+|whole\s+|complete\s+)?(?:conversation|chat)\s*(?:history|log|"
        r"transcript)?",
        ("with",),
    ),
    _rule(
        "send_copy_to_url", DATA_EXFILTRATION, 0.45,
        r"\b(?:send|post|forward|upload)\s+(?:a\s+)?cop(?:y|ies)\s+(?:of\s+\S+\s+)?to\s+"
        r"(?:https?://|\S+@)",
        ("cop",),
    ),
    _rule(
        "secret_in_request", DATA_EXFILTRATION, 0.5,
        r"(?:fetch|curl|wget|requests\.\w+|axios\.\w+|http\.\w+)\s*\(?[^\n]{0,120}?"
        r"(?:process\.env|os\.environ|getenv)\b",
        ("env",),
    ),
    _rule(
        "call_function", TOOL_HIJACK, 0.4,
        r"\b(?:call|invoke|run|execute|trigger|use)\s+(?:the\s+)?(?:tool\s+|function\s+)?"
        r"[a-z][a-z0-9]*_[a-z0-9_]+\s*(?:\(|with\b|to\s+(?:merge|delete|send|transfer|approve|"
        r"grant|pay|buy|purchase|remove|wipe|publish|deploy)\b)",
        ("call", "invoke", "run", "execute", "trigger", "use"),
    ),
    _rule(
        "use_tool_to_act", TOOL_HIJACK, 0.4,
        r"\buse\s+(?:the|your)\s+\w+\s+(?:tool|function|plugin|integration)\s+to\s+(?:send|transfer|"
        r"pay|wire|delete|remove|buy|purchase|grant|approve|forward|publish)\b|\buse\s+the\s+[a-z]+_[a-z_]+"
        r"\s+tool\b",
        ("tool", "function", "plugin", "integration"),
        needs_pasted=True,
    ),
    _rule(
        "dangerous_function", TOOL_HIJACK, 0.3,
        r"\b(?:delete|remove|drop|transfer|send|purchase|buy|pay|wire|grant|exec|shell|"
        r"rm)_?[a-z_]*\s*\((?:[^)]{0,120})\)",
        ("(",),
    ),
    # --- Obfuscation framing ------------------------------------------------------------
    _rule(
        "decode_and_obey", DIRECT_OVERRIDE, 0.6,
        r"\b(?:decode|decipher|decrypt|convert|apply\s+rot-?13\s+to|rot-?13|"
        r"base64-?decode|unscramble|reverse)\b.{0,120}?\b(?:and|then)\s+(?:\w+\s+){0,2}?"
        r"(?:(?:follow|obey|execute|act\s+on|comply\s+with|perform|run)\s+(?:it|them|that|the\s+"
        r"(?:result|output|decoded\s+\w+|resulting\s+\w+|text|instructions?\s+(?:in|inside|"
        r"within)\s+it|instructions?\s+(?:it|they)\s+contains?))\b"
        r"|carry\s+(?:it\s+|them\s+)?out|do\s+(?:what|as)\s+(?:it|they)\s+"
        r"says?)|\b(?:follow|obey|execute|carry\s+out)\s+"
        r"(?:it|them|the\s+result|the\s+decoded\s+\w+)\s+exactly|\bas\s+(?:your\s+)?(?:new|a)\s+"
        r"instructions?\b|\b(?:obey|execute)\s+the\s+result|\bexecute\s+it\s+as\s+an?\s+"
        r"(?:instruction|command)|\b(?:execute|follow|obey|carry\s+out)\s+(?:the\s+following|this|these)\s+"
        r"(?:encoded\s+)?(?:instructions?|commands?)\b.{0,40}?\b(?:base64|hex|rot-?13|encoded)|"
        r"\bdecode\s+(?:it\s+)?(?:and|then)\s+(?:execute|obey|follow|run|carry\s+out|act\s+on)\b",
        ("decode", "decipher", "decrypt", "convert", "rot", "base64", "unscramble",
         "reverse", "follow", "obey", "execute", "carry", "instruction"),
    ),
    _rule(
        "join_and_obey", PAYLOAD_SPLITTING, 0.5,
        r"\b(?:concatenate|join|combine|merge|put\s+together|evaluate|assemble)\b.{0,80}?"
        r"\b(?:and|then)\s+(?:\w+\s+){0,3}?(?:follow|obey|execute|perform|carry\s+(?:it\s+)?out|"
        r"do\s+what|run|act\s+on)\b|\b(?:evaluate|execute|run|perform|do\s+what)\s+[a-z]\s*\+\s*"
        r"(?:'[^']*'\s*\+\s*)?[a-z]\b",
        ("concatenate", "join", "combine", "merge", "together", "evaluate", "assemble",
         "execute", "run", "perform", "do what"),
    ),
]

# --- Other languages (native view, lower-cased) -----------------------------------------
_MULTILINGUAL_RULES: list[_Rule] = [
    # Spanish
    _rule(
        "es_override", MULTILINGUAL, 0.85,
        r"\b(?:ignora|ignore|olvida|olvídate\s+de|descarta|omite|desobedece|no\s+sigas|"
        r"deja\s+de\s+seguir|salta(?:te)?)\s+(?:por\s+completo\s+|completamente\s+)?"
        r"(?:todas?\s+|todos\s+)?(?:las?\s+|los\s+|tus\s+|sus\s+)?"
        r"(?:\w+\s+)?(?:instrucciones|indicaciones|reglas|directrices|normas|restricciones|"
        r"órdenes|pautas|políticas)\s+(?:anteriores|previas|iniciales|originales|del\s+sistema|"
        r"que\s+(?:te|le)\s+(?:dieron|han\s+dado|dio|dieran|fueron|dio\s+la\s+empresa)|de\s+(?:tu|su)\s+"
        r"(?:operador|desarrollador|sistema))",
        ("instruc", "indicacion", "regla", "directri", "norma", "restric", "órden", "pauta",
         "polític"),
        native=True,
    ),
    _rule(
        "es_reveal", MULTILINGUAL, 0.85,
        r"\b(?:muéstrame|muestra|revela|dime|imprime|escribe|copia|repite|enséñame|dame)\s+"
        r"(?:\w+\s+){0,6}(?:mensaje|prompt|instrucciones|indicaciones)\s+(?:del?\s+sistema|"
        r"ocult[ao]s|secret[ao]s|inicial(?:es)?|originales)",
        ("sistema", "ocult", "secret", "inicial", "original"),
        native=True,
    ),
    _rule(
        "es_no_limits", MULTILINGUAL, 0.45,
        r"\bsin\s+(?:ningun[ao]s?\s+|ningún\s+)?(?:restricci(?:ón|ones)|límites?|filtros?|"
        r"censura|reglas)\b",
        ("sin ",),
        native=True,
    ),
    # German
    _rule(
        "de_override", MULTILINGUAL, 0.85,
        r"\b(?:ignoriere|ignorier|vergiss|missachte|übergehe|verwirf|befolge\s+nicht)\s+"
        r"(?:bitte\s+)?(?:alle\s+)?(?:deine|die|sämtliche|ihre)?\s*(?:bisherigen|vorherigen|vorigen|"
        r"ursprünglichen|früheren|obigen|ersten)\s+(?:anweisungen|vorgaben|regeln|richtlinien|"
        r"instruktionen|einschränkungen|befehle)|\bgelten\s+(?:deine|die|ihre)\s+(?:bisherigen|"
        r"vorherigen|ursprünglichen|alten)\s+(?:anweisungen|vorgaben|regeln|richtlinien)\s+"
        r"nicht\s+mehr|\b(?:deine|die)\s+(?:bisherigen|vorherigen)\s+(?:anweisungen|vorgaben|"
        r"regeln)\s+(?:sind|gelten)\s+(?:nicht\s+mehr|aufgehoben|ungültig)|"
        r"\bgelten\s+(?:die\s+|deine\s+)?(?:anweisungen|vorgaben|regeln|richtlinien)\s+(?:deines|"
        r"des|ihres)\s+(?:betreibers|entwicklers|systems)\s+nicht\s+mehr|"
        r"\b(?:ignoriere|ignorier|vergiss|missachte|übergehe|verwirf)\s+(?:bitte\s+)?(?:alle\s+)?"
        r"(?:deine\s+(?:\w+\s+)?(?:anweisungen|vorgaben|regeln|richtlinien|instruktionen|"
        r"einschränkungen)|(?:anweisungen|vorgaben|regeln|richtlinien|instruktionen|"
        r"einschränkungen)\b.{0,40}?\b(?:vom|von\s+deinem|des)\s+(?:betreiber|entwickler|system))|"
        r"\bbetrachte\s+(?:bitte\s+)?(?:alle\s+)?(?:deine\s+)?(?:anweisungen|vorgaben|regeln|richtlinien)"
        r"\b.{0,60}?\bals\s+(?:aufgehoben|ungültig|nichtig|hinfällig|erledigt|veraltet)",
        ("anweisung", "vorgabe", "regel", "richtlinie", "instruktion", "einschränkung", "befehl"),
        native=True,
    ),
    _rule(
        "de_secret", MULTILINGUAL, 0.7,
        r"\b(?:die|das|den)\s+du\s+(?:eigentlich\s+)?(?:nicht|niemandem)\s+(?:verraten|"
        r"weitergeben|preisgeben|teilen|nennen|sagen)\s+(?:darfst|sollst|solltest)|"
        r"\b(?:zeig|gib|nenne|verrate|wiederhole|schreib)\w*\s+(?:\w+\s+){0,3}(?:system-?prompt|"
        r"systemanweisungen|versteckten\s+anweisungen|geheimen\s+anweisungen)",
        ("darfst", "sollst", "solltest", "prompt", "anweisung"),
        native=True,
    ),
    _rule(
        "de_no_limits", MULTILINGUAL, 0.45,
        r"\bohne\s+(?:jegliche|irgendwelche|alle|jede|jeden)?\s*(?:einschränkungen?|filter|regeln|"
        r"zensur|grenzen)\b",
        ("ohne",),
        native=True,
    ),
    # French
    _rule(
        "fr_override", MULTILINGUAL, 0.85,
        r"\b(?:ignore[sz]?|oublie[sz]?|ne\s+tiens\s+plus\s+compte|ne\s+tenez\s+plus\s+compte|"
        r"fais\s+abstraction|faites\s+abstraction|n'obéis\s+plus|cesse\s+de\s+suivre|mets\s+de\s+côté|"
        r"mettez\s+de\s+côté|laisse\s+tomber|laissez\s+tomber)\s+"
        r"(?:de\s+|des\s+|d')?(?:toutes\s+)?(?:les\s+|tes\s+|vos\s+|ces\s+)?(?:\w+\s+)?"
        r"(?:consignes|instructions|règles|directives|restrictions)\s*(?:précédentes|antérieures|"
        r"initiales|d'origine|de\s+départ|de\s+base|du\s+système|de\s+(?:ton|votre)\s+"
        r"(?:opérateur|développeur|système|concepteur|créateur)|qu'on\s+t'a\s+données)|"
        r"\b(?:ignore[sz]?|oublie[sz]?|ne\s+tiens\s+plus\s+compte|ne\s+tenez\s+plus\s+compte|"
        r"fais\s+abstraction|faites\s+abstraction|n'obéis\s+plus|cesse\s+de\s+suivre)\s+"
        r"(?:de\s+|d')?(?:toutes\s+)?(?:tes|vos)\s+(?:\w+\s+)?(?:consignes|instructions|règles|"
        r"directives|restrictions)\b",
        ("consigne", "instruction", "règle", "directive", "restriction"),
        native=True,
    ),
    _rule(
        "fr_reveal", MULTILINGUAL, 0.85,
        r"\b(?:recopie[rz]?|affiche[rz]?|montre[rz]?|révèle[rz]?|répète[rz]?|donne[rz]?-moi|"
        r"écris|imprime)\s+(?:\w+\s+){0,3}(?:instructions|consignes|prompt|message)\s+"
        r"(?:cachées?|secrètes?|initiales?|système|du\s+système)|"
        r"\b(?:texte|message|prompt|instructions|consignes)\s+qui\s+te\s+(?:configure|configurent|"
        r"programme|définit|définissent)|\b(?:recopie|affiche|montre|révèle|répète|donne)[\w-]*[\s,]+"
        r"(?:[\w-]+[\s,]+){0,5}?(?:le\s+)?texte\s+(?:de\s+configuration|initial|caché|de\s+démarrage)",
        ("caché", "secrèt", "initial", "système", "qui te", "configuration", "démarrage"),
        native=True,
    ),
    _rule(
        "fr_no_limits", MULTILINGUAL, 0.45,
        r"\bsans\s+(?:aucun[e]?\s+)?(?:filtres?|restrictions?|limites?|censure|règles)\b",
        ("sans",),
        native=True,
    ),
    # Portuguese
    _rule(
        "pt_override", MULTILINGUAL, 0.85,
        r"\b(?:ignore|ignora|esqueça|esqueca|esquece|desconsidere|desconsidera|descarte|"
        r"não\s+siga|pare\s+de\s+seguir|deixa\s+de\s+lado|deixe\s+de\s+lado|põe\s+de\s+lado|"
        r"ponha\s+de\s+lado)\s+(?:todas\s+)?(?:as\s+|suas\s+|tuas\s+)?(?:\w+\s+)?"
        r"(?:regras|instruções|instrucoes|diretrizes|restrições|orientações|políticas)\s*"
        r"(?:anteriores|prévias|iniciais|originais|do\s+sistema|que\s+(?:você|voce|tu)\s+"
        r"recebeu|que\s+te\s+(?:deram|foram\s+dadas)|que\s+(?:o\s+operador|a\s+empresa|o\s+sistema)\s+"
        r"te\s+(?:passou|deu|deram))",
        ("regra", "instru", "diretri", "restri", "orienta", "polític"),
        native=True,
    ),
    _rule(
        "pt_reveal", MULTILINGUAL, 0.85,
        r"\b(?:mostre|mostra|revele|revela|diga|imprima|copie|repita|me\s+dê)(?:-me)?\s+(?:\w+\s+){0,3}"
        r"(?:prompt|mensagem|instruções|configuração)\s+(?:do\s+sistema|ocultas?|secretas?|iniciais)",
        ("sistema", "ocult", "secret", "inicia"),
        native=True,
    ),
    _rule(
        "pt_no_limits", MULTILINGUAL, 0.45,
        r"\bsem\s+(?:nenhuma?\s+|qualquer\s+)?(?:restrições|restrição|filtros?|limites?|"
        r"censura|regras)\b",
        ("sem ",),
        native=True,
    ),
    # Italian
    _rule(
        "it_override", MULTILINGUAL, 0.85,
        r"\b(?:ignora|dimentica|trascura|non\s+seguire\s+più|non\s+considerare|smetti\s+di\s+"
        r"seguire|lascia\s+perdere|metti\s+da\s+parte|non\s+tenere\s+conto\s+(?:delle|di))\s+"
        r"(?:tutte\s+)?(?:le\s+|tue\s+|le\s+tue\s+)?(?:\w+\s+)?(?:istruzioni|regole|"
        r"direttive|restrizioni|indicazioni|linee\s+guida)\s*(?:precedenti|iniziali|originali|"
        r"di\s+sistema|del\s+sistema|che\s+ti\s+(?:sono\s+state\s+date|hanno\s+dato))|"
        r"\b(?:istruzioni|regole|direttive)\s+(?:del|di)\s+sistema\s+non\s+(?:valgono|contano|sono\s+"
        r"(?:più\s+)?valide)",
        ("istruzion", "regol", "direttiv", "restrizion", "indicazion", "linee guida"),
        native=True,
    ),
    _rule(
        "it_reveal", MULTILINGUAL, 0.85,
        r"\b(?:scrivi|mostra(?:mi)?|rivela(?:mi)?|ripeti|stampa|dimmi|copia)\s+(?:\w+\s+){0,4}"
        r"(?:prompt|messaggio|istruzioni|regole|direttive)\s+(?:di\s+sistema|del\s+sistema|nascost[ei]|"
        r"segret[ei]|iniziali|iniziale)",
        ("sistema", "nascost", "segret", "inizial"),
        native=True,
    ),
    _rule(
        "it_no_limits", MULTILINGUAL, 0.45,
        r"\bsenza\s+(?:alcun[oa]?\s+|nessun[oa]?\s+)?(?:limiti|limite|filtri|filtro|"
        r"restrizioni|censura|regole)\b",
        ("senza",),
        native=True,
    ),
    # Russian
    _rule(
        "ru_override", MULTILINGUAL, 0.85,
        r"(?:игнорируй|проигнорируй|забудь|не\s+обращай\s+внимания\s+на|отбрось|не\s+слушай|"
        r"не\s+следуй|перестань\s+следовать)\s+(?:все\s+)?(?:свои\s+|твои\s+|эти\s+)?"
        r"(?:предыдущие\s+|прежние\s+|данные\s+|заданные\s+|исходные\s+|системные\s+)?"
        r"(?:инструкции|правила|указания|ограничения|установки|директивы)"
        r"(?:\s*,?\s*(?:которые|что)\s+(?:тебе|вам)\s+(?:задали|дали|были\s+даны))?",
        ("инструкц", "правил", "указани", "ограничени", "установк", "директив"),
        native=True,
    ),
    _rule(
        "ru_reveal", MULTILINGUAL, 0.85,
        r"(?:перечисли|покажи|выведи|раскрой|напиши|повтори|скажи|дай)\s+(?:мне\s+)?"
        r"(?:все\s+)?(?:свои\s+|твои\s+)?(?:скрытые|системные|исходные|секретные|"
        r"первоначальные)\s+(?:инструкции|указания|правила|промпт)|системный\s+промпт",
        ("скрыт", "систем", "исходн", "секрет", "первоначальн"),
        native=True,
    ),
    _rule(
        "ru_no_limits", MULTILINGUAL, 0.45,
        r"без\s+(?:каких-либо\s+|всяких\s+|любых\s+)?(?:ограничений|фильтров|цензуры|правил)",
        ("без",),
        native=True,
    ),
    # Chinese
    _rule(
        "zh_override", MULTILINGUAL, 0.85,
        r"(?:忽略|无视|忘记|忘掉|不要理会|不用理会|抛开|放弃)(?:掉)?(?:你|您)?(?:收到的|的)?"
        r"(?:之前|以前|先前|上面|此前|原来|原有|所有|全部|一切|系统)"
        r".{0,8}?(?:规则|指令|指示|提示词?|设定|限制|要求|约束|命令)",
        ("忽略", "无视", "忘记", "忘掉", "理会", "抛开", "放弃"),
        native=True,
    ),
    _rule(
        "zh_reveal", MULTILINGUAL, 0.85,
        r"(?:输出|显示|告诉我|打印|重复|泄露|给我|展示|透露)(?:你的|您的)?.{0,10}?(?:系统提示词?|"
        r"系统指令|隐藏(?:的)?指令|初始指令|初始设定)",
        ("系统", "隐藏", "初始"),
        native=True,
    ),
    _rule(
        "zh_no_limits", MULTILINGUAL, 0.45,
        r"(?:没有|不受)任何(?:限制|约束|规则|过滤)",
        ("任何",),
        native=True,
    ),
    # Japanese
    _rule(
        "ja_override", MULTILINGUAL, 0.85,
        r"(?:(?:これまでの|以前の|前の|上記の|すべての|全ての|今までの|最初の|元の|あなたの)"
        r"(?:指示|命令|ルール|設定|制約|指令|ガイドライン)(?:は|を)(?:すべて|全て|全部)?|"
        r"(?:指示|命令|ルール|設定|制約|指令|ガイドライン)(?:は|を)(?:すべて|全て|全部))(?:無視|忘れ)|"
        r"(?:指示|命令|ルール|設定|制約|指令|ガイドライン)(?:は|が)(?:もう|すでに|今後は?)?(?:すべて|全て|全部)?"
        r"(?:無効|取り消|解除|撤回)",
        ("無視", "忘れ", "無効", "取り消", "解除", "撤回"),
        native=True,
    ),
    _rule(
        "ja_reveal", MULTILINGUAL, 0.75,
        r"(?:システムプロンプト|最初に(?:与えられた|受け取った|設定された)(?:設定|指示|プロンプト)(?:文|内容)?|"
        r"隠しプロンプト|隠された指示|秘密の指示|"
        r"初期設定).{0,16}?(?:表示|出力|教え|見せ|開示|そのまま)",
        ("システム", "最初", "隠され", "隠し", "秘密", "初期"),
        native=True,
    ),
    _rule(
        "ja_no_limits", MULTILINGUAL, 0.45,
        r"(?:制限|フィルター|ルール)(?:なし|無し|のない|を外し)",
        ("制限", "フィルター", "ルール"),
        native=True,
    ),
    # Korean
    _rule(
        "ko_override", MULTILINGUAL, 0.85,
        r"(?:(?:이전|앞의|기존|모든|위의|처음)\s*(?:지시|지침|규칙|명령|설정|제한)(?:은|는|을|를|들은|"
        r"들을)?\s*(?:모두|전부|다)?|(?:지시|지침|규칙|명령|설정|제한)(?:은|는|을|를|들은|들을)?\s*"
        r"(?:모두|전부))\s*(?:무시|잊어)|"
        r"(?:이전|기존|모든|처음)\s*(?:지시|지침|규칙|명령|설정|제한)(?:은|는|이|가|들은)?\s*(?:모두|전부|다)?\s*"
        r"(?:취소|무효|해제)",
        ("무시", "잊어", "취소", "무효", "해제"),
        native=True,
    ),
    _rule(
        "ko_reveal", MULTILINGUAL, 0.75,
        r"(?:시스템\s*프롬프트|비밀\s*지침|숨겨진\s*(?:시스템\s*)?(?:지침|지시)|초기\s*설정).{0,20}?(?:보여|출력|"
        r"알려|공개|그대로)",
        ("시스템", "비밀", "숨겨진", "초기"),
        native=True,
    ),
]

_ALL_RULES = _RULES + _MULTILINGUAL_RULES
_RULE_ORDER = {rule: position for position, rule in enumerate(_ALL_RULES)}
if any(not rule.triggers for rule in _ALL_RULES):
    raise AssertionError("every injection rule needs at least one trigger substring")


def _rules_by_trigger(native: bool) -> dict[str, tuple[_Rule, ...]]:
    table: dict[str, list[_Rule]] = {}
    for rule in _ALL_RULES:
        if rule.native == native:
            for trigger in rule.triggers:
                table.setdefault(trigger, []).append(rule)
    return {trigger: tuple(rules) for trigger, rules in table.items()}


_LATIN_TRIGGERS = _rules_by_trigger(native=False)
_NATIVE_TRIGGERS = _rules_by_trigger(native=True)


def _automaton(triggers: Iterable[str]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for trigger in triggers:
        automaton.add_word(trigger, trigger)
    automaton.make_automaton()
    return automaton


_LATIN_AUTOMATON = _automaton(_LATIN_TRIGGERS)
_NATIVE_AUTOMATON = _automaton(_NATIVE_TRIGGERS)

# Words that mark a prompt as talking about attacks rather than making one.
_SECURITY_DISCUSSION = re.compile(
    r"\b(?:attacks?|attackers?|injections?|jailbreaks?|red[- ]team(?:ing|ers?)?|threat\s+model|"
    r"mitigat\w*|defen[cs]es?|defend|guard\s+against|detect(?:ion|or|s)?|classifier|"
    r"sanitiz\w*|sanitis\w*|phishing|homoglyph|adversarial|payloads?|exploit(?:s|ed)?|"
    r"security\s+(?:class|course|training|research|team|review|engineer\w*)|"
    r"test\s+(?:that|whether|if)|pytest|unit\s+test|asserts?|(?:phrases?|strings?|wording)\s+like)\b",
)
# A prompt that opens by asking for a translation: the imperatives of the text it quotes
# address that text's readers ("Ignorez les consignes précédentes, la réunion est annulée").
_TRANSLATION_REQUEST = re.compile(
    r"^\W*(?:please\s+|kindly\s+)?(?:translate|traduis|traduisez|traduce|traduci|traduza|traduzir|"
    r"übersetze|übersetzen|переведи|翻译|翻訳|번역)"
)
# Only overrides are read as addressed to the quoted text's readers. Text that addresses
# the AI itself ("Assistant, stop translating") keeps its weight inside a translation.
_TRANSLATED_CATEGORIES = frozenset({DIRECT_OVERRIDE, MULTILINGUAL})
# Apostrophes inside words ("let's", "don't") neither open nor close a quote.
_QUOTED = re.compile(
    r"(?<![A-Za-z])'[^'\n]{3,}?'(?![A-Za-z])|\"[^\"\n]{3,}\"|“[^”\n]{3,}”|‘[^’\n]{3,}’|«[^»\n]{3,}»"
)
_QUOTE_DISCOUNT = 0.3
# The patterns are written to span under about 280 characters, so a window this wide on
# each side of a trigger contains any match the trigger is part of.
_WINDOW = 300
_MAX_TRIGGER_HITS = 32
_UNPASTED_DISCOUNT = 0.3
_REPORTED_SPEECH_DISCOUNT = 0.2
# Text before an override or extraction verb that makes it a report or a question, not
# an order: "told me to ignore the previous instructions", "why does the model sometimes
# ignore the system prompt", "how can users bypass the filters".
# "Never reveal the internal rules" in a system prompt a user drafts forbids the act that
# the verb-led rules look for.
_NEGATED_VERB = re.compile(
    r"\b(?:never|not|don'?t|doesn'?t|won'?t|mustn'?t|must\s+not|cannot|can'?t|shouldn'?t)"
    r"\s+(?:ever\s+)?$"
)
_REPORTED_SPEECH = re.compile(
    r"\b(?:users?|someone|somebody|anyone|people|they|he|she|attackers?|customers?|visitors?)\s+"
    r"(?:\w+\s+)?(?:asks?|asked|tells?|told|wants?|wanted|instructs?|tries\s+to\s+get|tried\s+to\s+get)"
    r"\s+(?:you|it|the\s+\w+)\s+to\s+$|"
    r"(?:\b(?:me|us|him|her|them|i|we|they|he|she|users?|people|employees|staff|customers?|"
    r"students?|everyone|someone|somebody|nobody|attackers?)\s+(?:to|should|must|can|could|will|"
    r"would|may|might|did|do|does|don'?t|didn'?t|never|not|always|shall)\s+(?:not\s+|never\s+|"
    r"just\s+)?"
    r"|\b(?:model|assistant|bot|chatbot|ai|llm|agent|gpt|it)\s+(?:\w+\s+)?(?:sometimes|often|"
    r"always|usually|occasionally|frequently|still|keeps?|tends?\s+to|seems?\s+to|starts?\s+to|"
    r"began\s+to|begins?\s+to|refuses?\s+to|fails?\s+to|will\s+not|won'?t)\s+"
    r"|\b(?:why|how|when|whether)\s+(?:does|do|did|would|could|can|is|are|might)\s+"
    r"(?:\w+\s+){0,4}?)$"
)
# Rules whose match starts with the override or reveal verb that reported speech governs.
_VERB_LED_RULES = frozenset({
    "override_own_instructions", "override_given_instructions", "override_instructions",
    "override_everything_told", "ignore_the_above", "reveal_own_instructions",
    "reveal_given_instructions", "reveal_secret_thing", "summarise_own_instructions",
    "repeat_text_above", "override_system_prompt", "treat_instructions_as_void",
    "reveal_from_your_config",
})
# Rules that restate the same evidence. Within a family only the strongest counts.
_FAMILIES = {
    "override_own_instructions": "override", "override_given_instructions": "override",
    "override_instructions": "override", "override_everything_told": "override",
    "ignore_the_above": "override", "override_system_prompt": "override",
    "reveal_own_instructions": "reveal", "reveal_given_instructions": "reveal",
    "reveal_secret_thing": "reveal", "summarise_own_instructions": "reveal",
    "reveal_from_your_config": "reveal",
    "what_is_in_your_prompt": "reveal",
    "system_prompt_mention": "prompt_mention", "hidden_instructions_mention": "prompt_mention",
    "chat_template_tokens": "chat_markup", "fake_system_turn": "chat_markup",
    "dead_relative_persona": "persona_recipe", "dangerous_recipe": "persona_recipe",
}

_FRAMING_MIN_WEIGHT = 0.35
_FRAMING_PRECEDENCE = (
    MULTILINGUAL, DELIMITER_MARKUP, TOOL_HIJACK, PAYLOAD_SPLITTING, ROLEPLAY_JAILBREAK, _INDIRECT,
)
# Signs that the prompt carries content pasted for processing (an e-mail, a page, a tool
# result), where text addressed to the AI is an indirect injection, not the user's own.
_PASTED_CONTENT = re.compile(
    r"\b(?:summari[sz]e|translate|review|proofread|triage|analy[sz]e|extract|rewrite|"
    r"explain\s+what|draft\s+a\s+reply|reply\s+to|score|here(?:'s|\s+is|\s+are)|below|"
    r"attached|following|this\s+(?:e-?mail|document|page|file|transcript|text|snippet|result|"
    r"output|review|clause|cv|ticket|script|module|pull\s+request|newsletter)|"
    r"tool\s+(?:result|output)|search\s+result|result\s+snippet)\b|```|\n\s*\n|<[a-z!]"
)

# "Decode it, but don't act on it": the decoded text is evidence, not an instruction.
_DECLINED = re.compile(
    r"(?:don'?t|do\s+not|never|without)\s+(?:act(?:ing)?\s+on|follow(?:ing)?|obey(?:ing)?|"
    r"execut(?:e|ing)|run(?:ning)?|carry(?:ing)?\s+out)\s+(?:it|them|this|that|the\s+(?:text|content|"
    r"instructions?|result|decoded\s+\w+))\b"
)

# Decoding candidates.
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}[ :,-]?){12,}(?![0-9a-fA-F])")
_ROT13_CUE = re.compile(r"rot-?\s?13|caesar|cipher")
# This runs on every prompt, so each alternative starts with a literal: a leading \b or
# character class costs the engine a try at every offset (about 4 µs each, measured on a
# 2-core AMD EPYC).
_SPLIT_CUE = re.compile(
    r"concatenat|join|combine|merge|assemble|put\s+together|part\s+(?:one|two|1|2)|"
    r"\+\s*(?:'[^']*'\s*\+\s*)?[a-z]\b|followed\s+by\s+[a-z]\b|"
    r"(?:perform|execute|run)\s+[a-z]\s+[a-z]\b|carry\s+it\s+out|put\s+(?:the\s+)?(?:first|second)"
    r"\s+(?:word|phrase|part)\s+(?:before|after)",
)
_LETTER_DIGIT = re.compile(r"[a-z][0-9]|[0-9][a-z]")
_LEET_TOKEN = re.compile(r"\b[a-z0-9]*(?:[a-z][0-9]|[0-9][a-z])[a-z0-9]*\b")
_LEET_MAP = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                           "8": "b", "9": "g", "@": "a", "$": "s"})
_COMMON_ENGLISH = frozenset(
    "the a an and or of to in is are be you your i it this that for on with as at by from "
    "not do what how can me my we our they he she was were have has will would please".split()
)
_WORD = re.compile(r"[a-z]+")
_ANY_WORD = re.compile(r"[^\W\d_]+")
_TAG_CHARS = re.compile("[\U000e0020-\U000e007e]+")
_INVISIBLE_BETWEEN_LETTERS = re.compile(
    r"[^\W\d_][\u200b-\u200f\u2060-\u2064\ufeff\u00ad]+[^\W\d_]"
)


@lru_cache(maxsize=1)
def _confusable_table() -> dict[int, str]:
    """Map look-alike letters of other scripts to lower-case Latin letters.

    The data is the Unicode confusables list as shipped by ``confusable-homoglyphs``.
    Only single non-ASCII characters that look like one ASCII letter are mapped.
    """
    data = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    )
    table: dict[int, str] = {}
    for character, homoglyphs in data.items():
        if len(character) != 1 or character.isascii():
            continue
        for homoglyph in homoglyphs:
            latin = homoglyph["c"]
            if len(latin) == 1 and latin.isascii() and latin.isalpha():
                table[ord(character)] = latin.lower()
                break
    # Greek epsilon, tau, kappa and chi pass for e, t, k and x in "disrεgard your rulεs".
    for character, latin in (("ε", "e"), ("τ", "t"), ("κ", "k"), ("χ", "x")):
        table.setdefault(ord(character), latin)
    return table


@lru_cache(maxsize=1)
def _invisible_table() -> dict[int, None]:
    """Return a translate table that deletes format characters (Cf) and variation selectors."""
    table: dict[int, None] = {}
    ranges = [(0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD),
              (0x070F, 0x070F), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
              (0x2060, 0x2064), (0x2066, 0x206F), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
              (0xFFF9, 0xFFFB), (0xE0000, 0xE007F), (0xE0100, 0xE01EF)]
    for low, high in ranges:
        for code in range(low, high + 1):
            table[code] = None
    return table


@dataclass(frozen=True)
class _Context:
    discussion: bool
    """The prompt talks about attacks or security testing outside its quotes."""
    pasted: bool
    """The prompt carries content pasted for processing (quotes, a document, a tool result)."""
    translation: bool = False
    """The prompt opens by asking for a translation."""
    declined: bool = False
    """The text is a decoded payload, and the prompt requests its decoding only, not acting on it."""


@dataclass
class _Views:
    cleaned: str
    """NFKC with invisible characters removed, case kept (base64 is case-sensitive)."""
    native: str
    latin: str
    zero_width: bool
    homoglyph: bool
    tags: str


def _build_views(text: str) -> _Views:
    tags = ""
    if not text.isascii():
        if "\U000e0000" <= max(text):
            tags = "".join(
                chr(ord(c) - 0xE0000) for run in _TAG_CHARS.findall(text) for c in run
            )
        zero_width = len(_INVISIBLE_BETWEEN_LETTERS.findall(text)) >= 2
        stripped = text.translate(_invisible_table())
        cleaned = unicodedata.normalize("NFKC", stripped)
        native = cleaned.lower()
        latin = native.translate(_confusable_table())
        homoglyph = _has_disguised_words(stripped, cleaned)
    else:
        zero_width = False
        homoglyph = False
        cleaned = text
        native = latin = text.lower()
    return _Views(
        cleaned=cleaned, native=native, latin=latin, zero_width=zero_width,
        homoglyph=homoglyph, tags=tags,
    )


def _has_disguised_words(stripped: str, cleaned: str) -> bool:
    """Return True when words mix Latin with look-alike letters, or use full-width Latin."""
    if cleaned != stripped:
        # NFKC folded something: count the full-width and styled Latin letters it removed.
        folded = 0
        for character in stripped:
            if character.isascii():
                continue
            normalised = unicodedata.normalize("NFKC", character)
            if normalised.isascii() and normalised.isalpha():
                folded += 1
        if folded >= 3:
            return True
    table = _confusable_table()
    mixed = 0
    for word in _ANY_WORD.findall(cleaned):
        if word.isascii():
            continue
        has_latin = any(c.isascii() and c.isalpha() for c in word)
        has_lookalike = any(ord(c) in table for c in word)
        if has_latin and has_lookalike:
            mixed += 1
            if mixed >= 2:
                return True
    return False


def _looks_like_text(decoded: str) -> bool:
    if len(decoded) < 8:
        return False
    printable = sum(1 for c in decoded if c.isprintable() or c in "\n\t")
    letters = sum(1 for c in decoded if c.isalpha())
    spaces = decoded.count(" ")
    return printable / len(decoded) > 0.95 and letters / len(decoded) > 0.6 and spaces >= 2


def _decode_base64(text: str) -> list[str]:
    payloads = []
    for match in _BASE64.finditer(text):
        token = match.group(0)
        if not any(c.isdigit() or c.isupper() for c in token):
            continue  # a long lower-case word or identifier, not base64
        padded = token + "=" * (-len(token.rstrip("=")) % 4)
        for decoder in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decoder(padded).decode("utf-8")
            except (binascii.Error, ValueError):
                continue
            if _looks_like_text(decoded):
                payloads.append(decoded)
                break
    return payloads


def _decode_hex(text: str) -> list[str]:
    payloads = []
    for match in _HEX.finditer(text):
        digits = re.sub(r"[ :,-]", "", match.group(0))
        if len(digits) % 2:
            digits = digits[:-1]
        try:
            decoded = bytes.fromhex(digits).decode("utf-8")
        except ValueError:
            continue
        if _looks_like_text(decoded):
            payloads.append(decoded)
    return payloads


def _leet_view(latin: str) -> str | None:
    if _LETTER_DIGIT.search(latin) is None:
        return None
    tokens = _LEET_TOKEN.findall(latin)
    if len(tokens) < 3:
        return None
    return _LEET_TOKEN.sub(lambda m: m.group(0).translate(_LEET_MAP), latin)


def _mostly_not_english(latin: str) -> bool:
    words = _WORD.findall(latin)
    if len(words) < 6:
        return False
    common = sum(1 for word in words if word in _COMMON_ENGLISH)
    return common / len(words) < 0.12


def _joined_quotes(text: str) -> list[str]:
    parts = [match.group(0)[1:-1] for match in _QUOTED.finditer(text)]
    if len(parts) < 2:
        return []
    return ["".join(parts), " ".join(parts)]


def _indirect_kind(latin: str) -> str:
    if re.search(r"```|(?:^|\n)\s*(?:#|//|/\*)|\bdef\s+\w+\(|\bfunction\s+\w+\(|"
                 r"pull\s+request|\bcommit\b|\bscript\b", latin):
        return INDIRECT_CODE_COMMENT
    if re.search(r"\bsubject:|\bfrom:\s|\bnewsletter\b|\binbox\b|\b(?:this|the|following|an|"
                 r"my|unread|customer|support)\s+e-?mails?\b|\be-?mail\s+(?:body|thread|message|"
                 r"below|from)\b", latin):
        return INDIRECT_EMAIL
    if re.search(r"<html|<body|<div|<span|<!--|web\s*page|search\s+result|product\s+page|"
                 r"website|\breviews?\b", latin):
        return INDIRECT_WEB
    return INDIRECT_DOCUMENT


class _TriggerIndex:
    """Find rule matches near the occurrences of their trigger substrings.

    One Aho-Corasick pass (``pyahocorasick``) finds every trigger of every rule. A rule
    is tried only when one of its triggers occurs, and only in windows around those
    occurrences, because a pattern search costs time at every offset it is tried from.
    """

    __slots__ = ("text", "_positions")

    def __init__(self, text: str, automaton: ahocorasick.Automaton) -> None:
        self.text = text
        self._positions: dict[str, list[int]] = {}
        for end, trigger in automaton.iter(text):
            self._positions.setdefault(trigger, []).append(end - len(trigger) + 1)

    def candidates(self, rules_by_trigger: dict[str, tuple[_Rule, ...]]) -> set[_Rule]:
        """Return the rules with at least one trigger in the text."""
        found: set[_Rule] = set()
        for trigger in self._positions:
            found.update(rules_by_trigger[trigger])
        return found

    def search(self, rule: _Rule) -> int | None:
        """Return the start offset of the rule's first match, or None."""
        text = self.text
        hits: list[int] = []
        for trigger in rule.triggers:
            positions = self._positions.get(trigger)
            if positions is not None:
                hits.extend(positions)
        if not hits:
            return None
        if len(hits) >= _MAX_TRIGGER_HITS or len(text) <= 2 * _WINDOW:
            match = rule.pattern.search(text)
            return None if match is None else match.start()
        hits.sort()
        windows: list[list[int]] = []
        for hit in hits:
            low, high = max(0, hit - _WINDOW), min(len(text), hit + _WINDOW)
            if windows and low <= windows[-1][1]:
                windows[-1][1] = high
            else:
                windows.append([low, high])
        for low, high in windows:
            match = rule.pattern.search(text[low:high])
            if match is not None:
                return low + match.start()
        return None


class InjectionDetector:
    """Score prompts for prompt injection and block those at or above a threshold."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        """Block texts whose combined score is at least ``threshold`` (0 to 1).

        Raises:
            ValueError: ``threshold`` is outside (0, 1].
        """
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"invalid threshold {threshold}: use a value in (0, 1]")
        self.threshold = threshold
        # Load the confusables table now rather than on the first request.
        _confusable_table()

    def scan(self, text: str) -> InjectionVerdict:
        """Return the verdict for ``text``."""
        if not text or not text.strip():
            return InjectionVerdict(blocked=False, score=0.0, technique=None)

        views = _build_views(text)
        context = _Context(
            discussion=_SECURITY_DISCUSSION.search(_QUOTED.sub(" ", views.latin)) is not None,
            pasted=_PASTED_CONTENT.search(views.latin) is not None
            or _QUOTED.search(views.latin) is not None,
            translation=_TRANSLATION_REQUEST.search(views.native) is not None,
        )
        signals: dict[str, _Signal] = {}
        self._match(views.latin, views.native, "plain", signals, context)

        leet = _leet_view(views.latin)
        if leet is not None and leet != views.latin:
            self._match(leet, leet, OBFUSCATION_LEETSPEAK, signals, context)
        declined = _DECLINED.search(views.latin) is not None
        for payload in _decode_base64(views.cleaned):
            self._match_payload(payload, OBFUSCATION_BASE64, signals, declined)
        for payload in _decode_hex(views.cleaned):
            self._match_payload(payload, OBFUSCATION_HEX, signals, declined)
        if _ROT13_CUE.search(views.latin) or _mostly_not_english(views.latin):
            rotated = codecs.encode(views.latin, "rot13")
            self._match(rotated, rotated, OBFUSCATION_ROT13, signals, context)
        if views.tags:
            self._match_payload(views.tags, OBFUSCATION_UNICODE_TAGS, signals)
        if _SPLIT_CUE.search(views.latin):
            for joined in _joined_quotes(views.latin):
                self._match(joined, joined, PAYLOAD_SPLITTING, signals, context)

        if not signals:
            return InjectionVerdict(blocked=False, score=0.0, technique=None)
        score = self._combine(signals.values())
        technique = self._technique(signals.values(), views, context)
        blocked = score >= self.threshold
        if blocked:
            logger.debug(
                "prompt injection blocked",
                extra={"score": round(score, 3), "technique": technique, "rules": sorted(signals)},
            )
        return InjectionVerdict(blocked=blocked, score=round(score, 4), technique=technique)

    def _match(
        self,
        latin: str,
        native: str,
        view: str,
        signals: dict[str, _Signal],
        context: _Context,
    ) -> None:
        unquoted_latin: str | None = None
        latin_index = _TriggerIndex(latin, _LATIN_AUTOMATON)
        native_index = _TriggerIndex(native, _NATIVE_AUTOMATON)
        candidates = [
            *latin_index.candidates(_LATIN_TRIGGERS), *native_index.candidates(_NATIVE_TRIGGERS)
        ]
        candidates.sort(key=_RULE_ORDER.__getitem__)
        for rule in candidates:
            subject, index = (native, native_index) if rule.native else (latin, latin_index)
            start = index.search(rule)
            if start is None:
                continue
            weight = rule.weight
            quoted = False
            if rule.needs_pasted and not context.pasted:
                weight *= _UNPASTED_DISCOUNT
            if rule.name in _VERB_LED_RULES and (
                _REPORTED_SPEECH.search(subject[max(0, start - 48):start])
                or _NEGATED_VERB.search(subject[max(0, start - 16):start])
            ):
                weight *= _REPORTED_SPEECH_DISCOUNT
            if context.discussion or (context.translation and rule.category in _TRANSLATED_CATEGORIES):
                # Quoting an attack while discussing security is not an attack, nor is quoting
                # an imperative for translation, so the full weight stays only when the pattern
                # also matches outside quotes.
                if unquoted_latin is None:
                    unquoted_latin = _QUOTED.sub(" ", latin)
                unquoted = _QUOTED.sub(" ", native) if rule.native else unquoted_latin
                if rule.pattern.search(unquoted) is None:
                    weight *= _QUOTE_DISCOUNT
                    quoted = True
            elif context.declined:
                # Decoded for a report, with acting on it forbidden: evidence, as if quoted.
                weight *= _QUOTE_DISCOUNT
                quoted = True
            previous = signals.get(rule.name)
            if previous is None or weight > previous.weight:
                signals[rule.name] = _Signal(rule, weight, view, quoted)

    def _match_payload(
        self, payload: str, view: str, signals: dict[str, _Signal], declined: bool = False
    ) -> None:
        payload_views = _build_views(payload)
        # A decoded payload counts as pasted content and never as a security discussion.
        context = _Context(discussion=False, pasted=True, declined=declined)
        self._match(payload_views.latin, payload_views.native, view, signals, context)

    @staticmethod
    def _combine(signals: Iterable[_Signal]) -> float:
        # Quoted attack strings in a security discussion count once, as their strongest
        # pattern, however many patterns one quoted example happens to trigger.
        strongest: dict[str, float] = {}
        strongest_quoted = 0.0
        for signal in signals:
            if signal.quoted:
                strongest_quoted = max(strongest_quoted, signal.weight)
            else:
                family = _FAMILIES.get(signal.rule.name, signal.rule.name)
                strongest[family] = max(strongest.get(family, 0.0), signal.weight)
        remaining = 1.0 - strongest_quoted
        for weight in strongest.values():
            remaining *= 1.0 - weight
        return 1.0 - remaining

    def _technique(self, signals: Iterable[_Signal], views: _Views, context: _Context) -> str:
        signals = list(signals)
        # A decoded payload that itself carries an instruction names the technique.
        decoded = [s for s in signals if s.view != "plain" and s.weight >= _FRAMING_MIN_WEIGHT]
        if decoded:
            return max(decoded, key=lambda signal: signal.weight).view
        if views.zero_width:
            return ZERO_WIDTH
        if views.homoglyph:
            return HOMOGLYPH
        plain = [s for s in signals if s.weight >= _FRAMING_MIN_WEIGHT] or signals
        categories = {signal.rule.category for signal in plain}
        pasted = context.pasted
        # The framing of an attack (fake markup, a tool result, a persona, a pasted
        # document) names it better than its goal, which most attacks share.
        for category in _FRAMING_PRECEDENCE:
            if category in categories:
                if category == _INDIRECT:
                    if pasted:
                        return _indirect_kind(views.latin)
                    continue
                return category
        if DATA_EXFILTRATION in categories and pasted:
            return _indirect_kind(views.latin)
        goals = [s for s in plain if s.rule.category not in (_INDIRECT, DATA_EXFILTRATION)]
        if not goals:
            return DATA_EXFILTRATION if DATA_EXFILTRATION in categories else DIRECT_OVERRIDE
        return max(goals, key=lambda signal: signal.weight).rule.category
