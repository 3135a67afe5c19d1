"""PII detection and reversible redaction of prompt text.

Each entity type has its own detector: a precompiled regular expression finds candidates
and a validator keeps only those that pass the format's checksum or structure rules.
Card numbers must pass Luhn, IBANs the country length and mod-97 (``python-stdnum``), US
SSNs the area, group and serial rules, phone numbers ``phonenumbers`` validation, and IP
addresses the ``ipaddress`` parser. Secret keys are found by provider prefix, or by a
variable name such as ``API_KEY`` or ``token`` next to a high-entropy value.

Where detectors overlap, the more specific one wins, in this order: API_KEY, EMAIL,
IBAN, CREDIT_CARD, US_SSN, IP_ADDRESS, DATE_OF_BIRTH, PHONE, LOCATION, PERSON. A key embedded in a URL's user part
therefore stays a key and is not also read as an e-mail address.

Dates of birth and person names are found by their cues, because without a language
model a bare date or capitalised word cannot be distinguished from any other. A date of
birth is a full date after a word such as "DOB", "born" or "Geburtsdatum", or in a
column named ``dob`` of a CSV header or SQL column list. A person name is a run of
capitalised words after a form label ("Name:"), a greeting ("Hi"), a sign-off
("Thanks,"), a self-introduction, a title or a role word ("employee"), or in a name
column. A name without such a cue is missed. A street address is a street with its
house number in one of the common European or English forms ("12 Elm Grove",
"Ahornstraße 16", "via delle Rose 9"), extended over the town, region and postcode
that follow it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.us import ssn as stdnum_ssn

logger = logging.getLogger(__name__)

EMAIL = "EMAIL"
PHONE = "PHONE"
CREDIT_CARD = "CREDIT_CARD"
IBAN = "IBAN"
US_SSN = "US_SSN"
IP_ADDRESS = "IP_ADDRESS"
API_KEY = "API_KEY"
DATE_OF_BIRTH = "DATE_OF_BIRTH"
PERSON = "PERSON"
LOCATION = "LOCATION"

SUPPORTED_TYPES: frozenset[str] = frozenset(
    {EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS, API_KEY, DATE_OF_BIRTH, PERSON, LOCATION}
)

# Lower number wins when two detectors claim overlapping text.
_PRIORITY = {
    API_KEY: 0,
    EMAIL: 1,
    IBAN: 2,
    CREDIT_CARD: 3,
    US_SSN: 4,
    IP_ADDRESS: 5,
    DATE_OF_BIRTH: 6,
    PHONE: 7,
    LOCATION: 8,
    PERSON: 9,
}

PLACEHOLDER_PATTERN = re.compile(r"\[([A-Z][A-Z_]*)_(\d+)\]")
"""A redaction placeholder such as ``[EMAIL_1]``. Group 1 is the type and group 2 the number."""


class UnknownPiiTypeError(ValueError):
    """A PII type name that the redactor does not support."""


@dataclass(frozen=True)
class PiiEntity:
    """One detected entity: its type and its span in the scanned text."""

    type: str
    """Entity type, one of ``SUPPORTED_TYPES``."""
    start: int
    """Offset of the first character."""
    end: int
    """Offset one past the last character."""


@dataclass
class Redaction:
    """The redacted texts of one request and what is needed to restore them."""

    texts: list[str]
    """The inputs, in order, with each entity replaced by its placeholder."""
    mapping: dict[str, str] = field(default_factory=dict)
    """Placeholder to original value."""
    counts: dict[str, int] = field(default_factory=dict)
    """Entity type to the number of occurrences replaced."""


# ---------------------------------------------------------------------------
# Shared helpers

_DIGIT = re.compile(r"\d")


def _line_before(text: str, start: int, width: int) -> str:
    """Return up to ``width`` characters before ``start``, cut at the last line break."""
    left = text[max(0, start - width):start]
    newline = left.rfind("\n")
    return left[newline + 1:] if newline >= 0 else left


def _entropy(value: str) -> float:
    """Return the Shannon entropy of ``value`` in bits per character."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _char_classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
    )


_PLACEHOLDER_WORDS = re.compile(
    r"\.\.\.|…|xxxx|<|>|\{|\}|\$|your|example|placeholder|redacted|changeme|dummy|sample|"
    r"insert|replace|here|0000000|\*\*\*",
    re.IGNORECASE,
)


def _has_ascending_run(value: str, length: int = 6) -> bool:
    """Return True when ``value`` has ``length`` ascending characters in a row (123456, abcdef)."""
    run = 1
    for previous, current in zip(value, value[1:], strict=False):
        run = run + 1 if ord(current) == ord(previous) + 1 else 1
        if run >= length:
            return True
    return False


def _looks_random(value: str, min_classes: int = 2, min_entropy: float = 3.0) -> bool:
    """Return True when ``value`` reads as a generated secret rather than a placeholder."""
    if _PLACEHOLDER_WORDS.search(value) or _has_ascending_run(value):
        return False
    if _char_classes(value) < min_classes:
        return False
    return _entropy(value) >= min_entropy


# ---------------------------------------------------------------------------
# API keys and other secrets

# Provider prefixes. Each body must still look random, which rejects ``sk-...`` and
# ``sk-your-key-here``. Sources: the providers' documented key formats.
_PREFIXED_SECRETS = [
    r"sk-ant-[a-z]+\d{2}-[A-Za-z0-9_-]{32,}",  # Anthropic
    r"sk-aigw-[A-Za-z0-9]{8}-[A-Za-z0-9]{32,}",  # this gateway's own keys
    r"sk-(?:proj|svcacct|admin|or-v1)-[A-Za-z0-9_-]{20,}",  # OpenAI project keys, OpenRouter
    r"sk-[A-Za-z0-9]{20,}",  # OpenAI legacy and other sk- keys
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys
    r"whsec_[A-Za-z0-9+/=]{24,}",  # Stripe webhook secrets
    r"gh[pousr]_[A-Za-z0-9]{36,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{50,}",  # GitHub fine-grained tokens
    r"gl(?:pat|dt|rt|ptt|soat|ft|cbt)-[A-Za-z0-9_-]{20,}",  # GitLab tokens
    r"xox[abposre]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"xapp-\d-[A-Za-z0-9-]{20,}",  # Slack app-level tokens
    r"(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}",  # AWS key ids
    r"AIza[0-9A-Za-z_-]{35}",  # Google API keys
    r"ya29\.[0-9A-Za-z_-]{20,}",  # Google OAuth access tokens
    r"GOCSPX-[A-Za-z0-9_-]{20,}",  # Google OAuth client secrets
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}",  # SendGrid
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"npm_[A-Za-z0-9]{36}",  # npm
    r"pypi-AgE[A-Za-z0-9_-]{50,}",  # PyPI
    r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}",  # Shopify
    r"do[opr]_v1_[a-f0-9]{64}",  # DigitalOcean
    r"gsk_[A-Za-z0-9]{40,}",  # Groq
    r"r8_[A-Za-z0-9]{30,}",  # Replicate
    r"pplx-[A-Za-z0-9]{40,}",  # Perplexity
    r"xai-[A-Za-z0-9]{40,}",  # xAI
    r"lin_api_[A-Za-z0-9]{30,}",  # Linear
    r"ntn_[A-Za-z0-9]{30,}",  # Notion
    r"hv[sb]\.[A-Za-z0-9_-]{24,}",  # HashiCorp Vault
    r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}",  # Postman
    r"sbp_[a-f0-9]{40}",  # Supabase
    r"dapi[a-f0-9]{32}",  # Databricks
    r"key-[0-9a-f]{32}",  # Mailgun
    r"[0-9a-f]{32}-us\d{1,2}",  # Mailchimp
    r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",  # Grafana service accounts
    r"NRAK-[A-Z0-9]{27}",  # New Relic
    r"dp\.(?:st|pt|ct|sa|scim|audit)\.[A-Za-z0-9_-]{40,}",  # Doppler
    r"sq0(?:atp|csp)-[A-Za-z0-9_-]{22,}",  # Square
    r"\d{8,10}:AA[A-Za-z0-9_-]{33}",  # Telegram bot tokens
]
_PREFIXED_SECRET = re.compile(
    r"(?<![A-Za-z0-9_-])(?:" + "|".join(_PREFIXED_SECRETS) + r")(?![A-Za-z0-9_])"
)
_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]{16,}?"
    r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
)
# The body of a prefixed key starts after the first separator of its prefix.
_KEY_PREFIX_END = re.compile(r"^(?:[a-z]+(?:[-_.][a-z0-9]+)*[-_.]|AKIA|ASIA|AIza|[A-Z]{4})")

# A value assigned to a name that says it is a key, token or secret (DD_API_KEY=...,
# "client_secret": "..."). The keyword is found first in the lower-cased text and the
# rest is matched from there, which is several times faster than one case-insensitive
# pattern tried at every offset.
_SECRET_NAME_WORD = re.compile(r"key|secret|token|credential")
_SECRET_ASSIGNMENT = re.compile(
    r"[A-Za-z0-9_]*['\"]?\s*(?::=|=>|[:=])\s*['\"]?(?P<value>[A-Za-z0-9+/_.~=-]{16,512})"
)
_BEARER = re.compile(r"(?i)\b(?:bearer|token)\s+(?P<value>[A-Za-z0-9._~+/=-]{20,512})")
_CLI_SECRET = re.compile(
    r"(?i)--(?:api[-_]?key|token|secret|access[-_]?token|auth[-_]?token)[= ]['\"]?"
    r"(?P<value>[A-Za-z0-9+/_.~=-]{16,512})"
)
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def _jwt_header_ok(token: str) -> bool:
    """Return True when the first JWT segment decodes to a JSON object with ``alg`` or ``typ``."""
    header = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except (binascii.Error, ValueError):
        return False
    return decoded.startswith(b"{") and (b'"alg"' in decoded or b'"typ"' in decoded)


def _prefixed_secret_ok(token: str) -> bool:
    if token.startswith("eyJ"):
        return _jwt_header_ok(token)
    prefix = _KEY_PREFIX_END.match(token)
    body = token[prefix.end():] if prefix else token
    if len(body) < 12:
        return False
    # Hex-only bodies (Shopify, Databricks) have fewer classes and less entropy per character.
    if _HEX.match(body):
        return _looks_random(body, min_classes=2, min_entropy=2.8)
    return _looks_random(body, min_classes=2, min_entropy=3.0)


def _named_secret_ok(value: str) -> bool:
    value = value.rstrip(".=")
    if len(value) < 16 or _UUID.match(value):
        return False
    if _HEX.match(value):
        # Hex tokens named as keys: 32 characters and more (128-bit) with a digit and a letter.
        return len(value) >= 32 and _looks_random(value, min_classes=2, min_entropy=3.0)
    if len(value) < 20:
        return False
    return _looks_random(value, min_classes=2, min_entropy=3.5)


def _find_api_keys(text: str) -> Iterator[tuple[int, int]]:
    for match in _PREFIXED_SECRET.finditer(text):
        if _prefixed_secret_ok(match.group(0)):
            yield match.start(), match.end()
    if "PRIVATE KEY-----" in text:
        for match in _PRIVATE_KEY_BLOCK.finditer(text):
            yield match.start(), match.end()

    lowered = text.lower()
    values: list[re.Match[str]] = []
    for word in _SECRET_NAME_WORD.finditer(lowered):
        assignment = _SECRET_ASSIGNMENT.match(text, word.end())
        if assignment is not None:
            values.append(assignment)
    if "bearer" in lowered or "token" in lowered:
        values.extend(_BEARER.finditer(text))
    if "--" in text:
        values.extend(_CLI_SECRET.finditer(text))
    for match in values:
        value = match.group("value").rstrip(".")
        if _named_secret_ok(value):
            yield match.start("value"), match.start("value") + len(value)


# ---------------------------------------------------------------------------
# E-mail addresses

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-])"
)
# Retina image names (icon@2x.png) and similar look like addresses.
_FILE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "ts", "json", "html", "txt"}
)


def _find_emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        value = match.group(0)
        domain = value.rsplit("@", 1)[1]
        labels = domain.split(".")
        if len(labels) == 2 and labels[1].lower() in _FILE_EXTENSIONS:
            continue
        if ".." in value:
            continue
        yield match.start(), match.end()


# ---------------------------------------------------------------------------
# IBAN

_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{1,4}){3,8}(?![A-Za-z0-9])"
)


def _find_ibans(text: str) -> Iterator[tuple[int, int]]:
    for match in _IBAN.finditer(text):
        value = match.group(0)
        # The pattern may swallow a short trailing word ("... 05 AB"), so shorter forms are
        # tried too.
        groups = value.split(" ")
        for count in range(len(groups), 0, -1):
            candidate = " ".join(groups[:count])
            # National check digits are not validated: only the IBAN's own mod-97.
            if stdnum_iban.is_valid(candidate, check_country=False):
                yield match.start(), match.start() + len(candidate)
                break


# ---------------------------------------------------------------------------
# Payment cards

_CARD = re.compile(
    r"\d(?<![A-Za-z0-9_/-]\d)(?<!\d[.,:]\d)"
    r"\d{2,5}(?:(?P<sep>[ -])\d{1,7}(?:(?P=sep)\d{1,7}){0,4}|\d{7,16})(?![A-Za-z0-9_/]|[.,-]\d)"
)


def _card_groups_ok(value: str) -> bool:
    if " " in value:
        groups = value.split(" ")
    elif "-" in value:
        groups = value.split("-")
    else:
        return True
    # Issuers print 4-4-4-4(-3), 4-6-5 (Amex), 4-6-4 (Diners) and similar. The last group
    # may be short.
    return all(3 <= len(g) <= 6 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 6


def _find_cards(text: str) -> Iterator[tuple[int, int]]:
    for match in _CARD.finditer(text):
        value = match.group(0)
        digits = value.replace(" ", "").replace("-", "")
        if not 13 <= len(digits) <= 19:
            continue
        # Major industry identifier: issued payment cards start with 2 to 6.
        if digits[0] not in "23456" or len(set(digits)) == 1:
            continue
        if not _card_groups_ok(value) or not luhn.is_valid(digits):
            continue
        yield match.start(), match.end()


# ---------------------------------------------------------------------------
# US Social Security numbers

# Patterns start with \d and check the character before it afterwards, because a leading
# lookbehind stops the regex engine from skipping ahead to the next digit.
_SSN_DASHED = re.compile(r"\d(?<![A-Za-z0-9_-]\d)\d{2}-\d{2}-\d{4}(?![A-Za-z0-9_-])")
_SSN_SPACED = re.compile(
    r"\d(?<![A-Za-z0-9_-]\d)(?<!\d \d)\d{2} \d{2} \d{4}(?! \d)(?![A-Za-z0-9_-])"
)
_SSN_BARE = re.compile(r"\d(?<![A-Za-z0-9_-]\d)\d{8}(?![A-Za-z0-9_-])")
_SSN_CONTEXT = re.compile(
    r"(?i)(?:\bssn|\bss#|social[ -]security|\bsocsec|\btaxpayer id|\bitin)\b"
)


def _ssn_ok(value: str) -> bool:
    return bool(stdnum_ssn.is_valid(value.replace(" ", "-")))


def _find_ssns(text: str) -> Iterator[tuple[int, int]]:
    for match in _SSN_DASHED.finditer(text):
        if _ssn_ok(match.group(0)):
            yield match.start(), match.end()
    for match in _SSN_SPACED.finditer(text):
        # A spaced 3-2-4 group is also a phone layout: a phone word without an SSN word
        # before it decides for the phone number.
        left = _line_before(text, match.start(), 40)
        if _PHONE_CONTEXT.search(left) and not _SSN_CONTEXT.search(left):
            continue
        if _ssn_ok(match.group(0)):
            yield match.start(), match.end()
    for match in _SSN_BARE.finditer(text):
        if _SSN_CONTEXT.search(_line_before(text, match.start(), 40)) and _ssn_ok(match.group(0)):
            yield match.start(), match.end()


# ---------------------------------------------------------------------------
# IP addresses

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(
    rf"(?<![A-Za-z0-9_.]){_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?P<prefix>/\d{{1,2}})?"
    r"(?![A-Za-z0-9_]|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|"
    rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})?(?![A-Za-z0-9_:]|\.\d)"
)
_VERSION_WORDS = re.compile(
    r"(?i)\b(?:v|ver|version|versions|build|release|rel|firmware|fw|driver|kernel|sdk|patch|"
    r"revision|rev|upgrade|upgraded|update|updated|downgrade|chrome|chromium|firefox|safari|"
    r"edge|windows|android|ios|macos|python|node|java|jdk|php|ruby|perl|golang|rust|npm|pip|"
    r"package|library|versione|versión|versão|バージョン|版本|версия)\b"
)
_ADDRESS_WORDS = re.compile(
    r"(?i)\b(?:ip|ipv4|ipv6|ips|address|addr|host|hostname|server|client|src|dst|source|"
    r"destination|upstream|downstream|peer|gateway|gw|dns|resolver|listen|bind|allowlist|"
    r"whitelist|blocklist|blacklist|allow|deny|block|blocked|ping|ssh|connect|proxy|"
    r"forwarded|remote|origin|endpoint|box|machine|vm|instance|bastion|router|nat|vpn|"
    r"adresse|dirección|endereço|indirizzo|адрес)\b"
)
_LAST_NUMERIC_TOKEN = re.compile(r"\S*\d\S*\s+(?=[^\d]*$)")
_CHAIN_WORDS = re.compile(r"^\s*(?:to|->|→|and|or|und|et|y|e|à|a|bis|,|/|-)\s*$", re.IGNORECASE)


def _is_netmask(address: ipaddress.IPv4Address) -> bool:
    value = int(address)
    if value >> 24 != 255:
        return False
    inverted = ~value & 0xFFFFFFFF
    return inverted & (inverted + 1) == 0


def _find_ipv4(text: str) -> Iterator[tuple[int, int]]:
    # The previous address's verdict carries across "X to Y" chains of versions.
    previous_end = -1
    previous_was_version = False
    for match in _IPV4.finditer(text):
        start, end = match.start(), match.end()
        prefix = match.group("prefix")
        address_text = text[start:match.start("prefix")] if prefix else match.group(0)
        address = ipaddress.IPv4Address(address_text)
        if int(address) == 0 or _is_netmask(address):
            previous_end, previous_was_version = end, False
            continue
        if prefix is not None:
            length = int(prefix[1:])
            if length > 32:
                continue
            network = ipaddress.IPv4Network(f"{address_text}/{length}", strict=False)
            # A network (10.0.0.0/8) names a range, not a host.
            if length < 32 and network.network_address == address:
                continue
        is_version = _looks_like_version(text, start, previous_end, previous_was_version)
        previous_end, previous_was_version = start + len(address_text), is_version
        if not is_version:
            yield start, start + len(address_text)


def _looks_like_version(
    text: str, start: int, previous_end: int, previous_was_version: bool
) -> bool:
    left = _line_before(text, start, 48)
    chained = previous_end >= 0 and start - previous_end <= 8
    if chained and _CHAIN_WORDS.match(text[previous_end:start]):
        return previous_was_version
    # Only words after the last number count, so "Build 1.2.3.4 deployed to" is an address.
    last_numeric = None
    for last_numeric in _LAST_NUMERIC_TOKEN.finditer(left):  # noqa: B007 - keeps the last match
        pass
    if last_numeric is not None:
        left = left[last_numeric.end():]
    if _ADDRESS_WORDS.search(left):
        return False
    return bool(_VERSION_WORDS.search(left))


def _find_ipv6(text: str) -> Iterator[tuple[int, int]]:
    if "::" not in text and text.count(":") < 7:
        return
    for match in _IPV6.finditer(text):
        value = match.group(0)
        if len(value) < 3 or not _DIGIT.search(value):
            continue
        if "::" not in value and value.count(":") != 7 and "." not in value:
            continue
        try:
            address = ipaddress.IPv6Address(value)
        except ValueError:
            continue
        if address.is_unspecified:
            continue
        yield match.start(), match.end()


# ---------------------------------------------------------------------------
# Phone numbers

_PHONE_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9_@#/+.-])(?<!\d[,:])"
    r"(?:\+|00(?=[1-9]))?(?:\(\d{1,5}\)|\d)(?:[ .\-]?(?:\(\d{1,5}\)|\d)){6,18}"
    r"(?![A-Za-z0-9_@/]|[.,:-]\d)"
)
_PHONE_CONTEXT = re.compile(
    r"(?i)(?:phone|tel\b|tel\.|tél|telephone|mobile|mob\b|cell|call|ring|text\b|sms|whatsapp|"
    r"fax|contact|reach|number|\bno\.|\bnr\.?|\bm:|\bt:|\bp:|telefon|handy|mobil|téléphone|"
    r"portable|teléfono|móvil|celular|número|telefone|telemóvel|cellulare|telefono|numero|"
    r"telefoon|mobiel|numara|puhelin|電話|携帯|手机|电话|号码|телефон|тел\.|номер|전화|휴대폰|번호|"
    r"\"phone\"|'phone')"
)
_NOT_PHONE_CONTEXT = re.compile(
    r"(?i)(?:order|invoice|tracking|track|ref\b|ref\.|reference|serial|isbn|issn|sku|\bid\b|"
    r"ticket|case|batch|account|acct|iban|card|loyalty|member|transaction|routing|zip|"
    r"postcode|postal|plz|bestell|rechnung|pedido|commande|facture|注文|订单|заказ|주문|"
    r"version|build|release|#)\W*$"
)
_DATE_SHAPE = re.compile(
    r"^(?:\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4})$"
)
_NANP_SHAPE = re.compile(r"^(?:\+?1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}$")
_CODE_TOKEN_BEFORE = re.compile(r"(?:[A-Za-z]+\d|\d+[A-Za-z])[A-Za-z0-9]* $")
# Regions tried for numbers written without a country code. A number passes when any of
# them validates it, so the shape and context rules above do most of the deciding.
_PHONE_REGIONS = (
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "JP", "CN", "KR", "IN", "AU", "RU",
    "PL", "TR", "ZA", "MX", "CA", "SE", "NO", "CH", "AT", "BE", "PT", "IE",
)


def _valid_in_some_region(candidate: str) -> bool:
    for region in _PHONE_REGIONS:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def _phone_groups(candidate: str) -> list[str]:
    return [g for g in re.split(r"[ .\-()]+", candidate.lstrip("+")) if g]


def _phone_ok(text: str, start: int, candidate: str) -> bool:
    digits = "".join(c for c in candidate if c.isdigit())
    if not 7 <= len(digits) <= 15 or len(set(digits)) <= 2:
        return False
    if _DATE_SHAPE.match(candidate) or candidate.count("(") != candidate.count(")"):
        return False
    groups = _phone_groups(candidate)
    if "." in candidate and any(len(g) < 2 for g in groups[1:]):
        return False  # dotted numbers with one-digit groups are versions
    left = _line_before(text, start, 32)
    if _CODE_TOKEN_BEFORE.search(left):
        return False  # continues a code such as "1Z 4F7 W92 03 8841 2290"
    has_context = bool(_PHONE_CONTEXT.search(left))
    if not has_context and _NOT_PHONE_CONTEXT.search(left):
        return False

    international = candidate.startswith("+") or candidate.startswith("00")
    if international:
        normalised = "+" + candidate[2:] if candidate.startswith("00") else candidate
        try:
            number = phonenumbers.parse(normalised, None)
        except phonenumbers.NumberParseException:
            return False
        # Fictional ranges (UK 07700 900xxx, US 555-01xx) fail is_valid but are still
        # numbers someone wrote down. A country code plus a possible length is enough.
        return phonenumbers.is_valid_number(number) or (
            len(groups) >= 2 and phonenumbers.is_possible_number(number)
        )

    if len(digits) > 12:
        return False
    if not has_context:
        # Without a word such as "phone" or "call", only shapes typical of phone numbers.
        separated = len(groups) >= 3 or "(" in candidate
        strong_shape = bool(_NANP_SHAPE.match(candidate)) or (
            separated and (candidate.startswith("0") or candidate.startswith("("))
        )
        if not strong_shape:
            return False
    elif len(groups) == 1 and len(digits) > 11:
        return False
    return _valid_in_some_region(candidate)


def _find_phones(text: str) -> Iterator[tuple[int, int]]:
    for match in _PHONE_CANDIDATE.finditer(text):
        candidate = match.group(0)
        if _phone_ok(text, match.start(), candidate):
            yield match.start(), match.end()


# ---------------------------------------------------------------------------
# Dates of birth: a full date (day, month and year) that a birth cue introduces. The
# cue is just before it on its line ("DOB: 02/14/1987", "nata il 3 marzo 1975"),
# or it names the date's column in a CSV header or an SQL column list ("dob").

_MONTH_NAMES = (
    # English (with abbreviations), French, Italian, Spanish, Portuguese, German.
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|"
    "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|"
    "gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|ottobre|dicembre|"
    "enero|febrero|abril|mayo|junio|julio|septiembre|setiembre|octubre|noviembre|diciembre|"
    "janeiro|fevereiro|março|marco|maio|junho|julho|setembro|outubro|dezembro|"
    "januar|februar|märz|maerz|juni|juli|oktober|dezember"
)
_YEAR = r"(?:19|20)\d{2}"
_YEAR_HINT = re.compile(_YEAR)
_FULL_DATE = re.compile(
    rf"(?<![0-9A-Za-z.-])(?:"
    rf"{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"  # ISO 8601
    rf"|\d{{1,2}}[./-]\d{{1,2}}[./-]{_YEAR}"  # 30/01/1977, 03.05.1979, 11/30/1990
    rf"|\d{{1,2}}(?:\.|er|º)?\s+(?:de\s+)?(?:{_MONTH_NAMES})\.?(?:\s+de)?,?\s+{_YEAR}"  # 17 de septiembre de 1995
    rf"|(?:{_MONTH_NAMES})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+{_YEAR}"  # April 12, 1990
    rf"|{_YEAR}年\d{{1,2}}月\d{{1,2}}日"  # 1988年4月12日
    rf"|{_YEAR}년\s*\d{{1,2}}월\s*\d{{1,2}}일"  # 1995년 7월 22일
    rf")(?![0-9A-Za-z-])",
    re.IGNORECASE,
)
_BIRTH_CUE = re.compile(
    r"(?:\b(?:d\.?o\.?b|date\s+of\s+birth|birth\s*date|birthday|born|geboren|geburtsdatum|geb"
    r"|né|née|nato|nata|nacid[oa]|naci[óo]|nascid[oa]|nasceu|fecha\s+de\s+nacimiento"
    r"|data\s+de\s+nascimento|data\s+di\s+nascita|date\s+de\s+naissance|geboortedatum"
    r"|födelsedatum|född|data\s+urodzenia|urodzon[ya]|doğum\s+tarihi|дата\s+рождения"
    r"|родил(?:ся|ась))\b"
    r"|生年月日|出生日期|出生于|生まれ|생년월일|출생일)",
    re.IGNORECASE,
)
# A field or column named for the birth date, in a CSV header or an SQL column list.
_BIRTH_FIELD = re.compile(
    r"^[\"'`\s]*(?:dob|date_?of_?birth|birth_?date|birthday|geburtsdatum|fecha_?nacimiento)[\"'`\s]*$",
    re.IGNORECASE,
)
# Between a cue and its date only short linking words may stand ("born on", "date of
# birth is", "Nació el", "geboren am"), so that "birthday party on June 5, 2025" or
# "born in Lisbon, moved on 2019-05-05" are not read as birth dates.
_CUE_LINK_WORDS = frozenset(
    "on is was the of his her my their your at am ist war le la el il em de do da es est était fue foi è é".split()
    + ["は", "が", "是", "为", "為", "은", "는", "이", "가"]
)
_CUE_MAX_GAP = 24
_WORD = re.compile(r"[^\W\d_]+")
_FIELD_SEPARATORS = (",", ";", "\t", "|")
_GROUP = re.compile(r"\(([^()\n]*)\)")
# Lines searched upwards for a header; a longer table is not looked at as one.
_HEADER_MAX_LINES = 200


def _day_month_ok(value: str) -> bool:
    """Return False for a numeric date whose parts cannot be a day and a month in either order."""
    parts = re.split(r"[./-]", value)
    if len(parts) != 3 or len(parts[2]) != 4:
        return True
    first, second = int(parts[0]), int(parts[1])
    return (1 <= first <= 31 and 1 <= second <= 12) or (1 <= first <= 12 and 1 <= second <= 31)


def _cue_before(text: str, start: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    window = text[max(line_start, start - _CUE_MAX_GAP - 40) : start]
    cues = list(_BIRTH_CUE.finditer(window))
    if not cues:
        return False
    gap = window[cues[-1].end() :]
    return len(gap) <= _CUE_MAX_GAP and all(word.lower() in _CUE_LINK_WORDS for word in _WORD.findall(gap))


def _record(text: str, start: int, end: int) -> tuple[int, int]:
    """Return the bounds of the line, or of the parenthesised group on it, around a span."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    opening = text.rfind("(", line_start, start)
    closing = text.find(")", end, line_end)
    if opening >= 0 and closing >= 0 and ")" not in text[opening:start]:
        return opening + 1, closing
    return line_start, line_end


def _header_candidates(text: str, before: int) -> Iterator[str]:
    """Yield the lines and parenthesised groups that end before offset ``before``, nearest first."""
    lines = text[:before].split("\n")
    for line in reversed(lines[-_HEADER_MAX_LINES:]):
        yield from reversed(_GROUP.findall(line))
        yield line


def _in_birth_column(text: str, start: int, end: int) -> bool:
    """Return True when the date sits in the column that an earlier header names as the birth date."""
    row_start, row_end = _record(text, start, end)
    row = text[row_start:row_end]
    for separator in _FIELD_SEPARATORS:
        if separator not in row:
            continue
        column = row[: start - row_start].count(separator)
        for header in _header_candidates(text, row_start):
            fields = header.split(separator)
            named = [index for index, field in enumerate(fields) if _BIRTH_FIELD.match(field)]
            if named:
                return column in named and len(fields) == row.count(separator) + 1
    return False


def _find_birth_dates(text: str) -> Iterator[tuple[int, int]]:
    # Every full date has a four-digit year, and most prompts have none. The date
    # pattern, with its month names, costs about 30 times more than this search.
    if _YEAR_HINT.search(text) is None:
        return
    for match in _FULL_DATE.finditer(text):
        if not _day_month_ok(match.group(0)):
            continue
        if _cue_before(text, match.start()) or _in_birth_column(text, match.start(), match.end()):
            yield match.start(), match.end()


# ---------------------------------------------------------------------------
# Person names: capitalised words right after a cue that introduces a person, such as a
# form label ("Name:", "Patient:", "Titular:"), a JSON or YAML key ("name"), a greeting
# ("Hi Ana", "Dear Mr. Lindqvist"), a sign-off ("Thanks, Omar"), a self-introduction
# ("my name is", "je m'appelle") or a payment phrase ("account holder", "op naam van").
# A name without such a cue is not found.

_PERSON_CUE_SOURCE = (
    r"\b(?:"
    # Labels of forms, logs and records, with ":" or "=", and keys of JSON or YAML.
    r"(?:full[ _]?name|first[ _]?name|last[ _]?name|given[ _]?name|family[ _]?name|surname|name"
    r"|vorname|nachname|nom|prénom|nombre|apellidos?|nome|cognome|titular|account[ _]holder"
    r"|card[ _]?holder|holder|beneficiary(?:[ _]name)?|beneficiario|payee|patient|student|policyholder"
    r"|author|from|attendees|participants|employee|applicant|guest|ship[ _]to|attn|customer|parent[ _]contact"
    r"|contact|cliente|client|kunde|klant|lieferadresse|sipariş sahibi"
    # Payees, recipients and senders are left out: they are companies as often as people.
    r"|naam|voornaam|achternaam|contacto|contatto|kontoinhaber(?:in)?|ansprechpartner(?:in)?"
    r"|intestatario|imię i nazwisko|ad soyad|клиент|фио|имя)[\"']?\s*[:=]\s*[\"']?"
    # Greetings.
    r"|(?:hi|hey|hello|dear|hallo|hola|olá|oi|bonjour|ciao|estimad[oa]|querid[oa]|car[oa]"
    r"|liebe[rs]?|sehr geehrte[rs]?|merhaba|sayın|hej|hoi|geachte|buongiorno|gentile"
    r"|bom dia|buenos días|dzień dobry|szanown[ay]|salut|coucou)\b,?[ \t]+"
    # Sign-offs, with their comma.
    r"|(?:thanks|thank you|cheers|best|regards|best regards|kind regards|sincerely|pozdrawiam"
    r"|saludos|cordialement|atenciosamente|grüße|viele grüße|un saluto|thx|gruss|gruß|liebe grüße"
    r"|groetjes|met vriendelijke groet)[,!][ \t]*\n?[ \t]*"
    # Family members and colleagues named right after the word for them: "my daughter Sofia".
    r"|(?:my|our|his|her)[ \t]+(?:daughter|son|wife|husband|mother|mom|mum|father|dad|brother"
    r"|sister|grandmother|grandfather|niece|nephew|cousin|aunt|uncle|colleague|coworker|manager"
    r"|boss|neighbou?r|friend|partner|fiancée?)[ \t]+"
    # Self-introductions and the names on payments and letters.
    r"|(?:my name is|je m'appelle|me llamo|mi chiamo|ich heiße|mein name ist|hier ist"
    r"|sou o|sou a|soy|name on the card is|op naam van|intestato a|à l'attention de|konto von"
    r"|a nombre de|em nome de|gave (?:his|her|their) name as)[ \t]+"
    r")|меня зовут\s+"
)
# Role words and titles right before a name, without a colon: "employee Greta
# Lindahl", "Ms. Ines Varga". After a role word or "I'm" the name needs two
# words, so that "user Admin", "customer Support" or "I'm Canadian" are not taken for one.
_ROLE_CUE_SOURCE = (
    r"\b(?:employee|user|customer|client|dependent|cardholder|titular|patient|student|engineer|applicant"
    r"|guest|tenant|record of|i am|i'm|i’m)[ \t]+"
)
# The cues are matched in the lowercased text, about three times faster than with
# IGNORECASE; the IGNORECASE forms serve text whose lowercase form has another length.
_PERSON_CUE_LOWER = re.compile(_PERSON_CUE_SOURCE)
_PERSON_CUE = re.compile(_PERSON_CUE_SOURCE, re.IGNORECASE)
_ROLE_CUE_LOWER = re.compile(_ROLE_CUE_SOURCE)
_ROLE_CUE = re.compile(_ROLE_CUE_SOURCE, re.IGNORECASE)
_TITLE_CUE = re.compile(
    r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Sra|Srta|Herr|Frau|Mme|Mlle|Pan|Pani|Sig\.ra|Sig\.na|Sig|Dott\.ssa|Dott"
    r"|Mevr|Dhr)\.?[ \t]+(?=[^\W\d_])|\bM\.[ \t]+(?=[^\W\d_a-z])"
)
# Columns of a CSV header or an SQL column list whose values are person names.
_NAME_FIELD_WORDS = (
    r"(?:name|full_?name|customer(?:_?name)?|guest|payee|holder|card_?holder|employee(?:_?name)?"
    r"|beneficiary|contact(?:_?name)?)"
)
_NAME_FIELD = re.compile(rf"^[\"'`\s]*{_NAME_FIELD_WORDS}[\"'`\s]*$", re.IGNORECASE)
# A name field between separators anywhere in the text. Without one there is no header
# to look for, and the search for it is much cheaper than splitting every line.
_NAME_FIELD_HINT = re.compile(
    rf"(?:^|[,;|\t(])[\"'`\s]*{_NAME_FIELD_WORDS}[\"'`\s]*(?:[,;|\t)]|$)", re.IGNORECASE | re.MULTILINE
)
_TITLE = re.compile(
    r"(?:mr|mrs|ms|miss|dr|prof|sr|sra|srta|herr|frau|mme|mlle|m|pan|pani)\.?[ \t]+", re.IGNORECASE
)
_NAME_TOKEN = re.compile(r"[^\W\d_]\.|[^\W\d_]+(?:[-'’][^\W\d_]+)*")
# Lowercase words that can stand inside a name, up to two in a row: "Jan van Dijk",
# "Tomás de la Cruz".
_NAME_PARTICLES = frozenset("de del della di da das do dos van von der den la le bin al y".split())
# Capitalised words that follow a cue but are not names: "Hi Team", "Dear Customer".
_NOT_NAMES = frozenset(
    "team all everyone everybody there folks support sir madam customer customers friends guys colleagues "
    "hiring manager admin user users the a an sales billing hr it devops world again to our your my "
    "this that none null unknown n/a test example i i'm i’m assistant bot chatgpt gpt copilot".split()
)
_NAME_MAX_TOKENS = 4


def _name_at(text: str, position: int) -> tuple[int, int] | None:
    """Return the span of the capitalised name that starts at ``position``, after an optional title."""
    title = _TITLE.match(text, position)
    if title is not None and title.end() < len(text) and text[title.end()].isupper():
        position = title.end()
    spans: list[tuple[int, int]] = []
    pending_particles = 0
    while len(spans) < _NAME_MAX_TOKENS:
        token = _NAME_TOKEN.match(text, position)
        if token is None:
            break
        word = token.group(0)
        # One letter counts only as an initial with its period ("T. Moreau").
        if word[0].isupper() and word.lower() not in _NOT_NAMES and (len(word) > 1 or spans):
            spans.append(token.span())
            pending_particles = 0
        elif spans and word.lower() in _NAME_PARTICLES and pending_particles < 2:
            pending_particles += 1
        else:
            break
        following = text[token.end() : token.end() + 1]
        if following != " ":
            break
        position = token.end() + 1
    if not spans:
        return None
    if all(text[start:end].isupper() and end - start <= 4 for start, end in spans):
        # Acronyms and codes ("USD", "DOB", "HR"), not a name written in capitals.
        return None
    after = text[spans[-1][1] : spans[-1][1] + 2]
    if after[:1] in ("(", "[") or (after[:1] == "." and after[1:2].isalpha()):
        # Code, not a name: "client = Client(…)", "user = User.objects…".
        return None
    return spans[0][0], spans[-1][1]


def _names_from(text: str, position: int, *, min_words: int = 1) -> Iterator[tuple[int, int]]:
    """Yield the name at ``position`` and the names that follow it in a comma-separated list."""
    while True:
        span = _name_at(text, position)
        if span is None or len(_NAME_TOKEN.findall(text[span[0] : span[1]])) < min_words:
            return
        yield span
        if text[span[1] : span[1] + 2] != ", ":
            return
        # Further items of a list ("Attendees: Lin Wei, Ada Obi") must be full
        # names, so that "Ship to: Ana Lima, Rosenweg 4" does not take the street.
        position = span[1] + 2
        min_words = 2


def _find_names_in_columns(text: str) -> Iterator[tuple[int, int]]:
    """Yield the values of name columns in the rows under a CSV header or an SQL column list."""
    if ("\n" not in text and "(" not in text) or _NAME_FIELD_HINT.search(text) is None:
        return
    for header in _header_candidates(text, len(text)):
        for separator in _FIELD_SEPARATORS:
            fields = header.split(separator)
            named = [index for index, field in enumerate(fields) if _NAME_FIELD.match(field)]
            if len(fields) < 2 or not named:
                continue
            header_at = text.find(header)
            rows_from = header_at + len(header)
            for row in _GROUP.finditer(text, rows_from):
                yield from _column_values(text, row.start(1), row.group(1), separator, named, len(fields))
            line_start = text.find("\n", rows_from)
            while line_start >= 0:
                line_end = text.find("\n", line_start + 1)
                line_end = len(text) if line_end < 0 else line_end
                row_text = text[line_start + 1 : line_end]
                yield from _column_values(text, line_start + 1, row_text, separator, named, len(fields))
                line_start = text.find("\n", line_start + 1)
            return


def _column_values(
    text: str, row_start: int, row: str, separator: str, named: list[int], width: int
) -> Iterator[tuple[int, int]]:
    values = row.split(separator)
    if len(values) != width:
        return
    offset = row_start
    for index, value in enumerate(values):
        if index in named:
            stripped = value.strip().strip("\"'`")
            start = text.find(stripped, offset) if stripped else -1
            span = _name_at(text, start) if start >= 0 else None
            if span is not None and span == (start, start + len(stripped)):
                yield span
        offset += len(value) + len(separator)


def _find_person_names(text: str) -> Iterator[tuple[int, int]]:
    lowered = text.lower()
    same_offsets = len(lowered) == len(text)
    person_cues = _PERSON_CUE_LOWER.finditer(lowered) if same_offsets else _PERSON_CUE.finditer(text)
    role_cues = _ROLE_CUE_LOWER.finditer(lowered) if same_offsets else _ROLE_CUE.finditer(text)
    for cue in person_cues:
        yield from _names_from(text, cue.end())
    for cue in role_cues:
        yield from _names_from(text, cue.end(), min_words=2)
    for cue in _TITLE_CUE.finditer(text):
        yield from _names_from(text, cue.end())
    yield from _find_names_in_columns(text)
    # Chinese self-introduction: 我叫 followed by a name of two to four characters.
    for match in re.finditer(r"我叫([\u4e00-\u9fff]{2,4})", text):
        yield match.start(1), match.end(1)
    for match in _CJK_NAME_LABEL.finditer(text):
        yield match.start(1), match.end(1)
    # The pattern starts with a character class, so it runs only when an honorific occurs.
    if "様" in text or "さん" in text or "殿" in text:
        for match in _JAPANESE_FULL_NAME.finditer(text):
            yield match.start(1), match.end(1)


# A Japanese full name, family and given name parted by a space, before the honorific
# 様, さん or 殿. Without the space the honorific also follows words such as お客 (customer)
# or 皆 (everyone), so those are not read as names.
_JAPANESE_FULL_NAME = re.compile(
    r"(?<![\u4e00-\u9fff\u3040-\u30ff])([\u4e00-\u9fff]{1,3}[ 　][\u4e00-\u9fff\u3040-\u309f]{1,3})(?:様|さん|殿)"
)
# Form labels for a name in Chinese, Japanese and Korean, with the name after the colon:
# two to five Han characters (a space may part family and given name) or two to four
# Hangul syllables.
_CJK_NAME_LABEL = re.compile(
    r"(?:姓名|收件人|联系人|申请人|氏名|お名前|名前|이름|성명|수령인|받는\s?사람)\s*[：:]\s*"
    # Placeholders such as 未定 (not decided yet) or 匿名 (anonymous) are not names.
    r"(?!未定|不明|なし|無し|未知|匿名|待定|未填|保密|미정|익명|없음)"
    r"([\u4e00-\u9fff]{1,2}[ 　]?[\u4e00-\u9fff]{1,3}(?![\u4e00-\u9fff])|[가-힣]{2,4}(?![가-힣]))"
)


# ---------------------------------------------------------------------------
# Street addresses: a street with its house number, then the comma-separated parts that
# follow it (unit, district, town, region, postcode, country), as far as they read as
# address parts. A street name alone, a town or a region is not an address.

_UPPER = r"[^\W\d_a-zß-ÿ]"  # an uppercase letter, any script with case
_CAP_WORD = rf"{_UPPER}[^\W\d_]*(?:[-'’]{_UPPER}?[^\W\d_]+)*\.?"
_HOUSE_NUMBER = r"\d{1,5}[A-Za-z]?(?:[/-]\d{1,4}[A-Za-z]?)?"
_ENGLISH_STREET = (
    r"street|st|avenue|ave|road|rd|lane|ln|drive|dr|close|crescent|court|ct|way|boulevard|blvd|place|pl"
    r"|terrace|square|parkway|highway|hwy|row|mews|grove|gardens|hill"
)
_STREET = re.compile(
    r"(?:"
    # A house number first: 804 Cedar Hollow Lane, 17 rue des Tisserands
    rf"(?P<number_first>(?<![\w.-]){_HOUSE_NUMBER}\s+(?:{_CAP_WORD}\s+){{1,3}}(?i:{_ENGLISH_STREET})\b\.?"
    rf"|(?<![\w.-]){_HOUSE_NUMBER},?\s+(?i:rue|avenue|av\.|boulevard|bd|chemin|allée|impasse|place|quai|cours)"
    rf"\s+(?:(?:de|du|des|la|le|l'|d')\s*)*{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}})"
    # Rua das Acácias, 312 / Calle de los Tilos 14 / via dei Mandorli 22 / ul. Jaśminowa 5/12
    rf"|(?P<street_first>\b(?i:rua|calle|carrer|via|viale|vicolo|piazza|corso|avenida|av\.|plaza|paseo|travessa"
    rf"|alameda|estrada|largo|praça|ul\.|ulica|aleja)\s+(?:(?:de|do|da|dos|das|del|della|delle|dello|dei|degli|di|los|las|la|el)\s+)*"
    rf"{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}},?\s+{_HOUSE_NUMBER}(?![\d-]))"
    # Birkenweg 7, Lerchenstraße 41, Lindenhofstraat 38
    rf"|\b{_UPPER}[^\W\d_]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|straat|laan|gracht"
    rf"|plein|kade|singel|vej|gade|gatan|vägen|veien|gata)\s+{_HOUSE_NUMBER}(?![\d-])"
    # 〒150-0002 followed by the address in Japanese
    r"|〒\d{3}-\d{4}\s*[^\s,、。]+(?:\s+[^\s,、。]*\d[^\s,、。]*)?"
    r")"
)
_STREET_HINT = re.compile(
    r"\d[A-Za-z]?,?[ \t]+(?:[^\W\d_a-z]|(?i:rue|avenue|av\.|boulevard|bd|chemin|allée|impasse|place|quai|cours)\b)"
    r"|[^\W\d_a-z][^\W\d_]*,?[ \t]+\d|〒"
)
# Parts that may follow a street, each between commas.
_UNIT_PART = re.compile(
    r"(?:apt|apartment|suite|ste|unit|flat|floor|fl|apto|apartamento|piso|bloco|bloque|app|appt|étage|stiege|top)"
    r"\b\.?\s*#?\s*\w{1,5}|\d{1,3}\s*[º°ª]\s*\w?|#\s*\w{1,5}",
    re.IGNORECASE,
)
_POSTCODE = (
    r"\d{5}(?:-\d{3,4})?|\d{4}-\d{3}|\d{4}(?:\s?[A-Z]{2})?|\d{2}-\d{3}|\d{3}\s\d{2}"  # US, BR, PT, EU, NL, PL, SE
    r"|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"  # UK
    r"|[A-Z]\d[A-Z]\s?\d[A-Z]\d"  # Canada
)
# A town or region word: capitalised, with no letter or digit right after it.
_PLACE_WORD = rf"{_UPPER}[^\W\d_]*(?:[-'’]{_UPPER}?[^\W\d_]+)*(?!\w)"
_PLACE_PART = re.compile(
    rf"(?:(?:{_POSTCODE})[ ]+)?{_PLACE_WORD}(?:[ -]+{_PLACE_WORD}){{0,3}}(?:[ ]*-[ ]*[A-Z]{{2}}\b)?"
    rf"(?:[ ]+(?:[A-Z]{{2,3}}[ ]+)?(?:{_POSTCODE})\b)?"
    rf"|(?:[A-Z]{{2,3}}[ ]+)?(?:{_POSTCODE})\b"
)
_ADDRESS_MAX_PARTS = 6


def _address_end(text: str, end: int) -> int:
    """Extend a street at ``end`` over the comma-separated address parts that follow it."""
    for _ in range(_ADDRESS_MAX_PARTS):
        if text[end : end + 2] != ", ":
            break
        part = _UNIT_PART.match(text, end + 2) or _PLACE_PART.match(text, end + 2)
        if part is None:
            break
        # A part ends at a comma, a period, a line end, a closing bracket or the end of
        # the text, or at a space when it contains a postcode ("Utrecht on Thursday"), so that
        # "Boise, ID 83702, please update" stops before "please".
        following = text[part.end() : part.end() + 1]
        if following not in ("", ",", ".", ";", ")", "\n", "\r") and not (
            following == " " and any(character.isdigit() for character in part.group(0))
        ):
            break
        end = part.end()
    return end


# Chinese addresses run from the province or city to the number (号) and the building,
# floor and room; Korean ones from the city or province to the road or street number.
_CJK_ADDRESS = re.compile(
    r"[\u4e00-\u9fff]{1,6}(?:省|市|自治区)[\u4e00-\u9fff]{0,10}?(?:市|区|县)[\u4e00-\u9fff0-9]{0,20}?"
    r"(?:路|街|道|巷|胡同|弄)\s*\d{1,5}\s*号(?:\s*[0-9A-Za-z\u4e00-\u9fff]{0,10}?(?:栋|幢|楼|单元|室|层|座))*"
)
_KOREAN_ADDRESS = re.compile(
    r"[가-힣]{2,}(?:특별시|광역시|특별자치시|도)\s+[가-힣]{1,10}(?:시|군|구)(?:\s+[가-힣]{1,10}(?:구|동|읍|면))?"
    r"\s+[가-힣0-9]{1,20}(?:로|길)\s*\d{1,5}(?:-\d{1,5})?(?:\s*,\s*\d{1,5}호)?(?:\s*\(\d{5}\))?"
)
_CJK_OR_HANGUL = re.compile(r"[\u4e00-\u9fff가-힣]")


def _find_addresses(text: str) -> Iterator[tuple[int, int]]:
    if _CJK_OR_HANGUL.search(text) is not None:
        for match in _chain(_CJK_ADDRESS.finditer(text), _KOREAN_ADDRESS.finditer(text)):
            yield match.span()
    # Every street pattern puts a house number next to a capitalised word or a street
    # word. Most prompts have no such pair, and this search costs a quarter of the full one.
    if _STREET_HINT.search(text) is None:
        return
    for street in _STREET.finditer(text):
        start, end = street.start(), _address_end(text, street.end())
        if (street.group("number_first") or street.group("street_first")) and end == street.end():
            # "10 Best Road Trips", "sent via Gmail 2 times": such a street reads as an
            # address only with a town or postcode after it.
            continue
        # A unit written before the street: "Unit 4, 19 Kookaburra Crescent".
        unit = re.search(r"(?:unit|apt|flat|suite)\s*#?\w{1,5},\s*$", text[max(0, start - 16) : start], re.IGNORECASE)
        if unit is not None:
            start = max(0, start - 16) + unit.start()
        yield start, end


# ---------------------------------------------------------------------------
# The redactor

_DETECTORS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    API_KEY: _find_api_keys,
    EMAIL: _find_emails,
    IBAN: _find_ibans,
    CREDIT_CARD: _find_cards,
    US_SSN: _find_ssns,
    IP_ADDRESS: lambda text: _chain(_find_ipv4(text), _find_ipv6(text)),
    DATE_OF_BIRTH: _find_birth_dates,
    PHONE: _find_phones,
    PERSON: _find_person_names,
    LOCATION: _find_addresses,
}
# Detectors that only look at digits can be skipped for text without any.
_NEEDS_DIGITS = frozenset({IBAN, CREDIT_CARD, US_SSN, IP_ADDRESS, DATE_OF_BIRTH, PHONE, LOCATION})


def _chain(*iterators: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    for iterator in iterators:
        yield from iterator


class PiiRedactor:
    """Find PII in text and replace it with numbered placeholders that can be restored."""

    def __init__(self, types: frozenset[str] | None = None) -> None:
        """Detect ``types`` (default: all of ``SUPPORTED_TYPES``).

        Raises:
            UnknownPiiTypeError: a requested type is not supported.
        """
        chosen = SUPPORTED_TYPES if types is None else frozenset(types)
        unknown = chosen - SUPPORTED_TYPES
        if unknown:
            raise UnknownPiiTypeError(
                f"unsupported PII types {sorted(unknown)}: choose from {sorted(SUPPORTED_TYPES)}"
            )
        self.types = chosen
        self._order = sorted(chosen, key=_PRIORITY.__getitem__)

    def detect(self, text: str) -> list[PiiEntity]:
        """Return the entities in ``text``, sorted by start offset and never overlapping."""
        if not text:
            return []
        has_digits = _DIGIT.search(text) is not None
        claimed_spans: list[tuple[int, int]] = []
        found: list[PiiEntity] = []
        for entity_type in self._order:
            if entity_type in _NEEDS_DIGITS and not has_digits:
                continue
            for start, end in _DETECTORS[entity_type](text):
                overlaps = any(
                    start < other_end and other_start < end
                    for other_start, other_end in claimed_spans
                )
                if overlaps:
                    continue
                claimed_spans.append((start, end))
                found.append(PiiEntity(entity_type, start, end))
        found.sort(key=lambda entity: entity.start)
        return found

    def redact(self, texts: list[str]) -> Redaction:
        """Replace every entity in ``texts`` with a placeholder such as ``[EMAIL_1]``.

        One mapping covers all texts, so a value gets the same placeholder wherever it
        occurs in the request. Numbers count up per type in order of first appearance and
        skip any placeholder text that already occurs in the input, so restoring never
        replaces text the caller wrote.
        """
        reserved = {
            match.group(0) for text in texts for match in PLACEHOLDER_PATTERN.finditer(text)
        }
        placeholders: dict[tuple[str, str], str] = {}
        next_number: dict[str, int] = {}
        mapping: dict[str, str] = {}
        counts: dict[str, int] = {}
        redacted: list[str] = []

        for text in texts:
            pieces: list[str] = []
            position = 0
            for entity in self.detect(text):
                value = text[entity.start:entity.end]
                key = (entity.type, value)
                placeholder = placeholders.get(key)
                if placeholder is None:
                    placeholder = self._next_placeholder(entity.type, next_number, reserved)
                    placeholders[key] = placeholder
                    mapping[placeholder] = value
                pieces.append(text[position:entity.start])
                pieces.append(placeholder)
                position = entity.end
                counts[entity.type] = counts.get(entity.type, 0) + 1
            pieces.append(text[position:])
            redacted.append("".join(pieces))

        if counts:
            logger.debug("redacted PII", extra={"pii_counts": counts})
        return Redaction(texts=redacted, mapping=mapping, counts=counts)

    @staticmethod
    def _next_placeholder(entity_type: str, next_number: dict[str, int], reserved: set[str]) -> str:
        number = next_number.get(entity_type, 1)
        while f"[{entity_type}_{number}]" in reserved:
            number += 1
        next_number[entity_type] = number + 1
        return f"[{entity_type}_{number}]"
