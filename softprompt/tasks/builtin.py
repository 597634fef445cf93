"""Built-in offline tasks: sentences generated from hand-written phrase banks with a seeded RNG.

Nothing here is copied from a published dataset: every sentence is composed from the small
phrase banks below (subject + opinion, event + reaction, request + register...). Each
task draws its own unique sentences, balanced across classes, and splits them the same way
on every machine (the RNG seed is fixed per task), so train, validation and test never share
a sentence.

The labels follow from the words: a positive review is built only from positive phrases, a
casual message only from casual frames. Nothing is negated and no label is flipped at
random, so a prompt that learns the pattern can reach (near) perfect accuracy, while the
default model's zero-shot guess (see ``benchmarks/task_baselines.py``) leaves room to grow.

Families share label words or structure, which is what multitask prompt tuning transfers
(Wang et al. 2023, §3): ``sentiment`` (movies, products, restaurants, and the same kind of
data with *arbitrary* label words), ``topic``, ``style`` (formality, question or statement),
``emotion`` and ``inference`` (a sentence-pair task answered yes/no).

The ``yes_no`` family (``yn_*``) exists for the MPT transfer experiment (``benchmarks/bench_mpt_transfer.py``):
short generated passages, each followed by ``Question: ...?`` and answered ``yes`` or ``no``, so they share an
answer format and the skill of checking a question against the passage (as GLUE/SuperGLUE's BoolQ, RTE or QNLI
do for Wang et al. 2023). ``yn_facts`` (facts about a person) is the held-out target; ``intent`` (requests to a
voice assistant, four classes) is a control target from another family. These tasks have a 512-example test
split (``YES_NO_SPLIT_SIZES``) so that a target's accuracy is measured on enough examples.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from datasets import Dataset

__all__ = ["BUILTIN_TASKS", "BuiltinSpec", "SPLIT_SIZES", "YES_NO_SPLIT_SIZES", "build_splits"]

# Examples per split (all tasks have 2 or 4 classes, so each split is exactly balanced).
SPLIT_SIZES = {"train": 640, "validation": 128, "test": 256}
YES_NO_SPLIT_SIZES = {"train": 640, "validation": 128, "test": 512}  # the yn_* tasks and intent: MPT targets


@dataclass(frozen=True)
class BuiltinSpec:
    """How to make one built-in task: its casting and a generator ``make(rng, label) -> example fields``."""

    name: str
    family: str
    description: str
    template: str
    label_words: tuple[str, ...]
    make: Callable[[random.Random, int], dict]
    split_sizes: dict = None  # examples per split; None: SPLIT_SIZES

    def __post_init__(self):
        if self.split_sizes is None:
            object.__setattr__(self, "split_sizes", SPLIT_SIZES)

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())  # stable across runs and machines (unlike hash())


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _pick(rng: random.Random, *banks):
    return [rng.choice(b) for b in banks]


# ---------------------------------------------------------------------------------- sentiment

@dataclass(frozen=True)
class _Domain:
    """A review domain: subjects, what can be said of any of them, and whole-item clauses, per label (0=neg, 1=pos).

    ``adjectives`` make explicit opinions ("the soup was truly awful"); a domain may give
    ``predicates`` instead, implicit ones ("the plot dragged on forever"), which a small model
    finds harder to read zero-shot while the label still follows from the words.
    """

    subjects: tuple[str, ...]
    verb: str
    adjectives: tuple[tuple[str, ...], tuple[str, ...]]
    clauses: tuple[tuple[str, ...], tuple[str, ...]]
    predicates: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


_OPENERS = ("", "", "honestly,", "overall,", "for me,", "I have to say", "in my opinion,", "frankly,", "all in all,")
_INTENSIFIERS = ("", "", "truly", "really", "absolutely", "genuinely", "remarkably", "incredibly", "quite", "simply")

_MOVIES = _Domain(  # implicit opinions: the lowest zero-shot of the sentiment family
    subjects=("the plot", "the acting", "the soundtrack", "the ending", "the lead actor", "the dialogue",
              "the camera work", "the pacing", "the script", "the villain", "the cinematography", "the final scene",
              "the supporting cast", "the story", "the humor", "the opening scene", "the editing", "the direction"),
    verb="was",
    adjectives=((), ()),
    predicates=(
        ("dragged on forever", "put half the room to sleep", "went exactly where I expected",
         "felt like a rough first draft", "made me check my phone every few minutes", "had the audience groaning",
         "seemed to be missing whole pages", "left everyone in our row yawning", "felt like it was made in a weekend",
         "had me rolling my eyes", "was forgotten before we reached the car", "made me wish I had stayed home"),
        ("stayed with me for days", "had the whole room holding its breath", "kept surprising me until the very end",
         "gave me chills more than once", "earned every laugh and every tear", "left the audience cheering",
         "felt fresh from the first minute", "pulled me in completely", "deserves every award it gets",
         "made me want to see it again right away", "is something I will remember for years",
         "won over even my cynical brother"),
    ),
    clauses=(
        ("I checked my watch every ten minutes", "I want those two hours of my life back",
         "half the audience walked out early", "I fell asleep before the halfway point",
         "I counted the minutes until the credits", "I spent the second hour reading the exit signs",
         "I was out of my seat before the lights came up", "the whole thing felt like a chore"),
        ("I would happily watch it again", "the two hours flew by", "I recommended it to all my friends",
         "the whole theater applauded at the end", "I already bought tickets to see it again",
         "I sat through the credits just to stay in that world", "I was hooked from the first minute",
         "I talked about it all the way home"),
    ),
)

_PRODUCTS = _Domain(
    subjects=("the battery", "the screen", "the charger", "the keyboard", "the camera", "the speaker", "the zipper",
              "the handle", "the build quality", "the touchpad", "the power button", "the lid", "the strap",
              "the motor", "the display", "the cable", "the remote", "the blade"),
    verb="is",
    adjectives=(
        ("flimsy", "useless", "terrible", "cheap", "fragile", "unreliable", "disappointing", "faulty", "poor",
         "shoddy", "awful", "wobbly"),
        ("sturdy", "reliable", "excellent", "fantastic", "solid", "impressive", "durable", "flawless", "great",
         "superb", "outstanding", "wonderful"),
    ),
    clauses=(
        ("I returned it after two days", "it broke within a week", "it was a complete waste of money",
         "I regret ordering it", "it stopped working after one use", "the seller ignored all my emails",
         "I threw it in the trash after a month", "it fell apart in my hands"),
        ("I would buy it again in a heartbeat", "it is worth every penny", "it works perfectly every single time",
         "my whole family uses it daily", "I already ordered a second one", "it arrived early and works like a charm",
         "it has made my mornings so much easier", "it still looks brand new after a year"),
    ),
)

_RESTAURANTS = _Domain(
    subjects=("the pasta", "the waiter", "the service", "the dessert", "the soup", "the steak", "the atmosphere",
              "the staff", "the coffee", "the pizza", "the bread", "the salad", "the curry", "the wine",
              "the fish", "the breakfast", "the burger", "the chef's special"),
    verb="was",
    adjectives=(
        ("awful", "terrible", "dreadful", "disappointing", "poor", "horrible", "mediocre", "appalling",
         "unpleasant", "sloppy", "dismal", "bad"),
        ("wonderful", "excellent", "superb", "fantastic", "lovely", "outstanding", "perfect", "delightful",
         "amazing", "exceptional", "first-rate", "great"),
    ),
    clauses=(
        ("we will never eat there again", "we waited an hour for cold food", "I felt sick all night afterwards",
         "it was the worst meal I have had all year", "we left hungry and annoyed",
         "nobody at our table finished their plate", "I would warn anyone away from it", "the bill was an insult"),
        ("we will definitely come back next week", "it was worth every penny", "I would recommend it to anyone",
         "we left full and happy", "it was the best meal I have had all year",
         "we are already planning our next visit", "I still dream about that evening",
         "my parents loved every bite"),
    ),
)

_HOTELS = _Domain(
    subjects=("the room", "the bed", "the view", "the pool", "the front desk", "the breakfast buffet",
              "the shower", "the location", "the lobby", "the staff", "the spa", "the balcony", "the gym",
              "the check-in", "the air conditioning", "the wifi", "the housekeeping", "the restaurant"),
    verb="was",
    adjectives=(
        ("awful", "terrible", "dreadful", "disappointing", "filthy", "horrible", "shabby", "appalling",
         "unpleasant", "miserable", "dismal", "poor"),
        ("wonderful", "excellent", "spotless", "fantastic", "lovely", "outstanding", "perfect", "delightful",
         "amazing", "exceptional", "charming", "superb"),
    ),
    clauses=(
        ("we checked out two days early", "I would never stay there again", "we barely slept a wink",
         "it ruined our whole holiday", "I asked for a refund on the spot", "the photos online were a lie",
         "we spent the week complaining", "it was the worst trip we have taken"),
        ("we extended our stay by three nights", "I would stay there again in a heartbeat", "we slept like babies",
         "it made our whole holiday", "we have already booked next summer", "it felt like a home away from home",
         "we spent the week smiling", "it was the best trip we have taken"),
    ),
)


def _review(domain: _Domain) -> Callable[[random.Random, int], dict]:
    """Five sentence frames over one domain's banks; every phrase in a sentence has the same polarity."""

    def make(rng: random.Random, label: int) -> dict:
        clauses = domain.clauses[label]
        subj, subj2, clause, opener, intens = _pick(rng, domain.subjects, domain.subjects, clauses, _OPENERS,
                                                    _INTENSIFIERS)
        if domain.predicates[label]:  # implicit opinions: whole predicates
            preds = domain.predicates[label]
            pred, pred2 = _pick(rng, preds, preds)
            if pred2 == pred:
                pred2 = preds[(preds.index(pred) + 1) % len(preds)]
            graded, plain = pred, pred2
        else:  # explicit opinions: verb + intensifier + adjective
            adjs = domain.adjectives[label]
            adj, adj2 = _pick(rng, adjs, adjs)
            if adj2 == adj:
                adj2 = adjs[(adjs.index(adj) + 1) % len(adjs)]
            graded, plain = f"{domain.verb} {intens} {adj}", f"{domain.verb} {adj2}"
        frame = rng.randrange(5)
        if frame == 0:
            text = f"{opener} {subj} {graded}."
        elif frame == 1:
            text = f"{subj} {graded}, and {clause}."
        elif frame == 2:
            if subj2 == subj:
                subj2 = domain.subjects[(domain.subjects.index(subj) + 1) % len(domain.subjects)]
            text = f"{opener} {subj} {plain} and {subj2} {graded}."
        elif frame == 3:
            text = f"{opener} {clause}."
        else:
            text = f"{clause}, because {subj} {graded}."
        return {"text": _cap(" ".join(text.split()))}

    return make


# ---------------------------------------------------------------------------------- topic

_TOPICS = (  # label order follows AG News (world/politics, sports, business, science)
    (("the senator", "parliament", "the prime minister", "the opposition party", "the governor",
      "the city council", "the president", "the foreign minister", "lawmakers", "the ruling coalition",
      "the mayor", "the cabinet"),
     ("passed a new tax bill", "called for an early election", "vetoed the budget proposal",
      "signed a trade treaty with a neighboring country", "launched a campaign for reelection",
      "faced a vote of no confidence", "proposed a reform of the pension system", "met foreign leaders at a summit",
      "announced a new plan for public transport", "appointed a new ambassador", "debated a bill on voting rights",
      "promised to lower income taxes")),
    (("the home team", "the veteran striker", "the tennis champion", "our local club", "the national rugby side",
      "the young sprinter", "the goalkeeper", "the cycling squad", "the boxing champion", "the basketball team",
      "the star quarterback", "the league leaders"),
     ("won the cup final in extra time", "scored twice in the second half", "broke the national record in the relay",
      "lost the semifinal on penalties", "was knocked out in the first round", "climbed to the top of the table",
      "beat their oldest rivals by three points", "set a new personal best on the track",
      "missed the match with a knee injury", "qualified for the world championships",
      "trained hard before the derby", "celebrated a third straight title")),
    (("the company", "the bank", "the startup", "the retail chain", "the carmaker", "the airline", "the oil giant",
      "the software firm", "the supermarket group", "the investment fund", "the coffee chain", "the telecom operator"),
     ("reported record quarterly profits", "cut two thousand jobs", "announced a merger with its largest rival",
      "raised its prices for the second time", "saw its shares fall after the earnings report",
      "opened fifty new stores", "hired a new chief executive", "paid a special dividend to shareholders",
      "filed for bankruptcy protection", "secured a large bank loan", "doubled its annual revenue",
      "sold its European division to investors")),
    (("researchers at the university", "astronomers", "a team of biologists", "the space agency",
      "chemists in the lab", "geologists", "a group of physicists", "marine scientists", "climate researchers",
      "the medical research team", "neuroscientists", "a young botanist"),
     ("discovered a new species of frog", "measured the mass of a distant planet",
      "published a study on sleep and memory", "sequenced the genome of an ancient plant",
      "detected gravitational waves from colliding stars", "found water ice beneath the surface of Mars",
      "mapped the ocean floor near the pole", "tested a new vaccine in mice",
      "observed a comet passing close to the sun", "built a more precise atomic clock",
      "identified a gene linked to memory", "recorded the oldest known fossil of a bird")),
)
_WHEN = ("", "", "last night", "on Sunday", "this week", "on Monday morning", "earlier today",
         "after months of speculation", "late on Friday", "yesterday", "for the first time in a decade")


def _topic(rng: random.Random, label: int) -> dict:
    subjects, events = _TOPICS[label]
    subj, event, when = _pick(rng, subjects, events, _WHEN)
    if when and rng.random() < 0.5:
        text = f"{when}, {subj} {event}."
    else:
        text = f"{subj} {event} {when}."
    return {"text": _cap(" ".join(text.split()).replace(" .", "."))}


# ---------------------------------------------------------------------------------- formality

_REQUESTS = ("send me the report", "review the attached document", "join us for dinner",
             "call me back when you can", "confirm the meeting time", "share your notes from the lecture",
             "return the borrowed books", "update the project schedule", "reply to the client",
             "book a room for the conference", "check the figures in the budget", "pick up the keys from the office",
             "sign the form", "forward the invoice to accounting", "print the slides for the workshop",
             "order more paper for the printer", "introduce me to your manager", "send the photos from the trip",
             "move our call to the afternoon", "lend me your charger", "bring the contract to the meeting",
             "fill in the survey", "check whether the room is free", "post the package to the supplier")
_DAYS = ("Friday", "Monday", "tomorrow", "the end of the week", "noon", "Thursday", "tonight", "Wednesday")
_REGISTERS = (  # label 0 = formal, 1 = casual; {r} = request, {d} = day
    ("I would be most grateful if you could {r}.", "Would you kindly {r} at your earliest convenience?",
     "Dear colleague, I respectfully request that you {r}.", "We would greatly appreciate it if you could {r} by {d}.",
     "Please be so kind as to {r}, and accept my sincere thanks.", "I am writing to ask whether you might {r} by {d}.",
     "Good afternoon, could you please {r} before {d}? Yours sincerely.",
     "At your convenience, I would ask that you {r}. Kind regards."),
    ("hey, can u {r} by {d}? thx", "yo, just {r} whenever lol", "gonna need you to {r} by {d}, cool?",
     "hiya! mind if you {r}? no rush :)", "ugh pls {r} asap, k?", "hey hey, could ya {r} by {d}? cheers!!",
     "so umm can you {r} real quick?", "btw, {r} when u get a sec, ok?"),
)


def _formality(rng: random.Random, label: int) -> dict:
    frame, request, day = _pick(rng, _REGISTERS[label], _REQUESTS, _DAYS)
    return {"text": frame.format(r=request, d=day)}


# ---------------------------------------------------------------------------------- question or statement

_PEOPLE = ("you", "she", "he", "they", "your brother", "the manager", "the children", "our neighbor",
           "the new teacher", "your parents", "the driver", "the nurse")
_ACTIONS = (  # (base form, past form)
    ("lock the front door", "locked the front door"), ("finish the report", "finished the report"),
    ("call the doctor", "called the doctor"), ("bring the umbrella", "brought the umbrella"),
    ("feed the cat", "fed the cat"), ("pay the electricity bill", "paid the electricity bill"),
    ("visit the museum", "visited the museum"), ("answer the phone", "answered the phone"),
    ("water the plants", "watered the plants"), ("buy fresh bread", "bought fresh bread"),
    ("fix the broken window", "fixed the broken window"), ("take the early train", "took the early train"),
    ("meet the new neighbors", "met the new neighbors"), ("clean the kitchen", "cleaned the kitchen"),
)
_TIMES = ("", "today", "this morning", "before lunch", "after the meeting", "on the way home", "tonight")
_MODALS = ("will", "can", "should", "could", "would")


def _question_or_statement(rng: random.Random, label: int) -> dict:
    """Transcribed speech: no punctuation, so the label follows from word order alone."""
    who, (base, past), time, modal = _pick(rng, _PEOPLE, _ACTIONS, _TIMES, _MODALS)
    frame = rng.randrange(4)
    if label == 0:  # question: auxiliary or wh-word first
        text = (f"did {who} {base} {time}", f"{modal} {who} {base} {time}", f"why did {who} {base} {time}",
                f"when {modal} {who} {base}")[frame]
    else:  # statement: subject first
        text = (f"{who} {past} {time}", f"{who} {modal} {base} {time}", f"I think {who} {past} {time}",
                f"{who} {past} {time} as usual")[frame]
    return {"text": _cap(" ".join(text.split()))}


# ---------------------------------------------------------------------------------- emotion

_EMOTIONS = (  # label order: happy, sad, angry, calm; (events, reactions)
    (("my best friend surprised me with concert tickets", "I finally got the job I wanted",
      "my sister had a healthy baby girl", "we won the neighborhood quiz", "my team threw me a birthday party",
      "I passed my driving test on the first try", "an old friend called out of the blue",
      "the bank approved our loan for the house"),
     ("cannot stop smiling", "feel like dancing", "am grinning from ear to ear", "want to hug everyone I meet",
      "laughed all the way home", "feel on top of the world")),
    (("my grandfather passed away last week", "my best friend moved to another country",
      "our old dog died in his sleep", "I lost the ring my mother gave me", "nobody came to my birthday party",
      "my parents told me they are separating", "I had to say goodbye to my classmates",
      "the university rejected my application"),
     ("cried all the way home", "feel empty inside", "keep staring at old photos", "feel heavy and lonely",
      "could barely get out of bed", "miss those days terribly")),
    (("the landlord kept our deposit for no reason", "someone scratched my car on purpose",
      "my coworker took credit for my work", "the airline lost my luggage and blamed me",
      "the neighbors blasted music until four in the morning", "the mechanic charged me twice for one repair",
      "my roommate ate my food again", "the shop canceled my order without telling me"),
     ("am absolutely furious", "slammed the door so hard it shook", "want to scream at somebody",
      "am shaking with rage", "yelled at the manager", "cannot stop clenching my fists")),
    (("I sat by the lake and listened to the rain", "I spent the afternoon reading in the garden",
      "we took a slow walk along the beach", "I made tea and watched the snow fall",
      "the house was quiet after everyone left", "I meditated for an hour this morning",
      "we drifted down the river in a small boat", "I lay in the hammock under the trees"),
     ("feel completely at peace", "am relaxed and unhurried", "feel my breathing slow down",
      "am content to just sit here", "feel still and rested", "have nothing on my mind at all")),
)
_EMOTION_OPENERS = ("", "", "well,", "so,", "honestly,", "you know,")


def _emotion(rng: random.Random, label: int) -> dict:
    events, reactions = _EMOTIONS[label]
    event, reaction, opener = _pick(rng, events, reactions, _EMOTION_OPENERS)
    if rng.random() < 0.5:
        text = f"{opener} {event}, and I {reaction}."
    else:
        text = f"{opener} {event}. Now I {reaction}."
    return {"text": _cap(" ".join(text.split()))}


# ---------------------------------------------------------------------------------- inference (pairs)

_ATTRIBUTES = {
    "size": ("small", "large"),
    "color": ("black", "white", "brown", "gray", "orange"),
    "animal": ("dog", "cat", "horse", "rabbit", "goat", "duck", "fox", "pig"),
    "action": ("sleeping", "eating", "playing", "resting", "hiding", "running"),
    "place": ("garden", "kitchen", "barn", "yard", "field", "hallway"),
}


def _entailment(rng: random.Random, label: int) -> dict:
    """A scene and a claim about one of its attributes; label 0 (yes) if the claim matches, 1 (no) if it differs."""
    scene = {k: rng.choice(v) for k, v in _ATTRIBUTES.items()}
    if rng.random() < 0.5:
        text = "The {size} {color} {animal} is {action} in the {place}.".format(**scene)
    else:
        text = "In the {place}, a {size} {color} {animal} is {action}.".format(**scene)
    asked = rng.choice(list(_ATTRIBUTES))
    claim = dict(scene)
    if label == 1:
        claim[asked] = rng.choice([v for v in _ATTRIBUTES[asked] if v != scene[asked]])
    text_b = {
        "size": "The {animal} is {size}.",
        "color": "The {animal} is {color}.",
        "animal": "A {animal} is {action}.",
        "action": "The {animal} is {action}.",
        "place": "The {animal} is in the {place}.",
    }[asked].format(**claim)
    return {"text": text, "text_b": text_b}


# ---------------------------------------------------------------------------------- yes/no questions (MPT)
# Every yn_* task: a short passage, then "Question: ...?"; label 0 = yes, 1 = no. What differs is what the
# question checks: membership, an attribute, an appointment's day, an opinion, a fact about a person.

_ITEMS = ("apple", "pear", "plum", "lemon", "grape", "melon", "peach", "cherry", "onion", "carrot", "potato",
          "tomato", "hammer", "ladder", "candle", "pencil", "basket", "bottle", "blanket", "kettle", "mirror",
          "pillow", "wallet", "bucket", "rope", "spoon", "brush", "lamp", "clock", "drum", "kite", "map")
_COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "gray", "orange", "purple")
_THINGS = ("car", "door", "hat", "bike", "cup", "chair", "coat", "box", "ball", "bag", "scarf", "boat", "vase",
           "sofa", "tent", "shirt")
_NAMES = ("Anna", "Tom", "Maria", "David", "Sofia", "James", "Elena", "Peter", "Laura", "Omar", "Nina", "Paul",
          "Clara", "Victor", "Julia", "Samuel", "Rosa", "Daniel", "Irene", "Marco")
_JOBS = ("nurse", "teacher", "pilot", "baker", "farmer", "lawyer", "painter", "doctor", "chef", "plumber",
         "dentist", "banker", "writer", "mechanic")
_CITIES = ("Lisbon", "Paris", "Berlin", "Madrid", "Rome", "Vienna", "Dublin", "Oslo", "Prague", "Athens",
           "Warsaw", "Boston", "Chicago", "Toronto", "Sydney", "Cairo")
_PETS = ("a dog", "a cat", "two cats", "a parrot", "a rabbit", "a horse", "no pets", "three dogs", "a goldfish")


def _other(rng: random.Random, bank, value):
    return rng.choice([v for v in bank if v != value])


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _yn_membership(rng: random.Random, label: int) -> dict:
    items = rng.sample(_ITEMS, 5)
    asked = rng.choice(items[:4]) if label == 0 else items[4]
    packed = ", ".join(_a(i) for i in items[:3]) + f" and {_a(items[3])}"
    return {"text": f"I packed {packed}.", "text_b": f"Did I pack {_a(asked)}?"}


def _two_facts(rng: random.Random, keys, values, label: int):
    """Two (key, value) facts and a question about one of them: its true value (label 0, yes) or another one (no)."""
    k1, k2 = rng.sample(keys, 2)
    v1, v2 = rng.sample(values, 2)
    asked, value = rng.choice(((k1, v1), (k2, v2)))
    return (k1, v1), (k2, v2), (asked, value if label == 0 else _other(rng, values, value))


def _yn_colors(rng: random.Random, label: int) -> dict:
    (a, ca), (b, cb), (asked, color) = _two_facts(rng, _THINGS, _COLORS, label)
    return {"text": f"The {a} is {ca} and the {b} is {cb}.", "text_b": f"Is the {asked} {color}?"}


_EVENTS = ("meeting", "dentist visit", "piano lesson", "job interview", "football match", "haircut",
           "dinner party", "flight", "exam", "yoga class", "concert", "doctor's appointment")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _yn_schedule(rng: random.Random, label: int) -> dict:
    name = rng.choice(_NAMES)
    (e1, d1), (e2, d2), (event, day) = _two_facts(rng, _EVENTS, _WEEKDAYS, label)
    return {"text": f"{name} has {_a(e1)} on {d1} and {_a(e2)} on {d2}.", "text_b": f"Is {name}'s {event} on {day}?"}


def _yn_review(rng: random.Random, label: int) -> dict:
    domain = rng.choice((_PRODUCTS, _RESTAURANTS))
    return {"text": _review(domain)(rng, 1 - label)["text"], "text_b": "Did the reviewer like it?"}


def _yn_facts(rng: random.Random, label: int) -> dict:
    name, job, city, pets = rng.choice(_NAMES), rng.choice(_JOBS), rng.choice(_CITIES), rng.choice(_PETS)
    passage = rng.choice((f"{name} is a {job} from {city} and has {pets}.",
                          f"{name}, a {job}, lives in {city} with {pets}."))
    asked = rng.choice(("job", "city"))
    if asked == "job":
        question = f"Is {name} a {job if label == 0 else _other(rng, _JOBS, job)}?"
    else:
        question = f"Does {name} live in {city if label == 0 else _other(rng, _CITIES, city)}?"
    return {"text": passage, "text_b": question}


# ---------------------------------------------------------------------------------- intent (control target)

_INTENTS = (  # label order: weather, music, travel, food
    ("will it rain {when}", "how cold is it going to be {when}", "do I need an umbrella {when}",
     "what is the forecast for {place} {when}", "is it sunny in {place} {when}", "will there be snow {when}",
     "how windy will it be {when}", "tell me the temperature in {place}"),
    ("play some {genre}", "put on my {genre} playlist", "skip this song", "turn the music up",
     "play the new album by my favorite band", "shuffle some {genre} for {when}", "who sings this song",
     "play something relaxing"),
    ("book a flight to {place} {when}", "find me a train to {place}", "how long is the drive to {place}",
     "get me a taxi to the airport {when}", "is my flight on time {when}", "find a cheap hotel in {place}",
     "when does the last bus to {place} leave", "rent a car for {when}"),
    ("order a pizza for {when}", "find a recipe with {food}", "how do I cook {food}",
     "book a table for dinner {when}", "order some {food} for delivery", "what can I make with {food}",
     "find a good sushi place near me", "reorder the {food} I bought last week"),
)
_WHENS = ("today", "tomorrow", "tonight", "this weekend", "on Monday", "on Friday", "next week", "this evening")
_PLACES = ("Lisbon", "Paris", "Berlin", "London", "Tokyo", "Chicago", "the mountains", "the city")
_GENRES = ("jazz", "rock", "classical music", "pop", "hip hop", "country", "blues", "reggae")
_FOODS = ("milk", "eggs", "bread", "coffee", "rice", "bananas", "cheese", "tea", "pasta", "butter")


def _intent(rng: random.Random, label: int) -> dict:
    frame, when, place, genre, food = _pick(rng, _INTENTS[label], _WHENS, _PLACES, _GENRES, _FOODS)
    opener = rng.choice(("", "", "hey,", "please", "can you", "quick question,"))
    text = f"{opener} {frame.format(when=when, place=place, genre=genre, food=food)}"
    return {"text": _cap(" ".join(text.split()))}


# ---------------------------------------------------------------------------------- the registry

BUILTIN_TASKS: dict[str, BuiltinSpec] = {s.name: s for s in (
    BuiltinSpec("sentiment_movies", "sentiment", "Movie reviews, negative or positive.",
                "Review: {text}\nSentiment:", ("negative", "positive"), _review(_MOVIES)),
    BuiltinSpec("sentiment_products", "sentiment", "Product reviews, negative or positive.",
                "Product review: {text}\nSentiment:", ("negative", "positive"), _review(_PRODUCTS)),
    BuiltinSpec("sentiment_restaurants", "sentiment", "Restaurant reviews, negative or positive.",
                "Restaurant review: {text}\nSentiment:", ("negative", "positive"), _review(_RESTAURANTS)),
    BuiltinSpec("arbitrary_sentiment", "sentiment",
                "Hotel reviews with arbitrary label words: negative -> 'banana', positive -> 'apple'. "
                "Zero-shot is at chance; only training can find the mapping.",
                "Review: {text}\nLabel:", ("banana", "apple"), _review(_HOTELS)),
    BuiltinSpec("topic", "topic", "News headlines about politics, sports, business or science.",
                "Headline: {text}\nTopic:", ("politics", "sports", "business", "science"), _topic),
    BuiltinSpec("formality", "style", "Requests written formally or casually (same requests, different register).",
                "Message: {text}\nTone:", ("formal", "casual"), _formality),
    BuiltinSpec("question_or_statement", "style",
                "Transcribed speech without punctuation: is it a question or a statement? Word order decides.",
                "Utterance: {text}\nQuestion or statement?", ("question", "statement"), _question_or_statement),
    BuiltinSpec("emotion", "emotion", "Short personal messages: happy, sad, angry or calm.",
                "Message: {text}\nEmotion:", ("happy", "sad", "angry", "calm"), _emotion),
    BuiltinSpec("entailment", "inference",
                "A scene and a claim about it: does the scene support the claim? (yes or no)",
                "Scene: {text}\nClaim: {text_b}\nIs the claim true?", ("yes", "no"), _entailment),
    BuiltinSpec("yn_membership", "yes_no", "Generated. Four things packed; is the asked thing among them? (yes/no)",
                "{text}\nQuestion: {text_b}\nAnswer:", ("yes", "no"), _yn_membership, YES_NO_SPLIT_SIZES),
    BuiltinSpec("yn_colors", "yes_no", "Generated. Two things and their colors; does the asked color match? "
                "(yes/no)", "{text}\nQuestion: {text_b}\nAnswer:", ("yes", "no"), _yn_colors, YES_NO_SPLIT_SIZES),
    BuiltinSpec("yn_schedule", "yes_no", "Generated. Two appointments and their days; is the asked day right? "
                "(yes/no)", "{text}\nQuestion: {text_b}\nAnswer:", ("yes", "no"), _yn_schedule, YES_NO_SPLIT_SIZES),
    BuiltinSpec("yn_review", "yes_no", "Generated. A product or restaurant review; did the reviewer like it? "
                "(yes/no)", "Review: {text}\nQuestion: {text_b}\nAnswer:", ("yes", "no"), _yn_review,
                YES_NO_SPLIT_SIZES),
    BuiltinSpec("yn_facts", "yes_no", "Generated. A person's job, city and pets; is the asked fact stated? "
                "(yes/no; the MPT benchmark's held-out target)", "{text}\nQuestion: {text_b}\nAnswer:",
                ("yes", "no"), _yn_facts, YES_NO_SPLIT_SIZES),
    BuiltinSpec("intent", "intent", "Generated. Requests to a voice assistant: weather, music, travel or food.",
                "Request: {text}\nIntent:", ("weather", "music", "travel", "food"), _intent, YES_NO_SPLIT_SIZES),
)}


@lru_cache(maxsize=None)
def build_splits(name: str) -> dict[str, Dataset]:
    """Generate a built-in task's splits: unique, class-balanced, the same on every call and machine."""
    spec = BUILTIN_TASKS[name]
    k = len(spec.label_words)
    rng = random.Random(spec.seed)
    per_class = {split: n // k for split, n in spec.split_sizes.items()}
    needed = sum(per_class.values())
    seen: set = set()
    by_class: list[list[dict]] = []
    for label in range(k):
        rows: list[dict] = []
        attempts = 0
        while len(rows) < needed:
            attempts += 1
            if attempts > 200 * needed:
                raise RuntimeError(f"the phrase banks of {name!r} are too small for {needed} unique examples "
                                   "per class.")
            ex = spec.make(rng, label)
            key = tuple(ex.values())
            if key in seen:
                continue
            seen.add(key)
            rows.append(dict(ex, label=label))
        by_class.append(rows)
    splits, start = {}, 0
    for split, n in per_class.items():
        rows = [r for cls in by_class for r in cls[start:start + n]]
        rng.shuffle(rows)
        splits[split] = Dataset.from_list(rows)
        start += n
    return splits
