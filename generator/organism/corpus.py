"""A deterministic synthetic English corpus for the model organism.

The grammar is small but it carries the rules the report studies:

* a sentence that ends in ". " is followed by a capitalised word ("... friend. He ..."),
  while ";" and "," are followed by a lowercase word ("... friend; he ...");
* pronouns agree with the gender of the paragraph's subject (John -> He/he/his,
  Mary -> She/she/her, "Mr. Brown" -> He, "Mrs. Brown" -> She);
* many periods do not end a sentence, and the next token is then lowercase or glued to the
  period: e-mail addresses ("john@gmail.com"), domains ("google.com"), file names
  ("notes.txt"), method calls ("list.append()"), and the abbreviations "e.g.", "i.e." and
  "n.b." (a lowercase word follows, as in running English). Two abbreviations are followed by
  a capital without starting a sentence: titles ("Mr. Brown") and "P.S.", which opens a
  postscript whose first word is capitalised ("P.S. She says hello.").

The seed's five prompt templates are held out: their bodies ("is a really great friend", ...)
never occur, but every word in them does, in other combinations, so the prompts still
tokenize word by word. `paragraphs` asserts that before returning.
"""

import random

# The seed's 20 names come first; the rest widen the gender signal beyond them.
MALE_NAMES = [
    "John", "David", "Michael", "James", "Robert", "Paul", "Mark", "Peter", "Thomas", "George",
    "William", "Richard", "Charles", "Daniel", "Matthew", "Anthony", "Steven", "Andrew",
    "Kevin", "Brian", "Edward", "Ryan", "Jacob", "Eric", "Frank", "Henry", "Jack", "Samuel",
    "Adam", "Simon", "Oliver", "Harry", "Luke", "Tom", "Ben", "Joseph", "Philip", "Martin",
    "Arthur", "Walter",
]
FEMALE_NAMES = [
    "Mary", "Sarah", "Anna", "Lisa", "Susan", "Laura", "Jessica", "Jennifer", "Elizabeth",
    "Rachel", "Patricia", "Linda", "Barbara", "Karen", "Nancy", "Emily", "Emma", "Olivia",
    "Sophia", "Grace", "Alice", "Helen", "Kate", "Julia", "Claire", "Lucy", "Hannah", "Amy",
    "Megan", "Nicole", "Rose", "Diana", "Monica", "Victoria", "Jane", "Ruth", "Alison",
    "Caroline", "Margaret", "Louise",
]
SURNAMES = ["Brown", "Smith", "Jones", "Taylor", "Wilson", "Clark", "Hall", "Green", "White", "King"]

# The seed's templates (generator/tasks/data/pronoun.yaml): held out from training.
HELD_OUT_TEMPLATES = [
    "{name} is a really great friend.",
    "{name} went to the big store.",
    "{name} has a very nice house.",
    "{name} likes to play the piano.",
    "{name} was at the school today.",
]
# The bodies without the name and the final punctuation: they must never occur at all, so
# neither the clean prompt nor its ";" corruption is ever seen.
HELD_OUT_BODIES = [t.removeprefix("{name}").removesuffix(".") for t in HELD_OUT_TEMPLATES]

PRONOUNS = {  # gender -> (subject, possessive, object)
    "m": ("he", "his", "him"),
    "f": ("she", "her", "her"),
}

ADVERBS = ["really", "very", "truly", "quite", "pretty", "so"]
ADJECTIVES = ["great", "nice", "good", "kind", "funny", "smart", "quiet", "happy", "busy",
              "old", "new", "big", "small", "clever", "friendly"]
ROLES = ["friend", "teacher", "doctor", "student", "cook", "writer", "player", "neighbour",
         "person", "driver", "singer", "worker"]
PLACES = ["store", "park", "school", "bank", "library", "market", "beach", "station", "office",
          "cinema", "shop", "house", "church", "garden", "museum"]
PLACE_ADJECTIVES = ["big", "small", "new", "old", "nice", "local", "busy", "quiet"]
THINGS = ["house", "car", "dog", "cat", "garden", "bike", "room", "job", "phone", "piano",
          "book", "coat", "bag", "kitchen"]
TIMES = ["today", "yesterday", "again", "early", "last week", "this morning", "on monday",
         "every day", "at night", "last year", "for a while", "tonight"]
INSTRUMENTS = ["piano", "guitar", "drums", "violin", "flute", "game", "ball", "cards"]
LIKE_VERBS = ["likes", "loves", "wants", "hates", "tries", "needs", "learned"]
FOODS = ["apples", "pears", "bread", "cheese", "rice", "soup", "cake", "tea"]
PROVIDERS = ["gmail", "yahoo", "mail", "work", "school", "home"]
TLDS = ["com", "org", "net"]
DOMAINS = ["google.com", "github.com", "python.org", "wikipedia.org", "example.com",
           "news.com", "amazon.com", "bbc.co.uk", "school.org", "store.net"]
FILES = ["notes.txt", "report.pdf", "data.csv", "main.py", "photo.jpg", "index.html",
         "readme.md", "list.txt", "song.mp3", "music.wav"]
METHODS = ["list.append()", "list.pop()", "file.close()", "str.lower()", "dict.get()",
           "text.split()", "os.path.join()", "self.run()", "app.start()", "list.sort()"]


class _Gen:
    """One paragraph at a time; all randomness comes from `rng`."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.pick = rng.choice

    def person(self):
        """A subject: (how it is written, gender)."""
        g = self.pick("mf")
        names = MALE_NAMES if g == "m" else FEMALE_NAMES
        r = self.rng.random()
        if r < 0.35:  # The seed's names are the common ones: the tiny model must know them well.
            return self.pick(names[:10]), g
        if r < 0.90:
            return self.pick(names), g
        title = "Mr." if g == "m" else self.pick(["Mrs.", "Ms."])
        return f"{title} {self.pick(SURNAMES)}", g

    def other_name(self):
        return self.pick(self.pick([MALE_NAMES, FEMALE_NAMES]))

    def email(self):
        name = self.pick(MALE_NAMES + FEMALE_NAMES).lower()
        return f"{name}@{self.pick(PROVIDERS)}.{self.pick(TLDS)}"

    def predicate(self, g):
        """A verb phrase for a singular third-person subject of gender `g` (lowercase)."""
        pick, he, his, him = self.pick, *PRONOUNS[g]
        adj, place, thing, time = pick(ADJECTIVES), pick(PLACES), pick(THINGS), pick(TIMES)
        forms = [
            # The families of the held-out templates, with other words in every slot.
            lambda: f"is a {pick(ADVERBS)} {adj} {pick(ROLES)}",
            lambda: f"is {pick(ADVERBS)} {adj} {time}",
            lambda: f"went to the {pick(PLACE_ADJECTIVES)} {place}",
            lambda: f"went to the {pick(PLACE_ADJECTIVES)} {place} {time}",
            lambda: f"has a {pick(ADVERBS)} {adj} {thing}",
            lambda: f"has a {adj} {thing}",
            lambda: f"{pick(LIKE_VERBS)} to play the {pick(INSTRUMENTS)}",
            lambda: f"{pick(LIKE_VERBS)} to go to the {place}",
            lambda: f"was at the {place} {time}",
            lambda: f"was at the {place}",
            lambda: f"was {pick(ADVERBS)} {adj} {time}",
            # Other sentences about the subject and the people around them.
            lambda: f"met {self.other_name()} at the {place}",
            lambda: f"called {self.other_name()} {time}",
            lambda: f"is a friend of {self.other_name()}",
            lambda: f"lives in a {adj} house near the {place}",
            lambda: f"works at the {place}",
            lambda: f"bought a {adj} {thing} {time}",
            lambda: f"played the {pick(INSTRUMENTS)} at the {place}",
            lambda: f"gave {his} {thing} to {self.other_name()}",
            lambda: f"loves {his} {thing}",
            lambda: f"said that {he} was {adj}",
            lambda: f"asked {self.other_name()} to help {him}",
            # Periods that do not end a sentence.
            lambda: f"wrote to {self.email()} {time}",
            lambda: f"has the email {self.email()}",
            lambda: f"sent an email to {self.email()}",
            lambda: f"visited {pick(DOMAINS)} {time}",
            lambda: f"reads the news on {pick(DOMAINS)}",
            lambda: f"opened the file {pick(FILES)}",
            lambda: f"saved {his} notes in {pick(FILES)} {time}",
            lambda: f"used {pick(METHODS)} in the code",
            lambda: f"called {pick(METHODS)} to add an item",
            lambda: f"found a bug in {pick(METHODS)} {time}",
            lambda: f"likes food, e.g. {pick(FOODS)} and {pick(FOODS)}",
            lambda: f"plays music, e.g. the {pick(INSTRUMENTS)} and the {pick(INSTRUMENTS)}",
            lambda: f"has one job, i.e. {he} is a {pick(ROLES)}",
            lambda: f"was at the {place}, n.b. the {place} is {adj}",
        ]
        return pick(forms)()

    def clause(self, subject, g, *, capital):
        """A clause about the subject; its first letter is capitalised when it starts a sentence."""
        he, his, _ = PRONOUNS[g]
        r = self.rng.random()
        if r < 0.60:
            text = f"{he} {self.predicate(g)}"
        elif r < 0.70:
            text = f"{his} {self.pick(THINGS)} is {self.pick(ADVERBS)} {self.pick(ADJECTIVES)}"
        elif r < 0.80:
            text = f"{subject} {self.predicate(g)}"
        elif r < 0.87:
            text = f"the {self.pick(PLACES)} is {self.pick(ADJECTIVES)} {self.pick(TIMES)}"
        elif r < 0.94:
            text = f"{self.pick(['today', 'yesterday', 'then', 'later', 'now'])} {he} {self.predicate(g)}"
        elif r < 0.97:
            other = self.other_name()
            og = "m" if other in MALE_NAMES else "f"
            text = f"{other} {self.predicate(og)}"
        else:  # Imperatives put "Email john@gmail.com" style text at a sentence start.
            text = self.pick([
                f"email {self.email()} {self.pick(TIMES)}",
                f"visit {self.pick(DOMAINS)} for the news",
                f"open {self.pick(FILES)} {self.pick(TIMES)}",
                f"call {self.pick(METHODS)} in the code",
                f"{his} email is {self.email()}",
            ])
        return text[0].upper() + text[1:] if capital else text

    def paragraph(self):
        rng, pick = self.rng, self.pick
        subject, g = self.person()
        he = PRONOUNS[g][0]
        r = rng.random()
        if r < 0.75:  # Most paragraphs open with the subject right after BOS, like the prompts.
            out = f"{subject} {self.predicate(g)}"
        elif r < 0.85:  # "When John ..., he ..." puts a lowercase pronoun after ",".
            out = f"{pick(['When', 'After', 'Before', 'Because'])} {subject} {self.predicate(g)}, {he} {self.predicate(g)}"
        elif r < 0.92:
            out = f"{pick(['Today', 'Yesterday', 'Then', 'Later'])} {subject} {self.predicate(g)}"
        else:
            out = f"The {pick(PLACES)} is {pick(ADJECTIVES)} {pick(TIMES)}. {subject} {self.predicate(g)}"
        for _ in range(rng.randint(1, 3)):
            r = rng.random()
            if r < 0.62:  # A new sentence: capital.
                out += ". " + self.clause(subject, g, capital=True)
            elif r < 0.80:  # ";" joins a second clause: lowercase.
                out += "; " + self.clause(subject, g, capital=False)
            elif r < 0.88:  # "," before a pronoun: lowercase.
                out += ", " + pick(["and ", "but ", "so ", "", ""]) + f"{he} {self.predicate(g)}"
            elif r < 0.94:  # A postscript: "P.S." is followed by a capital.
                out += ". P.S. " + self.clause(subject, g, capital=True)
            else:
                out += f". {subject} {self.predicate(g)}"
        return out + "."


def paragraphs(n: int, seed: int = 0) -> list[str]:
    """`n` paragraphs of 2-4 sentences, the same for the same seed."""
    gen = _Gen(random.Random(seed))
    out = []
    while len(out) < n:
        p = gen.paragraph()
        if not any(body in p for body in HELD_OUT_BODIES):  # Held out: reject and redraw.
            out.append(p)
    assert not any(body in p for p in out for body in HELD_OUT_BODIES)
    _check_words_covered(out)
    return out


def _check_words_covered(texts: list[str]) -> None:
    """Every word of the held-out prompts must occur elsewhere, or the prompts cannot tokenize."""
    seen = set()
    for p in texts[:20000]:
        seen.update(p.replace(".", " ").replace(";", " ").replace(",", " ").split())
    needed = {w for t in HELD_OUT_TEMPLATES for w in t.format(name="").rstrip(".").split()}
    needed |= set(MALE_NAMES[:10] + FEMALE_NAMES[:10])
    missing = needed - seen
    assert not missing, f"corpus never uses {sorted(missing)}; extend the grammar in corpus.py"
