"""English word lists that let the semantic-cache guard accept rewording.

The guard in ``services.cache.semantic`` compares the content words of two prompts. These
lists name the differences that do not change the answer: interchangeable words of everyday
requests, light verbs and hedges that add nothing, and the wordings of a "why" question.

Each synonym group lists words that can replace one another in a request without changing
what a correct response contains. Words that name different things of one kind ("cat" and
"dog", "Monday" and "Tuesday", "husband" and "wife") never share a group, even though
sentence embeddings rate them as close as synonyms. Words whose sense depends strongly on
the sentence ("clean", "bag", "return") are left out.
"""

from __future__ import annotations

SYNONYM_GROUPS = (
    # verbs of everyday requests
    "remove eliminate eliminating rid erase",
    "delete erase",
    "change update modify edit alter adjust",
    "fix repair resolve mend",
    "solve resolve",
    "create make build generate",
    "begin start commence",
    "finish complete",
    "prevent stop",
    "buy purchase",
    "choose pick select",
    "use utilize utilise",
    "see view display inspect",
    "check verify inspect",
    "find locate identify",
    "calm soothe settle",
    "recover recovery heal healing",
    "improve enhance",
    "reduce decrease lessen minimize minimise shrink",
    "allow allowed permit permitted",
    "visit go travel",
    "investigate debug diagnose troubleshoot",
    "load import",
    "respond reply answer",
    "cancel terminate",
    "increase boost",
    "protect safeguard",
    "convert transform",
    "calculate compute",
    "talk speak",
    "eat consume",
    "merge combine",
    "split divide",
    "sort arrange",
    "write compose",
    "obtain acquire",
    "require requires",
    "try attempt",
    "happen occur",
    "hire recruit",
    "exercise workout",
    "keep retain preserve",
    "send transmit",
    "grow cultivate",
    "understand comprehend",
    "practice practise",
    "enroll enrol register",
    "quit resign",
    "ask inquire enquire",
    "restart reboot",
    "uninstall remove",
    "disable deactivate",
    "enable activate",
    "hide conceal",
    "hurt injure harm",
    "estimate approximate",
    "rephrase reword paraphrase rewrite",
    "book reserve",
    "postpone delay defer",
    "dispute contest challenge",
    "replace swap substitute",
    "mix blend",
    "thaw defrost",
    "reheat warm",
    "sew stitch",
    "upgrade update",
    "install setup",
    "run execute",
    "kill terminate",
    # nouns
    "delivery shipping shipment",
    "luggage baggage",
    "car automobile vehicle",
    "movie film",
    "doctor physician",
    "couch sofa",
    "photo photograph picture pic",
    "cost price pricing",
    "fridge refrigerator",
    "laptop computer pc machine",
    "phone smartphone cellphone",
    "trip journey",
    "illness disease sickness",
    "injury wound",
    "salary pay wage wages",
    "talk presentation speech",
    "worth value",
    "collapse fall downfall",
    "temperature temp",
    "database db",
    "directory folder",
    "error issue problem",
    "symptom symptoms signs",
    "advantage advantages benefit benefits",
    "disadvantage disadvantages drawback drawbacks downside downsides",
    "reason reasons cause causes",
    "spare extra",
    "money cash funds",
    "beginning start",
    "television tv",
    "holiday vacation",
    "flat apartment",
    "lift elevator",
    "petrol gasoline",
    "trousers pants",
    "nappy diaper",
    "biscuit cookie",
    "garbage trash rubbish",
    "sweets candy",
    "company firm",
    "shop store",
    "seller vendor",
    "customer client",
    "boss manager supervisor",
    "coworker colleague",
    "friend buddy pal",
    "baby infant",
    "teenager teen adolescent",
    "adult grownup",
    "toilet restroom washroom loo",
    "faucet tap",
    "bike bicycle",
    "motorbike motorcycle",
    "plane airplane aeroplane aircraft",
    "subway metro",
    "accommodation lodging",
    "vegetables veggies veg",
    "income earnings",
    "resume cv",
    "bill invoice",
    "wifi wireless",
    "grandma grandmother granny",
    "grandpa grandfather granddad",
    "vet veterinarian",
    "autumn fall",
    "soreness pain ache",
    "medicine medication",
    "pain ache",
    "stomach belly tummy abdomen",
    "mother mom mum",
    "father dad",
    # irregular plurals, which the stemmer keeps apart
    "child children kid kids",
    "man men",
    "woman women",
    "person people",
    "tooth teeth",
    "mouse mice",
    "foot feet",
    "leaf leaves",
    "knife knives",
    "wife wives",
    "life lives",
    "loaf loaves",
    "shelf shelves",
    # adjectives and adverbs
    "big large huge enormous giant",
    "small little tiny",
    "fast quick quickly rapid rapidly speedy",
    "cheap inexpensive affordable",
    "famous known renowned",
    "nervous anxious",
    "salty salinity",
    "safe secure",
    "old previous former",
    "unused idle",
    "constantly continuously nonstop",
    "difficult hard tough",
    "easy simple straightforward",
    "smart intelligent clever",
    "rich wealthy",
    "loud noisy",
    "wrong incorrect",
    "sick ill unwell",
    "tired exhausted",
    "scared afraid frightened",
    "happy glad",
    "expensive costly pricey",
    "slow sluggish",
    "dangerous hazardous risky",
    "legal lawful",
    "illegal unlawful",
    "funny humorous",
    "quiet silent",
    "damp moist",
    "rotten spoiled spoilt",
    "raw uncooked",
    "annual annually yearly",
    "often frequently",
    "sometimes occasionally",
    "immediately instantly",
    "abroad overseas",
)
"""Groups of interchangeable words, one group a line, words separated by spaces."""

NEUTRAL_WORDS = frozenset(
    (
        # light verbs: the object carries the meaning ("get a visa", "put it into drop D")
        "get gets got getting gotten put puts take takes taking took go goes going come comes "
        "coming become"
        # modals and hedges
        " should might must may shall ought likely probably perhaps maybe"
        # degree and time words that leave the request unchanged
        " already anymore still ever even much lot lots bit all whole entire exactly "
        "precisely literally totally completely fully newly recently normally honestly "
        "properly correctly worth worthwhile"
        # nouns that frame a question without adding a topic
        " rules rule principle principles basics overview details detail info information "
        "factors factor considerations consideration options option way ways"
        # "why does X happen" asks "why X"
        " happen happens happened happening occur occurs occurred"
        " command commands idea ideas recommendation recommendations"
        # permission frames: "can I X" asks "am I allowed to X"
        " required necessary mandatory allowed permitted"
    ).split()
)
"""Words that may appear on one side only: they frame or hedge a request without changing it."""

CAUSE_WORDS = frozenset(
    "cause causes caused causing reason reasons lead leads led makes made".split()
)
"""Words that turn "what ... X" into a "why" question: "what causes X" asks "why X"."""

ALIASES = {
    "js": "javascript",
    "ts": "typescript",
    "golang": "go",
    "postgres": "postgresql",
    "k8s": "kubernetes",
    "py": "python",
    "venv": "virtualenv",
}
"""Short names of programming languages and tools, mapped to the full name."""
