"""PII detection and redaction on made-up examples, including non-PII look-alikes."""

from __future__ import annotations

import pytest

from libs.redaction import restore
from services.security.pii import (
    API_KEY,
    CREDIT_CARD,
    DATE_OF_BIRTH,
    EMAIL,
    IBAN,
    IP_ADDRESS,
    LOCATION,
    PERSON,
    PHONE,
    SUPPORTED_TYPES,
    US_SSN,
    PiiEntity,
    PiiRedactor,
    UnknownPiiTypeError,
)


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    return PiiRedactor()


def found(redactor: PiiRedactor, text: str) -> list[tuple[str, str]]:
    return [(entity.type, text[entity.start:entity.end]) for entity in redactor.detect(text)]


POSITIVES = [
    ("Naam: Joris van Leeuwen\nWoonplaats: Utrecht", PERSON, "Joris van Leeuwen"),
    ("Kontoinhaberin: Helga Brandauer\nBetrag: 40 EUR", PERSON, "Helga Brandauer"),
    ("Merhaba Deniz Aksoy, siparişiniz yolda.", PERSON, "Deniz Aksoy"),
    ("Gentile Sig.ra Fontana, la pratica è chiusa.", PERSON, "Fontana"),
    ("The caller gave her name as Odile Marchetti and asked for a refund.", PERSON,
     "Odile Marchetti"),
    ("Can you help my nephew Tobias with his maths homework?", PERSON, "Tobias"),
    ("Salut Margaux, le colis est arrivé.", PERSON, "Margaux"),
    ("Merci de rappeler M. Lefebvre demain.", PERSON, "Lefebvre"),
    ("Клиент: Ольга Миронова, заказ 5521", PERSON, "Ольга Миронова"),
    ("Deliver to 7C Rowan Hill Grove, Bristol BS6 5QT by noon.", LOCATION,
     "7C Rowan Hill Grove, Bristol BS6 5QT"),
    ("收货地址：杭州市西湖区梧桐巷17号2单元501室，电话另告。", LOCATION, "杭州市西湖区梧桐巷17号2单元501室"),
    ("배송지: 부산광역시 해운대구 바다마을로 45, 1203호 (48094)", LOCATION,
     "부산광역시 해운대구 바다마을로 45, 1203호 (48094)"),
    ("收件人：周子涵，明天送达", PERSON, "周子涵"),
    ("氏名：中村 美咲\n電話：03-1234-5678", PERSON, "中村 美咲"),
    ("이름: 한도윤, 예약 확인", PERSON, "한도윤"),
    ("鈴木 直樹様のご注文を発送しました。", PERSON, "鈴木 直樹"),
    ("Geboortedatum: 03-09-1987", DATE_OF_BIRTH, "03-09-1987"),
    ("고객님의 생년월일은 1989년 3월 14일입니다.", DATE_OF_BIRTH, "1989년 3월 14일"),
    ("Doğum tarihi: 21.04.1992", DATE_OF_BIRTH, "21.04.1992"),
    # E-mail
    ("Send the contract to yusuf.okoro@brambleworks.example today.", EMAIL,
     "yusuf.okoro@brambleworks.example"),
    ("<li>contact: ops-oncall+pager@fernhill.co.uk</li>", EMAIL, "ops-oncall+pager@fernhill.co.uk"),
    ("メールはtaro.yamada@sakura-mail.jpまでお願いします", EMAIL, "taro.yamada@sakura-mail.jp"),
    # Phone numbers in several countries and layouts
    ("Call me at (415) 555-2671 after lunch.", PHONE, "(415) 555-2671"),
    ("phone: 5035550148", PHONE, "5035550148"),
    ("Tel. +33 1 42 68 53 00 (reception)", PHONE, "+33 1 42 68 53 00"),
    ("Reach me on WhatsApp +55 21 99876-5432 tonight", PHONE, "+55 21 99876-5432"),
    ("電話: 03-1234-5678", PHONE, "03-1234-5678"),
    ("Our office line is 020 7946 0958.", PHONE, "020 7946 0958"),
    ("Handy: 0171 4455 2398", PHONE, "0171 4455 2398"),
    ("name,mobile\nIvo,+31 6 1234 5678", PHONE, "+31 6 1234 5678"),
    # Payment cards (Luhn-valid, separators kept)
    ("My Visa is 4111 1111 1111 1111, expiry 04/29", CREDIT_CARD, "4111 1111 1111 1111"),
    ("amex=378282246310005;", CREDIT_CARD, "378282246310005"),
    ("Mastercard 5105-1051-0510-5100 was declined", CREDIT_CARD, "5105-1051-0510-5100"),
    ("Diners 3056 930902 5904 on file", CREDIT_CARD, "3056 930902 5904"),
    ("カード番号4012888888881881で支払います", CREDIT_CARD, "4012888888881881"),
    # IBANs, spaced and compact
    ("Überweisung an DE89 3704 0044 0532 0130 00 bitte", IBAN, "DE89 3704 0044 0532 0130 00"),
    ("beneficiary_iban=GB82WEST12345698765432", IBAN, "GB82WEST12345698765432"),
    ("Rekening NL91 ABNA 0417 1643 00, t.n.v. de vereniging", IBAN, "NL91 ABNA 0417 1643 00"),
    # US Social Security numbers
    ("SSN 536-22-8817 on the form", US_SSN, "536-22-8817"),
    ("Social security number: 536 22 8817", US_SSN, "536 22 8817"),
    ("ssn=536228817 in the export", US_SSN, "536228817"),
    # IP addresses used as addresses
    ("ping 8.8.4.4 fails from the office", IP_ADDRESS, "8.8.4.4"),
    ("upstream 172.16.40.9:8443 timed out", IP_ADDRESS, "172.16.40.9"),
    ("allowlist 2606:4700:4700::1111 please", IP_ADDRESS, "2606:4700:4700::1111"),
    ("listen [fe80::1%eth0]:22", IP_ADDRESS, "fe80::1"),
    ("host 10.1.2.3/24 is the gateway", IP_ADDRESS, "10.1.2.3"),
    # Secrets
    ("export GITHUB_TOKEN=ghp_Zr8Kq2LmW9xTnB4vYc7HdJ1pQs6FgA3eUo5i", API_KEY,
     "ghp_Zr8Kq2LmW9xTnB4vYc7HdJ1pQs6FgA3eUo5i"),
    ("client = Anthropic(api_key="
     "\"sk-ant-api03-Qm4Lr8TzW2nY6vKc1XpB9sHd3JfA7gE5uN0oRiMtLwPyZqCb\")", API_KEY,
     "sk-ant-api03-Qm4Lr8TzW2nY6vKc1XpB9sHd3JfA7gE5uN0oRiMtLwPyZqCb"),
    ("aws_access_key_id = AKIAZ7QW3RTY5UOP2LKJ", API_KEY, "AKIAZ7QW3RTY5UOP2LKJ"),
    ("x-api-key: 7c2e9b14d0a84f6e9a3b5c1d2e4f6a8b", API_KEY, "7c2e9b14d0a84f6e9a3b5c1d2e4f6a8b"),
    ("Authorization: Bearer 9aF3kL2mQ8xZ1vB7nR4tY6uE0wS5pD", API_KEY,
     "9aF3kL2mQ8xZ1vB7nR4tY6uE0wS5pD"),
    ("curl -H 'Authorization: Bearer sk-aigw-Ab3dE6gH-Qw8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8v'",
     API_KEY, "sk-aigw-Ab3dE6gH-Qw8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8v"),
]


@pytest.mark.parametrize(("text", "entity_type", "value"), POSITIVES)
def test_detects_entity(redactor: PiiRedactor, text: str, entity_type: str, value: str) -> None:
    assert (entity_type, value) in found(redactor, text)


LOOK_ALIKES = [
    "Bitte bis Freitag überweisen (Empfänger: Brandt & Söhne KG).",
    "Recipient: Platform Team, sender: Billing Service.",
    "My manager asked for the Q3 report by Friday.",
    "上海市的地铁2号线几点开始运营？",
    "名前：未定（後で決めます）",
    "お客様各位、メンテナンスのお知らせです。",
    "Firmware 4B Release Notes are out.",
    "Meeting at 10:30 in room 4.12, budget 12,500.00 EUR.",
    "Version 2.4.1.7 of the agent fixes the leak.",
    "Upgrade node to 18.17.1.0 and python to 3.12.1.",
    "Set the netmask to 255.255.255.0 and the gateway metric to 10.",
    "SNMP OID 1.3.6.1.4.1.2021.10.1.3.1 reports the load average.",
    "Route 10.0.0.0/8 through the VPN.",
    "Timestamp 1717401600000 and request id 123e4567-e89b-12d3-a456-426614174000.",
    "Order 4929 1234 5678 9012 ships tomorrow.",
    "Tracking 1Z 9X4 R22 03 8841 2290 shows a delay.",
    "ISBN 978-3-16-148410-0 is out of print.",
    "Dates: 12.05.2024, 2024/05/12 and 05-12-2024.",
    "Use std::vector<int>; the MAC is 00:1a:2b:3c:4d:5e.",
    "Invalid SSNs such as 666-12-3456, 912-44-1020 and 318-00-5521 must be rejected.",
    "The checksum DE00 1234 5678 9012 3456 78 is wrong on purpose.",
    "Set OPENAI_API_KEY=sk-... in your shell.",
    "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "api_key = 'sk-your-key-here'",
    "token = os.environ['GITHUB_TOKEN']",
    "headers = {'Authorization': 'Bearer <YOUR_TOKEN_HERE>'}",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 verified",
    "commit 5d41402abc4b2a76b9719d911017c59261a7c2e9 merged",
    "icon@2x.png and lodash@4.17.21 and @app.route('/x')",
    "Prices: 1299 1399 1499 1599 1699 1799",
    "Coordinates 51.5074, -0.1278 mark the start.",
    "Error 0x80070005 and event 4625 appear in the log.",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_ignores_look_alike(redactor: PiiRedactor, text: str) -> None:
    assert found(redactor, text) == []


def test_version_chain_stays_version(redactor: PiiRedactor) -> None:
    text = "Update the firmware from 4.2.0.11 to 4.2.1.3, then reboot host 192.0.2.77."
    assert found(redactor, text) == [(IP_ADDRESS, "192.0.2.77")]


def test_spans_are_exact(redactor: PiiRedactor) -> None:
    text = "Mail lena.brandt@tidewater.example or call +49 30 901820."
    entities = redactor.detect(text)
    assert entities == [
        PiiEntity(EMAIL, 5, 34),
        PiiEntity(PHONE, 43, 56),
    ]


def test_key_in_url_is_not_email(redactor: PiiRedactor) -> None:
    text = "git clone https://oauth2:glpat-Hq7Rt2Yw9Lp4Zx8Vb3Nm@git.example.org/team/app.git"
    assert found(redactor, text) == [(API_KEY, "glpat-Hq7Rt2Yw9Lp4Zx8Vb3Nm")]


def test_redact_numbers_per_type() -> None:
    redactor = PiiRedactor()
    result = redactor.redact([
        "Write to ana.sousa@quinta.example and bruno@quinta.example.",
        "Ana again: ana.sousa@quinta.example, card 4111 1111 1111 1111.",
    ])
    assert result.texts == [
        "Write to [EMAIL_1] and [EMAIL_2].",
        "Ana again: [EMAIL_1], card [CREDIT_CARD_1].",
    ]
    assert result.mapping == {
        "[EMAIL_1]": "ana.sousa@quinta.example",
        "[EMAIL_2]": "bruno@quinta.example",
        "[CREDIT_CARD_1]": "4111 1111 1111 1111",
    }
    assert result.counts == {EMAIL: 3, CREDIT_CARD: 1}


def test_redact_skips_placeholders_in_input() -> None:
    result = PiiRedactor().redact(["Template says [EMAIL_1]; real one is kim@harbor.example"])
    assert result.texts == ["Template says [EMAIL_1]; real one is [EMAIL_2]"]
    assert result.mapping == {"[EMAIL_2]": "kim@harbor.example"}


def test_redact_round_trip(redactor: PiiRedactor) -> None:
    texts = [text for text, _, _ in POSITIVES]
    result = redactor.redact(texts)
    assert [restore(text, result.mapping) for text in result.texts] == texts
    assert sum(result.counts.values()) >= len(POSITIVES)


def test_redact_without_pii(redactor: PiiRedactor) -> None:
    result = redactor.redact(["How do I bake rye bread?", ""])
    assert result.texts == ["How do I bake rye bread?", ""]
    assert result.mapping == {}
    assert result.counts == {}


def test_types_limit_detection() -> None:
    redactor = PiiRedactor(frozenset({EMAIL}))
    text = "mia@lakeside.example, 4111 1111 1111 1111, 8.8.8.8"
    assert found(redactor, text) == [(EMAIL, "mia@lakeside.example")]


def test_unknown_type_rejected() -> None:
    with pytest.raises(UnknownPiiTypeError, match="PERSONALITY"):
        PiiRedactor(frozenset({"PERSONALITY"}))


def test_supported_types() -> None:
    assert SUPPORTED_TYPES == {
        EMAIL,
        PHONE,
        CREDIT_CARD,
        IBAN,
        US_SSN,
        IP_ADDRESS,
        API_KEY,
        DATE_OF_BIRTH,
        PERSON,
        LOCATION,
    }


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("Applicant: Ines Varga, DOB 04/17/1986, no prior claims.", "04/17/1986"),
        ("Her date of birth is 2 November 1993.", "2 November 1993"),
        ("I was born on March 8th, 1979 in a small town.", "March 8th, 1979"),
        ("Geboren am 12. März 1990 in Köln.", "12. März 1990"),
        ("Sua data de nascimento é 4 de maio de 1987.", "4 de maio de 1987"),
        ("Il paziente è nato il 21 luglio 1964.", "21 luglio 1964"),
        ("Date de naissance : 15.09.2001", "15.09.2001"),
        ('{"name": "T. Moreau", "dob": "1975-12-30"}', "1975-12-30"),
        ("生年月日は1991年7月3日です。", "1991年7月3日"),
    ],
)
def test_birth_date_after_a_cue(redactor: PiiRedactor, text: str, date: str) -> None:
    assert (DATE_OF_BIRTH, date) in found(redactor, text)


def test_birth_date_in_a_named_column(redactor: PiiRedactor) -> None:
    csv = "id;signed_up;birth_date\n17;2023-04-01;1969-08-21\n18;2024-02-11;1958-01-30"
    sql = "INSERT INTO members (name, joined, dob) VALUES ('A. Novak', '2022-06-01', '1981-03-09');"

    assert [value for kind, value in found(redactor, csv) if kind == DATE_OF_BIRTH] == ["1969-08-21", "1958-01-30"]
    assert [value for kind, value in found(redactor, sql) if kind == DATE_OF_BIRTH] == ["1981-03-09"]


@pytest.mark.parametrize(
    "text",
    [
        "Your appointment is on 2025-03-05 at 10:00.",
        "Birthday party on June 5, 2025 at the office.",
        "I was born in Lisbon and moved abroad on 2019-05-05.",
        "Released 12/05/2024, build 10.2.0.14.",
        "DOB: 13/13/1990",
        "Date: Tue Apr 9 14:02:11 2024 +0200",
        "id,created,updated\n4,2024-01-01,2024-02-02",
    ],
)
def test_other_dates_are_not_birth_dates(redactor: PiiRedactor, text: str) -> None:
    assert DATE_OF_BIRTH not in {kind for kind, _ in found(redactor, text)}


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Name: Oona Halvorsen\nRoom: 12", ["Oona Halvorsen"]),
        ("Hi Priya, the report is attached.", ["Priya"]),
        ("Dear Mrs. Okonedo, thank you for your letter.", ["Okonedo"]),
        ("See you soon.\n\nKind regards,\nTobias Engqvist", ["Tobias Engqvist"]),
        ("Bonjour, je m'appelle Aurélie Fontaine et j'ai une question.", ["Aurélie Fontaine"]),
        ('{"order": 7, "customer": "Mateus Braga"}', ["Mateus Braga"]),
        ("Participants: Lin Wei, Tomás de la Cruz, Ada Obi", ["Lin Wei", "Tomás de la Cruz", "Ada Obi"]),
        ("The ticket was opened by employee Greta Lindahl yesterday.", ["Greta Lindahl"]),
        ("payee,amount\nYara Haddad,120.00\nPiet Smit,80.00", ["Yara Haddad", "Piet Smit"]),
    ],
)
def test_person_names_after_a_cue(redactor: PiiRedactor, text: str, names: list[str]) -> None:
    assert [value for kind, value in found(redactor, text) if kind == PERSON] == names


@pytest.mark.parametrize(
    "text",
    [
        "Hi team, the build is green again.",
        "Dear Customer, your order has shipped.",
        "I'm Canadian and I live in Toronto.",
        "client = Client(api_key=os.environ['KEY'])",
        "Best practices for naming Python modules?",
        "Thanks for the help, it works now.",
        "The user Admin cannot log in.",
        '{"from": "USD", "to": "EUR", "amount": 12}',
        "Write a haiku about autumn leaves in Kyoto.",
    ],
)
def test_text_without_person_names(redactor: PiiRedactor, text: str) -> None:
    assert PERSON not in {kind for kind, _ in found(redactor, text)}


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Deliver to 31 Willow Bend Road, Dunedin 9016 before noon.", "31 Willow Bend Road, Dunedin 9016"),
        ("Office: 77 Harrow Street, Suite 3, Portland, OR 97205", "77 Harrow Street, Suite 3, Portland, OR 97205"),
        ("Adresse : 8 rue des Lilas, 69003 Lyon", "8 rue des Lilas, 69003 Lyon"),
        ("Wir wohnen in der Ahornstraße 16, 50667 Köln.", "Ahornstraße 16, 50667 Köln"),
        ("Indirizzo: via delle Rose 9, 50123 Firenze", "via delle Rose 9, 50123 Firenze"),
        ("Avenida da Liberdade 120, 1250-096 Lisboa, Portugal", "Avenida da Liberdade 120, 1250-096 Lisboa, Portugal"),
        ("Flat 2, 14 Elm Grove, Bristol BS6 5AB", "Flat 2, 14 Elm Grove, Bristol BS6 5AB"),
    ],
)
def test_street_address(redactor: PiiRedactor, text: str, address: str) -> None:
    assert (LOCATION, address) in found(redactor, text)


@pytest.mark.parametrize(
    "text",
    [
        "The 10 Best Road Trips in Europe",
        "Version 2 Main Street release notes",
        "Send the file via Slack 2 times a day.",
        "We flew to Lisbon and then to Porto.",
        "Step 3 Drive to the airport.",
        "Call the support line between 9 and 17.",
    ],
)
def test_text_without_addresses(redactor: PiiRedactor, text: str) -> None:
    assert LOCATION not in {kind for kind, _ in found(redactor, text)}
