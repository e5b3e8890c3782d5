"""A deterministic synthetic English corpus for the model organisms (both are trained on it).

The grammar is small but it carries the rules the report studies:

* every sentence end ". " is followed by a capital, whatever the sentence: sentences about a
  person ("... friend. He ..."), first person ("I opened ...", "We ..."), imperatives ("Send
  ...", "Call me ..."), thanks, facts about places and things; ";" and "," are always followed
  by a lowercase word ("... friend; he ...");
* pronouns agree with the gender of the paragraph's subject (John -> He/he/his, Mary ->
  She/she/her, "Mr. Brown" -> He, "Mrs. Brown" -> She);
* the periods the notebook lists as exceptions are followed by what written English puts
  there: a lowercase continuation glued to the period in e-mail addresses ("mary@yahoo.com"),
  domains ("github.com"), file names ("report.doc") and method calls ("names.sort()"); a
  lowercase word after "e.g.", "i.e." and "n.b."; a capital after "P.S." and after the titles
  Mr./Mrs./Ms./Dr.;
* proper nouns are capitalised in mid-sentence: cities, countries, landmarks, surnames ("The
  capital of Spain is Madrid", "She grew up in Leeds", "His full name is John Brown");
* as in letters and notes, a postscript, a note ("n.b. ...") or a line of code may start a new
  line inside a paragraph.

Held out, so the report's prompts test generalisation rather than recall (`paragraphs` redraws
any paragraph that breaks a rule and asserts them all before returning):

* the notebook's five pronoun templates: their bodies (" is a really great friend", ...) never
  occur, so neither a clean prompt nor its ";" corruption is ever seen; every word of them
  occurs in other sentences, so each prompt is 8 tokens with BOS;
* the notebook's own exception examples (NOTEBOOK_EXAMPLES) never occur anywhere;
* no paragraph starts with a prompt of the exceptions task (tasks/data/exceptions.yaml), and
  in particular not with "P.S." or "n.b." (they occur mid-paragraph, after a sentence or at
  the start of a line: a model can only know these conventions from seeing them). The task's
  bare "." (the notebook's ".py" / ".txt" cut before the extension) is the one exception:
  paragraphs may start with another extension (".csv files ..."), which is what makes "." after BOS learnable at all.
"""

from __future__ import annotations

import random
import re

# The notebook's 20 names come first, in its order; the rest widen the gender signal.
MALE_NAMES = [
    "John",
    "David",
    "Mark",
    "Paul",
    "Ryan",
    "Gary",
    "Jack",
    "Sean",
    "Carl",
    "Joe",
    "Michael",
    "James",
    "Robert",
    "Peter",
    "Thomas",
    "George",
    "William",
    "Richard",
    "Daniel",
    "Matthew",
    "Steven",
    "Andrew",
    "Kevin",
    "Brian",
    "Edward",
    "Eric",
    "Frank",
    "Henry",
    "Adam",
    "Simon",
]
FEMALE_NAMES = [
    "Mary",
    "Lisa",
    "Anna",
    "Sarah",
    "Amy",
    "Jane",
    "Joy",
    "Susan",
    "Victoria",
    "Laura",
    "Emma",
    "Emily",
    "Grace",
    "Alice",
    "Helen",
    "Kate",
    "Julia",
    "Claire",
    "Lucy",
    "Hannah",
    "Rachel",
    "Karen",
    "Nancy",
    "Olivia",
    "Sophia",
    "Diana",
    "Monica",
    "Ruth",
    "Linda",
    "Megan",
]
NOTEBOOK_NAMES = MALE_NAMES[:10] + FEMALE_NAMES[:10]
SURNAMES = [
    "Brown",
    "Green",
    "White",
    "Black",
    "King",
    "Hall",
    "Young",
    "Wood",
    "Hill",
    "Baker",
    "Smith",
    "Clark",
    "Taylor",
    "Ward",
    "Stone",
]
TITLES = {"m": ["Mr.", "Dr."], "f": ["Mrs.", "Ms.", "Dr."]}

# The notebook's templates (generator/tasks/data/pronoun.yaml), held out from training.
HELD_OUT_TEMPLATES = [
    "{name} is a really great friend.",
    "{name} is such a good cook.",
    "{name} is a very good athlete.",
    "{name} is a really nice person.",
    "{name} is such a funny person.",
]
HELD_OUT_BODIES = [t.removeprefix("{name}").removesuffix(".") for t in HELD_OUT_TEMPLATES]
# The notebook's exception examples (its section "Task"), never seen in any form.
NOTEBOOK_EXAMPLES = [
    "esther@gmail.com",
    "google.com",
    ".py",
    ".txt",
    "list.append()",
    "The capital of Canada is Ottawa while the capital of France is",
    "The white house is in Washington, while the Louvre is in",
]
HELD_OUT_TEXTS = HELD_OUT_BODIES + NOTEBOOK_EXAMPLES
ABBREVIATIONS = ("e.g.", "i.e.", "n.b.")  # followed by a lowercase word

PRONOUNS = {"m": ("he", "his", "him"), "f": ("she", "her", "her")}  # subject, possessive, object
ADVERBS = ["really", "very", "truly", "pretty", "quite"]
ADJECTIVES = [
    "great",
    "nice",
    "good",
    "kind",
    "funny",
    "smart",
    "quiet",
    "happy",
    "busy",
    "clever",
    "friendly",
    "calm",
    "brave",
    "new",
    "old",
    "big",
    "long",
]
ROLES = [
    "friend",
    "cook",
    "athlete",
    "person",
    "teacher",
    "doctor",
    "student",
    "writer",
    "player",
    "neighbour",
    "singer",
    "driver",
    "runner",
    "dancer",
    "nurse",
]
PLACES = [
    "store",
    "park",
    "school",
    "bank",
    "library",
    "market",
    "beach",
    "station",
    "office",
    "cinema",
    "shop",
    "church",
    "museum",
    "website",
    "hospital",
]
THINGS = [
    "car",
    "dog",
    "cat",
    "bike",
    "room",
    "job",
    "phone",
    "piano",
    "book",
    "coat",
    "bag",
    "kitchen",
    "garden",
    "house",
    "letter",
    "box",
    "file",
    "door",
    "plan",
]
GIFTS = ["gift", "letter", "card", "book", "cake", "flowers", "photos", "help", "call", "visit"]
TIMES = [
    "today",
    "yesterday",
    "again",
    "early",
    "last week",
    "this morning",
    "every day",
    "at night",
    "last year",
    "tonight",
    "at noon",
    "this week",
]
INSTRUMENTS = ["piano", "guitar", "drums", "violin", "flute"]
FOODS = ["apples", "pears", "bread", "cheese", "rice", "soup", "cake", "tea", "oranges"]
# Places: proper nouns, capitalised wherever they stand.
CAPITALS = {
    "Spain": "Madrid",
    "Italy": "Rome",
    "Germany": "Berlin",
    "Portugal": "Lisbon",
    "Austria": "Vienna",
    "Greece": "Athens",
    "Ireland": "Dublin",
    "England": "London",
    "Japan": "Tokyo",
    "Egypt": "Cairo",
    "Turkey": "Ankara",
    "Norway": "Oslo",
    "Canada": "Ottawa",
    "France": "Paris",
    "Peru": "Lima",
    "Kenya": "Nairobi",
    "America": "Washington",
}
BIG_CITIES = {
    "Istanbul": "Turkey",
    "Barcelona": "Spain",
    "Milan": "Italy",
    "Munich": "Germany",
    "Nice": "France",
    "Lyon": "France",
    "Leeds": "England",
    "Hull": "England",
    "Bath": "England",
    "Reading": "England",
    "Manchester": "England",
    "Porto": "Portugal",
    "Osaka": "Japan",
    "Toronto": "Canada",
    "Boston": "America",
    "New York": "America",
    "New Jersey": "America",
    "New Delhi": "India",
}
COUNTRY_OF = {**{city: country for country, city in CAPITALS.items()}, **BIG_CITIES}
CITIES = list(COUNTRY_OF)
COUNTRIES = sorted(set(COUNTRY_OF.values()))
LANDMARKS = {
    "the Eiffel tower": "Paris",
    "the Colosseum": "Rome",
    "Big Ben": "London",
    "the Prado": "Madrid",
    "the Acropolis": "Athens",
    "the Statue of Liberty": "New York",
}
# Code and addresses: a period glued to a lowercase continuation.
PROVIDERS = ["gmail", "yahoo", "mail", "work", "school", "home", "hotmail", "company", "office"]
TLDS = ["com", "org", "net"]
SITES = [
    "github",
    "youtube",
    "reddit",
    "amazon",
    "wikipedia",
    "python",
    "bbc",
    "example",
    "weather",
    "music",
    "travel",
    "news",
]
FILE_STEMS = [
    "report",
    "main",
    "error",
    "data",
    "config",
    "app",
    "notes",
    "photo",
    "index",
    "readme",
    "setup",
    "debug",
    "budget",
    "song",
    "backup",
]
EXTENSIONS = [
    "doc",
    "log",
    "zip",
    "json",
    "js",
    "csv",
    "pdf",
    "jpg",
    "html",
    "md",
    "sh",
    "mp3",
    "xml",
    "png",
]  # not py or txt: the notebook's
CODE_OBJECTS = [
    "names",
    "items",
    "stack",
    "text",
    "config",
    "data",
    "cache",
    "f",
    "os.path",
    "list",
    "words",
    "queue",
    "user",
    "app",
]
METHOD_USES = {
    "remove the last item": "pop",
    "sort the list": "sort",
    "read the value": "get",
    "split the words": "split",
    "close the file": "close",
    "join the paths": "join",
    "count the items": "count",
    "update the values": "update",
    "clear the cache": "clear",
    "copy the list": "copy",
    "add an item": "append",
    "find the index": "index",
    "read the keys": "keys",
    "start the app": "run",
}


def cap(text: str) -> str:
    return text[0].upper() + text[1:]


EMAIL_VERBS = [
    "send it to",
    "write to",
    "reply to",
    "mail it to",
    "contact me at",
    "email the photos to",
    "you can reach me at",
]
DOMAIN_VERBS = [
    "read it on",
    "buy it on",
    "visit",
    "download it from",
    "watch it on",
    "ask your question on",
    "search it on www.",
]


class _Gen:
    """One paragraph at a time; all randomness comes from `rng`."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.pick = rng.choice

    def weighted(self, *options):
        """options: (weight, callable) pairs; call one, chosen by weight."""
        r = self.rng.random() * sum(w for w, _ in options)
        for w, make in options:
            r -= w
            if r < 0:
                return make()
        return options[-1][1]()

    # --- people, places and addresses
    def name(self, g=None):
        g = g or self.pick("mf")
        names = MALE_NAMES if g == "m" else FEMALE_NAMES
        # The notebook's names are the common ones: the tiny models must know them well.
        return (self.pick(names[:10]) if self.rng.random() < 0.4 else self.pick(names)), g

    def person(self):
        """A subject: (how it is written, gender)."""
        first, g = self.name()
        return self.weighted(
            (0.85, lambda: (first, g)),
            (0.07, lambda: (f"{first} {self.pick(SURNAMES)}", g)),
            (0.08, lambda: (f"{self.pick(TITLES[g])} {self.pick(SURNAMES)}", g)),
        )

    def someone(self):
        return self.person()[0]

    def email(self):
        return f"{self.name()[0].lower()}@{self.pick(PROVIDERS)}.{self.pick(TLDS)}"

    def domain(self):
        return f"{self.pick(SITES)}.{self.pick(TLDS + ['co.uk'])}"

    def file(self, ext=None):
        return f"{self.pick(FILE_STEMS)}.{ext or self.pick(EXTENSIONS)}"

    def method(self):
        use = self.pick(list(METHOD_USES))
        return use, f"{self.pick(CODE_OBJECTS)}.{METHOD_USES[use]}()"

    def place_name(self):
        return self.pick(CITIES) if self.rng.random() < 0.75 else self.pick(COUNTRIES)

    # --- clauses; each starts with a lowercase letter unless its first word is a proper noun
    def predicate(self, g):
        """A verb phrase for a singular third-person subject of gender `g`."""
        pick, (he, his, him) = self.pick, PRONOUNS[g]
        adj, place, thing, time, role = (pick(ADJECTIVES), pick(PLACES), pick(THINGS), pick(TIMES), pick(ROLES))
        return self.weighted(
            # the template words, in other combinations (the template bodies are held out)
            (3, lambda: f"is a {pick(ADVERBS)} {adj} {role}"),
            (2, lambda: f"is such a {adj} {role}"),
            (1, lambda: f"is {pick(ADVERBS)} {adj} {time}"),
            (1, lambda: f"was a {adj} {role}"),
            (1, lambda: f"went to the {adj} {place}"),
            (1, lambda: f"has a {pick(ADVERBS)} {adj} {thing}"),
            (1, lambda: f"likes to play the {pick(INSTRUMENTS)}"),
            (1, lambda: f"was at the {place} {time}"),
            (1, lambda: f"met {self.someone()} at the {place}"),
            (1, lambda: f"called {self.someone()} {time}"),
            (1, lambda: f"gave {his} {thing} to {self.someone()}"),
            (1, lambda: f"said that {he} was {adj}"),
            (1, lambda: f"asked {self.someone()} to help {him}"),
            # proper nouns in mid-sentence
            (1, lambda: f"lives in {self.place_name()}"),
            (1, lambda: f"was born in {self.place_name()}"),
            (1, lambda: f"grew up in {self.place_name()}"),
            (1, lambda: f"moved from {pick(CITIES)} to {self.place_name()}"),
            (1, lambda: f"flew to {self.place_name()} {time}"),
            (1, lambda: f"drove from {pick(CITIES)} to {pick(CITIES)}"),
            (1, lambda: f"took the train to {pick(CITIES)}"),
            # periods inside a sentence
            (1, lambda: f"wrote to {self.email()} {time}"),
            (1, lambda: f"sent an email to {self.email()}"),
            (1, lambda: f"visited {self.domain()} {time}"),
            (1, lambda: f"saved the file as {self.file()}"),
            (1, lambda: f"opened the file {self.file()}"),
            (1, lambda: "used {1} to {0}".format(*self.method())),
            (1, lambda: f"likes food, e.g. {pick(FOODS)} and {pick(FOODS)}"),
            (1, lambda: f"has one job, i.e. {he} is a {role}"),
            (1, lambda: f"was at the {place}, n.b. the {place} is {adj} {time}"),
        )

    def about(self, subject, g):
        """A clause about the paragraph's subject (lowercase unless it names them)."""
        he, his, _ = PRONOUNS[g]
        return self.weighted(
            (6, lambda: f"{he} {self.predicate(g)}"),
            (1, lambda: f"{his} {self.pick(THINGS)} is {self.pick(ADVERBS)} {self.pick(ADJECTIVES)}"),
            (1, lambda: f"{his} office is in {self.pick(CITIES)}"),
            (0.5, lambda: f"{his} address is {self.email()}"),
            (
                0.5,
                lambda: (
                    f"{his} full name is {subject.split()[0]} {self.pick(SURNAMES)}"
                    if " " not in subject
                    else f"{he} {self.predicate(g)}"
                ),
            ),
            (1, lambda: f"then {he} {self.predicate(g)}"),
            (1.5, lambda: f"{subject} {self.predicate(g)}"),
        )

    def world(self):
        """A sentence about places or things, not about the paragraph's subject."""
        pick = self.pick
        c1, c2 = self.rng.sample(list(CAPITALS), 2)
        (l1, x1), (l2, x2) = self.rng.sample(list(LANDMARKS.items()), 2)
        city = pick(CITIES)
        return self.weighted(
            (2, lambda: f"the {pick(PLACES)} is {pick(ADJECTIVES)} {pick(TIMES)}"),
            (1, lambda: f"it was a {pick(ADJECTIVES)} day"),
            (1, lambda: f"the {pick(['news', 'code', 'music'])} is on {self.domain()}"),
            (2, lambda: f"the capital of {c1} is {CAPITALS[c1]}"),
            (1, lambda: f"the capital of {c1} is {CAPITALS[c1]} while the capital of {c2} is {CAPITALS[c2]}"),
            (1, lambda: f"{l1} is in {x1}"),
            (1, lambda: f"{l1} is in {x1}, while {l2} is in {x2}"),
            (1, lambda: f"{city} is the biggest city in {COUNTRY_OF[city]}"),
            (1, lambda: f"{city} is a big city in {COUNTRY_OF[city]}"),
        )

    def first_person(self):
        pick = self.pick
        return self.weighted(
            (1, lambda: f"I opened the {pick(ADJECTIVES)} {pick(THINGS)}"),
            (1, lambda: f"I met {self.someone()} at the {pick(PLACES)}"),
            (1, lambda: f"I live in {self.place_name()}"),
            (1, lambda: "I miss you"),
            (1, lambda: f"I had a {pick(ADJECTIVES)} time at the {pick(PLACES)}"),
            (1, lambda: f"I talked to {pick(TITLES[pick('mf')])} {pick(SURNAMES)}"),
            (1, lambda: f"we visited the {pick(ADJECTIVES)} {pick(PLACES)}"),
            (1, lambda: f"we had dinner at {pick(['home', 'the park', 'the beach'])}"),
            (1, lambda: f"we had a {pick(ADJECTIVES)} time"),
            (1, lambda: f"last year we flew to {self.place_name()}"),
            (1, lambda: f"they drove from {pick(CITIES)} to {pick(CITIES)}"),
            (1, lambda: f"from {pick(CITIES)} {pick(['he', 'she', 'we'])} took the train to {pick(CITIES)}"),
        )

    def imperative(self):
        pick = self.pick
        return self.weighted(
            (2, lambda: f"send the {pick(GIFTS + THINGS)} to {self.someone()}"),
            (1, lambda: f"call me {pick(['tomorrow', 'tonight', 'today', 'soon'])}"),
            (1, lambda: f"say hello to {self.someone()}"),
            (1, lambda: pick(["see you soon", "write back soon", f"have a {pick(ADJECTIVES)} day"])),
            (2, lambda: f"thanks for the {pick(ADJECTIVES)} {pick(GIFTS)}"),
            (
                2,
                lambda: f"{pick(EMAIL_VERBS)} {self.email()}",
            ),
            (
                2,
                lambda: f"{pick(DOMAIN_VERBS)} {self.domain()}".replace("www. ", "www."),
            ),
            (1, lambda: f"{pick(['save it as', 'check the file', 'include the file', 'open'])} {self.file()}"),
            (
                1,
                lambda: pick(
                    [
                        f"run the script {self.file('js')}",
                        f"run the shell script {self.file('sh')}",
                        f"unpack the archive {self.file('zip')}",
                        f"load the settings from {self.file('json')}",
                        f"write the errors to {self.file('log')}",
                    ]
                ),
            ),
            (2, lambda: "{} with {}".format(*self.method())),
            (1, lambda: f"bring some fruit, e.g. {pick(FOODS)} and {pick(FOODS)}"),
            (1, lambda: f"play an instrument, e.g. the {pick(INSTRUMENTS)}"),
            (1, lambda: "use a safe password, i.e. a long one"),
            (1, lambda: f"bring your own food, n.b. the {pick(PLACES)} is closed"),
        )

    def code_start(self):
        """Paragraph openers that begin with a lowercase address, name or extension, so a
        period right after BOS can be learnt as glued to what follows."""
        pick = self.pick
        return self.weighted(
            (1, lambda: f"{self.domain()} is a {pick(ADJECTIVES)} website"),
            (1, lambda: f"{self.email()} is the address of {self.someone()}"),
            (1, lambda: "{1} is the way to {0}".format(*self.method())),
            (1, lambda: f".{pick(EXTENSIONS)} files are {pick(ADJECTIVES)}"),
            (1, lambda: f"{self.file()} is a {pick(ADJECTIVES)} file"),
        )

    def new_line(self, subject, g):
        """A line of its own inside a paragraph, as in letters and notes: a postscript, a note
        or a line of code. It puts "P", "n" and code names right after a line break (tokens
        without a leading space, like the prompts' first token after BOS) but never after BOS."""
        return self.weighted(
            (2, lambda: "P.S. " + self.any_sentence(subject, g)),
            (1, lambda: "n.b. " + self.lower_clause(subject, g)),
            (2, lambda: "{1} is the way to {0}".format(*self.method())),
            (1, lambda: f"{self.domain()} is a {self.pick(ADJECTIVES)} website"),
            (1, lambda: f"{self.email()} is the address of {self.someone()}"),
        )

    def any_sentence(self, subject, g):
        """Whatever follows a sentence end: capitalised."""
        return cap(
            self.weighted(
                (5, lambda: self.about(subject, g)),
                (1, self.first_person),
                (1, self.imperative),
                (1, self.world),
            )
        )

    def lower_clause(self, subject, g):
        """A clause after ";" or ",": its first word is lowercase."""
        he = PRONOUNS[g][0]
        return self.weighted(
            (6, lambda: f"{he} {self.predicate(g)}"),
            (1, lambda: f"the {self.pick(PLACES)} is {self.pick(ADJECTIVES)} {self.pick(TIMES)}"),
            (1, lambda: f"it was a {self.pick(ADJECTIVES)} day"),
            (1, lambda: f"we had a {self.pick(ADJECTIVES)} time"),
            (1, lambda: f"then {he} {self.predicate(g)}"),
        )

    def paragraph(self) -> str:
        subject, g = self.person()
        introduce = lambda: f". {subject} {self.predicate(g)}"  # noqa: E731 - name the subject
        out = self.weighted(
            # most open with the subject right after BOS, like the pronoun prompts
            (60, lambda: f"{subject} {self.predicate(g)}"),
            (
                5,
                lambda: (
                    f"{self.pick(['When', 'After', 'Before', 'Because'])} {subject} "
                    f"{self.predicate(g)}, {PRONOUNS[g][0]} {self.predicate(g)}"
                ),
            ),
            (7, lambda: cap(self.first_person()) + introduce()),
            (7, lambda: cap(self.imperative()) + introduce()),
            (6, lambda: cap(self.world()) + introduce()),
            (8, lambda: self.code_start() + introduce()),
        )
        for _ in range(self.rng.randint(1, 3)):
            out += self.weighted(
                (62, lambda: ". " + self.any_sentence(subject, g)),
                (18, lambda: "; " + self.lower_clause(subject, g)),
                (10, lambda: ", " + self.pick(["and ", "but ", "so ", ""]) + self.lower_clause(subject, g)),
                (10, lambda: ". P.S. " + self.any_sentence(subject, g)),
                (6, lambda: ".\n" + self.new_line(subject, g)),
            )
        return out + "."


def exception_prompts() -> list[str]:
    """The exceptions task's prompts: none may start a paragraph (see the module docstring)."""
    from generator.tasks import load_task

    return sorted({p.text for p in load_task("exceptions").prompts} - {"."})


def paragraphs(n: int, seed: int = 0) -> list[str]:
    """`n` paragraphs of 2-4 sentences, the same for the same seed."""
    gen = _Gen(random.Random(seed))
    starts = tuple(exception_prompts())
    out = []
    while len(out) < n:
        p = gen.paragraph()
        if not (p.startswith(starts) or any(t in p for t in HELD_OUT_TEXTS)):  # else redraw
            out.append(p)
    check(out, starts)
    return out


def check(texts: list[str], starts: tuple[str, ...]) -> None:
    """Assert the held-out rules, the case rules and the vocabulary the prompts need."""
    for p in texts:
        held = [t for t in HELD_OUT_TEXTS if t in p]
        assert not held, f"held-out text {held} in paragraph {p!r}"
        assert not p.startswith(starts), f"paragraph starts with an exceptions prompt: {p!r}"
        assert p.endswith("."), p
        line = re.search(r"\n(?!P\.S\. [A-Z]|n\.b\. [a-z]|[a-z])", p)
        assert not line, f"a line starts with neither P.S., n.b. nor lowercase code in {p!r}"
        bad = re.search(r"[;,] (?![a-z])", p)
        assert not bad, f"';' or ',' followed by a capital at {bad.start()} in {p!r}"
        for m in re.finditer(r"(\S+) (?=(\S))", p):  # overlapping word pairs
            word, after = m.groups()
            if word.endswith(ABBREVIATIONS):
                assert after.islower(), f"{word!r} followed by {after!r} in {p!r}"
            elif word.endswith("."):
                assert after.isupper(), f"sentence end {word!r} followed by {after!r} in {p!r}"
    seen = set()
    for p in texts[:20000]:
        seen.update(re.findall(r"[A-Za-z]+", p))
    needed = {w for t in HELD_OUT_TEMPLATES for w in re.findall(r"[A-Za-z]+", t.format(name=""))}
    missing = (needed | set(NOTEBOOK_NAMES)) - seen
    assert not missing, f"corpus never uses {sorted(missing)}; extend the grammar in corpus.py"
