"""A generated demo corpus in the Kaggle layout, so the whole lifecycle runs without the real data.

Essays are assembled from this module's own templates: paragraphs whose discourse elements open with
cue phrases typical of their class ("One reason ...", "For example, ...", "In conclusion, ..."), mixed
with unlabeled sentences and varied filler, in essays of varied length (some longer than a 512-token
window). The structure is regular enough for a small pretrained model to learn in a few epochs on a
CPU, and noisy enough (several cues per class, optional elements, unlabeled sentences) not to be
trivial. The same seed always gives the same corpus.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import __version__
from .io.kaggle import write_kaggle_layout
from .labels import CLASSES

MARKER = "fbp-demo.json"  # written next to train.csv, so that a later run may replace the corpus
TEST_ESSAYS = 5


@dataclass(frozen=True)
class Topic:
    """What an essay argues about: the position, its opposite and the reasons that support it."""

    title: str
    subject: str
    position: str
    opposite: str
    reasons: tuple[str, ...]


TOPICS = (
    Topic("Phones and Driving", "using a phone while driving", "drivers should never use their phones on the road",
          "a quick text at a red light is harmless",
          ("a driver who looks at a screen is not watching the road", "crashes caused by texting hurt innocent people",
           "hands free devices still pull attention away from traffic", "new drivers copy the habits they see around them",
           "no message is worth risking a life")),
    Topic("Online Classes", "learning from home", "students benefit from being able to take classes online",
          "students learn better when they sit in a classroom",
          ("students can work at their own pace", "sick students do not fall behind",
           "families save time and money on travel", "shy students ask more questions in a chat",
           "recorded lessons can be watched again before a test")),
    Topic("Summer Projects", "summer projects", "summer projects should be designed by students",
          "teachers know best what a project should cover",
          ("students work harder on something they chose", "students learn to plan their own time",
           "a project about a hobby keeps a student reading all summer", "students can explore careers they care about",
           "choice makes students proud of their work")),
    Topic("Cities Without Cars", "limiting car usage", "cities should limit the use of cars",
          "people need cars to get to work and school",
          ("fewer cars means cleaner air", "streets become safer for children on bikes",
           "buses and trains move more people for less money", "walking every day keeps people healthy",
           "quiet streets bring neighbors together")),
    Topic("Extracurricular Activities", "extracurricular activities", "every student should take part in at least one activity after school",
          "students already have too much homework to add more",
          ("clubs and teams teach students to work with others", "activities help students make new friends",
           "colleges look for students who did more than attend class", "sports keep students active and healthy",
           "a club can show a student a talent they never knew they had")),
    Topic("Exploring Venus", "studying Venus", "exploring Venus is worth the danger and the cost",
          "the money should be spent on problems here on Earth",
          ("Venus is the planet most like Earth in size", "new machines can survive heat that melted older probes",
           "learning why Venus changed can warn us about our own climate", "space research creates jobs and new inventions",
           "curiosity has always pushed people to explore")),
    Topic("Seeking Advice", "asking several people for advice", "asking more than one person for advice leads to better choices",
          "asking too many people only causes confusion",
          ("different people notice different problems", "an expert and a friend each see a choice in their own way",
           "hearing many opinions helps a person see what most people agree on", "one adviser can be wrong or biased",
           "talking to many people builds confidence in a decision")),
    Topic("Community Service", "community service", "schools should require students to do community service",
          "students should be free to spend their time as they like",
          ("helping others teaches responsibility", "volunteers learn skills that employers value",
           "service connects students with people they would never meet", "communities depend on volunteers to run parks and shelters",
           "giving back makes students feel part of their town")),
)

LEAD_OPENERS = (
    "Have you ever thought about {subject}?",
    "Many people today are talking about {subject}.",
    "Imagine a world where nobody had to think about {subject}.",
    "In today's society, {subject} is a topic that almost everyone has an opinion about.",
    "Not long ago, hardly anyone cared about {subject}.",
)
POSITION_CUES = ("I believe that {position}.", "In my opinion, {position}.", "I strongly think that {position}.",
                 "That is why I believe that {position}.")
CLAIM_CUES = ("One reason is that {reason}.", "Another reason is that {reason}.", "First of all, {reason}.",
              "Also, {reason}.", "A second reason is that {reason}.", "The most important reason is that {reason}.")
EVIDENCE_CUES = ("For example, {anecdote}.", "For instance, {anecdote}.", "According to {source}, {fact}.",
                 "A good example is when {anecdote}.")
COUNTERCLAIM_CUES = ("Some people argue that {opposite}.", "Others may say that {opposite}.",
                     "It is true that some people think {opposite}.")
REBUTTAL_CUES = ("However, this is not always the case because {reason}.", "However, {reason}.",
                 "But this argument ignores the fact that {reason}.")
CONCLUDING_CUES = ("In conclusion, {position}.", "To sum up, {position}.", "All in all, it is clear that {position}.")
UNLABELED = ("Let me explain why.", "This is something everyone should think about.", "Here is what I mean.",
             "Thank you for reading.", "I hope this makes sense.", "Now let us look at another side.")

PEOPLE = ("my cousin", "a friend of mine", "my neighbor", "one of my teachers", "my older brother", "a girl in my class",
          "my uncle", "a student at my school", "my grandmother", "the coach of our team")
SOURCES = ("a recent study", "a report from the city", "a survey of students", "an article I read last year",
           "experts in the field", "a news story on television")
VERBS = ("noticed", "found", "learned", "discovered", "explained", "showed", "realized", "saw")
OBJECTS = ("the results", "a big difference", "how much time it saved", "that the problem was serious",
           "that most people agreed", "a better way to do it", "how important it was", "that things were changing")
PLACES = ("at school", "at home", "in our town", "during the summer", "last year", "on the weekend", "after practice",
          "in a small city", "at the library", "during a long trip")
NUMBERS = ("half", "most", "nearly three out of four", "about one in five", "more than sixty percent", "almost all")
GROUPS = ("students", "drivers", "parents", "teachers", "families", "workers", "young people", "scientists")
RESULTS = ("things got better", "everyone was happier", "the situation improved quickly", "people changed their minds",
           "the numbers went up", "nobody wanted to go back to the old way", "it made a real difference")
FILLER = (
    "{person} {verb} {object} {place}.",
    "When {person} tried it {place}, {result}.",
    "This shows that {object_plain} matters more than people think.",
    "{numbers} of {groups} said the same thing {place}.",
    "After that, {result}.",
    "It was clear to {person} that {result}.",
)


def _fill(template: str, rng: random.Random, topic: Topic, reason: str = "") -> str:
    """Fill a template's slots with the topic's phrases and random filler words."""
    anecdote = f"{rng.choice(PEOPLE)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}"
    values = {
        "subject": topic.subject, "position": topic.position, "opposite": topic.opposite,
        "reason": reason or rng.choice(topic.reasons), "anecdote": anecdote, "source": rng.choice(SOURCES),
        "fact": f"{rng.choice(NUMBERS)} of {rng.choice(GROUPS)} agree that {reason or rng.choice(topic.reasons)}",
        "person": rng.choice(PEOPLE), "verb": rng.choice(VERBS), "object": rng.choice(OBJECTS),
        "object_plain": topic.subject, "place": rng.choice(PLACES), "result": rng.choice(RESULTS),
        "numbers": rng.choice(NUMBERS), "groups": rng.choice(GROUPS),
    }
    sentence = template.format(**values)
    return sentence[0].upper() + sentence[1:]


def _sentences(rng: random.Random, topic: Topic, cues: tuple[str, ...], filler: range, reason: str = "") -> str:
    """A cue sentence followed by a random number of filler sentences."""
    parts = [_fill(rng.choice(cues), rng, topic, reason)]
    parts += [_fill(rng.choice(FILLER), rng, topic) for _ in range(rng.choice(filler))]
    return " ".join(parts)


def generate_essay(rng: random.Random) -> list[list[tuple[Optional[str], str]]]:
    """One essay: paragraphs, each a list of (class or None for unlabeled, text) segments."""
    topic = rng.choice(TOPICS)
    paragraphs: list[list[tuple[Optional[str], str]]] = []
    if rng.random() < 0.4:
        paragraphs.append([(None, topic.title)])
    opening: list[tuple[Optional[str], str]] = []
    if rng.random() < 0.85:
        opening.append(("Lead", _sentences(rng, topic, LEAD_OPENERS, range(1, 4))))
    opening.append(("Position", _fill(rng.choice(POSITION_CUES), rng, topic)))
    if rng.random() < 0.3:
        opening.append((None, rng.choice(UNLABELED)))
    paragraphs.append(opening)

    reasons = rng.sample(topic.reasons, k=rng.randint(1, len(topic.reasons)))
    for reason in reasons:
        body: list[tuple[Optional[str], str]] = [("Claim", _fill(rng.choice(CLAIM_CUES), rng, topic, reason))]
        for _ in range(rng.choice((1, 1, 2))):
            body.append(("Evidence", _sentences(rng, topic, EVIDENCE_CUES, range(1, 7))))
        if rng.random() < 0.2:
            body.append((None, rng.choice(UNLABELED)))
        paragraphs.append(body)

    if rng.random() < 0.6:
        debate: list[tuple[Optional[str], str]] = [("Counterclaim", _sentences(rng, topic, COUNTERCLAIM_CUES, range(0, 2)))]
        if rng.random() < 0.8:
            debate.append(("Rebuttal", _sentences(rng, topic, REBUTTAL_CUES, range(0, 3))))
        paragraphs.append(debate)

    closing: list[tuple[Optional[str], str]] = [("Concluding Statement", _sentences(rng, topic, CONCLUDING_CUES, range(0, 3)))]
    if rng.random() < 0.25:
        closing.append((None, rng.choice(UNLABELED)))
    paragraphs.append(closing)
    return paragraphs


def render_essay(paragraphs: list[list[tuple[Optional[str], str]]]) -> tuple[str, list[dict]]:
    """The essay text and its labeled spans (class, character offsets, word range), Kaggle style."""
    text_parts: list[str] = []
    spans = []
    length = words = 0
    for paragraph_number, paragraph in enumerate(paragraphs):
        for segment_number, (class_name, segment) in enumerate(paragraph):
            separator = "" if paragraph_number == segment_number == 0 else ("\n\n" if segment_number == 0 else " ")
            text_parts.append(separator + segment)
            length += len(separator)
            segment_words = len(segment.split())
            if class_name:
                spans.append({"class": class_name, "start": length, "end": length + len(segment),
                              "first_word": words, "end_word": words + segment_words})
            length += len(segment)
            words += segment_words
    return "".join(text_parts) + "\n", spans


def _essay_id(rng: random.Random, taken: set[str]) -> str:
    while True:
        essay_id = f"{rng.getrandbits(48):012X}"
        if essay_id not in taken:
            taken.add(essay_id)
            return essay_id


def generate_demo_corpus(output_dir: Path, n_essays: int = 200, seed: int = 0) -> dict:
    """Write a demo corpus in the Kaggle layout to ``output_dir``; returns counts (essays, spans per class, words).

    Layout: ``train.csv`` (all 8 Kaggle columns), ``train/ID.txt``, ``test/ID.txt`` (a few unlabeled
    essays) and ``sample_submission.csv``. Written atomically; an earlier demo corpus is replaced.
    """
    rng = random.Random(seed)
    taken: set[str] = set()
    train = [(_essay_id(rng, taken), *render_essay(generate_essay(rng))) for _ in range(n_essays)]
    test = [(_essay_id(rng, taken), render_essay(generate_essay(rng))[0]) for _ in range(TEST_ESSAYS)]

    rows = []
    spans_per_class: dict[str, int] = {}
    for essay_id, text, spans in train:
        numbers: dict[str, int] = {}
        for span in spans:
            numbers[span["class"]] = numbers.get(span["class"], 0) + 1
            spans_per_class[span["class"]] = spans_per_class.get(span["class"], 0) + 1
            rows.append([essay_id, len(rows) + 1, span["start"], span["end"], text[span["start"]:span["end"]],
                         span["class"], f"{span['class']} {numbers[span['class']]}",
                         " ".join(map(str, range(span["first_word"], span["end_word"])))])
    marker = json.dumps({"generator": "fbp demo-data", "fbp_version": __version__, "essays": n_essays, "seed": seed}) + "\n"
    write_kaggle_layout(output_dir, rows, [(essay_id, text) for essay_id, text, _ in train], test, (MARKER, marker))
    return {
        "essays": n_essays,
        "test_essays": TEST_ESSAYS,
        "words": sum(len(text.split()) for _, text, _ in train),
        "spans_per_class": {name: spans_per_class.get(name, 0) for name in CLASSES},
    }
