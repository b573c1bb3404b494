"""The small, checkable tasks of the synthetic dialogue corpus, and the user's speaking styles.

Every task draws a question and its reply from a seeded `random.Random`, and names the answer words
a scorer looks for in the system's inner monologue. Words are kept in two forms: the display form
(the transcript, CTM and inner monologue: "c", "twelve") and the form the TTS engine reads ("see").
The system's reply always starts with the style's word, so which reply is right depends on how the
user spoke (pitch and rate), not only on what was said.
"""
from __future__ import annotations

import dataclasses
import random

NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
           "fifteen sixteen seventeen eighteen nineteen twenty").split()
LETTERS = {"a": "ay", "b": "bee", "c": "see", "d": "dee", "e": "ee", "f": "eff", "g": "gee", "h": "aitch",
           "i": "eye", "k": "kay", "l": "el", "m": "em", "n": "en", "o": "oh", "p": "pee", "r": "are",
           "s": "ess", "t": "tee", "u": "you", "w": "double you", "y": "why"}
SPELL_WORDS = ("cat", "dog", "sun", "book", "tree", "fish", "milk", "rain", "bird", "star", "cake", "moon")
FACTS = (  # (question, reply, answer words)
    ("what color is the sky", "the sky is blue", ("blue",)),
    ("what color is grass", "grass is green", ("green",)),
    ("what is the capital of france", "the capital of france is paris", ("paris",)),
    ("what is the capital of italy", "the capital of italy is rome", ("rome",)),
    ("how many legs does a spider have", "a spider has eight legs", ("eight",)),
    ("how many days are in a week", "a week has seven days", ("seven",)),
    ("what do bees make", "bees make honey", ("honey",)),
    ("which animal says moo", "a cow says moo", ("cow",)),
    ("what is frozen water called", "frozen water is called ice", ("ice",)),
    ("how many wheels does a bike have", "a bike has two wheels", ("two",)),
)
BACKCHANNELS = ("uh huh", "yeah", "right", "okay")
INTERRUPTIONS = ("wait", "hold on", "sorry", "no wait")


@dataclasses.dataclass(frozen=True)
class Style:
    """A way of speaking: rate (speed factor), pitch (F0 factor) and the reply's first word."""

    name: str
    rate: float
    pitch: float
    reply_word: str


STYLES = {
    "calm": Style("calm", 1.0, 1.0, "sure"),
    "excited": Style("excited", 1.35, 1.6, "wow"),
    "slow": Style("slow", 0.72, 0.72, "okay"),
}


@dataclasses.dataclass(frozen=True)
class Utterance:
    """Words in display form and the text the TTS engine reads (same word count)."""

    words: tuple[str, ...]
    spoken: tuple[str, ...]

    @classmethod
    def plain(cls, text: str) -> "Utterance":
        w = tuple(text.split())
        return cls(w, w)

    def __add__(self, other: "Utterance") -> "Utterance":
        return Utterance(self.words + other.words, self.spoken + other.spoken)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def tts_text(self) -> str:
        return " ".join(self.spoken)


@dataclasses.dataclass(frozen=True)
class Exchange:
    task: str
    question: Utterance
    answer: Utterance  # the reply without the style word
    answer_words: tuple[str, ...]  # what must appear in the reply for the task to count as solved
    # the question's content for a template of `heldout.yaml` ("e": "four plus two"; "a", "b": a count's ends;
    # "w": a word to spell; "q": a fact's question)
    slots: tuple[tuple[str, str], ...] = ()

    def asked(self, template: str) -> "Exchange":
        """The same exchange with its question in another phrasing (`template` with this exchange's slots)."""
        return dataclasses.replace(self, question=Utterance.plain(template.format(**dict(self.slots))))


def arithmetic(rng: random.Random) -> Exchange:
    """An operation, then its operands: a "times" entry (20 of them) comes up ten times as often as a
    "minus" one (187)."""
    op = rng.choice(["plus", "minus", "times"])
    if op == "plus":
        a, b = rng.randint(1, 10), rng.randint(1, 10)
    elif op == "minus":
        a = rng.randint(2, 20)
        b = rng.randint(1, a - 1)
    else:
        a, b = rng.randint(1, 5), rng.randint(1, 4)
    return _arithmetic_exchange(a, op, b)


ARITHMETIC_TABLE = ([(a, "plus", b) for a in range(1, 11) for b in range(1, 11)]
                    + [(a, "minus", b) for a in range(2, 21) for b in range(1, a)]
                    + [(a, "times", b) for a in range(1, 6) for b in range(1, 5)])  # what `arithmetic` can ask


def arithmetic_uniform(rng: random.Random) -> Exchange:
    """Every entry of ARITHMETIC_TABLE equally often (a model learns an entry from enough examples of it)."""
    return _arithmetic_exchange(*rng.choice(ARITHMETIC_TABLE))


def _arithmetic_exchange(a: int, op: str, b: int) -> Exchange:
    c = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    expr = f"{NUMBERS[a]} {op} {NUMBERS[b]}"
    return Exchange("arithmetic", Utterance.plain(f"what is {expr}"), Utterance.plain(f"{expr} is {NUMBERS[c]}"),
                    (NUMBERS[c],), (("e", expr),))


COUNT_LENGTHS = (3, 6)  # how many numbers a count says: fewest, most (CorpusConfig.count_lengths)
LAST_COUNTED = 19  # the highest number a count reaches


def _count_range(rng: random.Random, lengths: tuple[int, int] = COUNT_LENGTHS) -> tuple[int, int]:
    fewest, most = lengths
    a = rng.randint(1, LAST_COUNTED + 1 - most)
    return a, a + rng.randint(fewest - 1, most - 1)


def _counting_exchange(a: int, b: int, restated: bool) -> Exchange:
    seq = " ".join(NUMBERS[i] for i in range(a, b + 1))
    reply = f"from {NUMBERS[a]} to {NUMBERS[b]} {seq}" if restated else seq
    return Exchange("counting", Utterance.plain(f"count from {NUMBERS[a]} to {NUMBERS[b]}"), Utterance.plain(reply),
                    tuple(NUMBERS[i] for i in range(a, b + 1)), (("a", NUMBERS[a]), ("b", NUMBERS[b])))


def counting(rng: random.Random, lengths: tuple[int, int] = COUNT_LENGTHS) -> Exchange:
    return _counting_exchange(*_count_range(rng, lengths), restated=False)


def counting_restated(rng: random.Random, lengths: tuple[int, int] = COUNT_LENGTHS) -> Exchange:
    """`counting` (the same draws) with the range said again before the numbers ("from four to nine
    four five six seven eight nine"), as arithmetic replies restate their operands: the number to stop
    at is then in the system's own recent words, not only in the user's question seconds before."""
    return _counting_exchange(*_count_range(rng, lengths), restated=True)


COUNTING_REPLIES = {"sequence": counting, "restated": counting_restated}


def spelling(rng: random.Random) -> Exchange:
    return spelling_exchange(rng.choice(SPELL_WORDS))


def spelling_exchange(word: str) -> Exchange:
    letters = Utterance(tuple(word), tuple(LETTERS[ch] for ch in word))
    return Exchange("spelling", Utterance.plain(f"how do you spell {word}"),
                    Utterance.plain(f"{word} is spelled") + letters, tuple(word), (("w", word),))


def fact(rng: random.Random) -> Exchange:
    question, reply, answer = rng.choice(FACTS)
    return Exchange("facts", Utterance.plain(question), Utterance.plain(reply), answer, (("q", question),))


UNKNOWN_REPLY = "i do not know"  # the trained reply to a question outside what the system knows (FACTS)


def unknown_exchange(question: str) -> Exchange:
    """A question the system cannot know (`heldout.yaml` unknown): the right reply says so."""
    return Exchange("unknown", Utterance.plain(question), Utterance.plain(UNKNOWN_REPLY), tuple(UNKNOWN_REPLY.split()),
                    (("q", question),))


TASKS = {"arithmetic": arithmetic, "counting": counting, "spelling": spelling, "facts": fact}


def draw_exchange(task: str, rng: random.Random, arithmetic_entries: str = "by_operation",
                  counting_reply: str = "sequence", count_lengths: tuple[int, int] = COUNT_LENGTHS) -> Exchange:
    """One exchange of `task`, drawn the way a corpus's settings ask (CorpusConfig)."""
    if task == "arithmetic" and arithmetic_entries == "uniform":
        return arithmetic_uniform(rng)
    if task == "counting":
        return COUNTING_REPLIES[counting_reply](rng, tuple(count_lengths))
    return TASKS[task](rng)


def reply_for(exchange: Exchange, style: Style) -> Utterance:
    return Utterance.plain(style.reply_word) + exchange.answer


def answer_positions(reply: list[str] | tuple[str, ...], answer: list[str] | tuple[str, ...]) -> list[int]:
    """Indices in the reply's words of the answer words as a subsequence, matched from the end ("two
    times one is two": the last "two"); [] if they are not one (a reply cut short)."""
    idx, pos = [], len(reply)
    for word in reversed(answer):
        pos = next((p for p in range(pos - 1, -1, -1) if reply[p] == word), -1)
        if pos < 0:
            return []
        idx.append(pos)
    return idx[::-1]


def corpus_sentences() -> list[str]:
    """Every word the corpus can produce, in sentences (for the sentencepiece model)."""
    out = [f"what is {a} {op} {b}" for a in NUMBERS for op in ("plus", "minus", "times") for b in NUMBERS[:5]]
    out += [" ".join(NUMBERS), " ".join(LETTERS), " ".join(SPELL_WORDS)]
    out += [f"{q} {r}" for q, r, _ in FACTS]
    out += [f"count from {n} to {m} how do you spell is spelled" for n, m in zip(NUMBERS, NUMBERS[3:])]
    out += [" ".join(s.reply_word for s in STYLES.values()), " ".join(BACKCHANNELS), " ".join(INTERRUPTIONS)]
    return out
