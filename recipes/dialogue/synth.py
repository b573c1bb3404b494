"""Synthetic full-duplex corpus: two voices, checkable tasks, and the dynamics of real conversation.

    python -m recipes.dialogue.synth --config conf/corpus.yaml --out data/train [--set num_conversations=8]

Each conversation is a few exchanges: the user asks (in one of the `tasks.STYLES`), the system
answers starting with the style's word. Around that: pauses inside the user's turn (the system
must not take over), user backchannels while the system talks (it must keep talking), user
interruptions (the system yields within a word and the user's new question follows) and small
overlaps at turn ends. Audio and word times come from flite (`recipes.synth.flite`, the engine's
own segment times); clips are placed by their first word's onset, and start there (the engine's
leading pause is cut, so no audio of a word precedes its text token; one clip's synthesis is
`recipes.dialogue.clips`).

Output (a Kaldi data dir): `wav.scp` → stereo wavs (left = user, right = system), `utt2spk`
(speaker = the user's style), `text` (the system's words), `user.ctm` (channel 1) and
`system.ctm` (channel 2) word CTMs, and `meta/<id>.json` with turns, task answers, the style and
event times (pauses, backchannels, interruptions, overlaps).

Held-out splits (`recipes/dialogue/heldout.py`, DESIGN.md "Splits"): `voices`, `instances` and `phrasings` name the
split (train, valid, test) whose user voices (many TTS engines and voices, each conversation one voice at its own
pitch and rate), task instances and question templates a corpus draws from, and `recordings` the split whose
factor grid the pitch and rate (the system's too) come from. `p_unknown` asks questions outside the system's
knowledge (reply "i do not know"); `p_reading` makes conversations in which a real reader of the `real_data` dir
(`python -m recipes.real_speech`) reads prompts with pauses between them and the system only listens. The user's
channel gets a level and light noise (`user_gain_db`, `p_noise`, `noise_snr_db`) and a formant shift (`p_formant`).
Every clip's source recording is hashed into the meta (`clips`), so a test can show that no recording is in two
splits. With these left empty, a corpus is the one made before the splits, draw for draw.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import random
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from codec import config_io

from ..cli_config import load_configs, parse_overrides
from ..ctm import CtmEntry, write_ctm
from ..datadir import DataDir
from ..parallel import worker_pool
from ..splits import SPLITS
from ..synth import SynthError
from .clips import SYSTEM_CHANNEL, USER_CHANNEL, ConversationBuilder, truncate_clip
from .clips import speech_from_first_word  # noqa: F401 (imported from here by egs/mini/dialogue1/local)
from .heldout import draw_held_exchange, grid_factor, load_heldout
from .tasks import (BACKCHANNELS, COUNT_LENGTHS, COUNTING_REPLIES, INTERRUPTIONS, LAST_COUNTED, STYLES, TASKS, Utterance,
                    draw_exchange, reply_for)
from .reading import build_reading
from .voices import Voice, draw_user_voice, user_channel_conditions

CORPUS_CONFIG = "corpus.yaml"  # in every data dir: the settings it was synthesised with
REDRAWS = 3  # a conversation an engine cannot say is drawn again from a seed of its own, up to this many times


@dataclasses.dataclass
class CorpusConfig:
    num_conversations: int = 200
    seed: int = 0
    min_turns: int = 2
    max_turns: int = 3
    user_voice: str = "kal16"
    system_voice: str = "slt"
    sample_rate: int = 16000
    styles: list[str] = dataclasses.field(default_factory=lambda: list(STYLES))
    tasks: list[str] = dataclasses.field(default_factory=lambda: list(TASKS))  # drawn uniformly; repeat one to weight it
    # "by_operation": an operation, then operands (`tasks.arithmetic`); "uniform": every table entry equally often
    arithmetic_entries: str = "by_operation"
    # "sequence": "four five six"; "restated": "from four to six four five six" (tasks.counting_restated)
    counting_reply: str = "sequence"
    # how many numbers a count says, fewest and most (the model stops long counts early when they
    # are the longest it has met: egs/mini/dialogue1/RESULTS.md, second session of 2026-12-01)
    count_lengths: list[int] = dataclasses.field(default_factory=lambda: list(COUNT_LENGTHS))
    # false: every style speaks at the neutral rate, so pitch alone tells them apart (for the style
    # ablation: the codec tokens show rate through their timing; RESULTS.md found they carry pitch too)
    style_rates: bool = True
    p_pause: float = 0.4  # a pause inside the user's question
    p_backchannel: float = 0.35  # the user backchannels while the system answers
    p_interruption: float = 0.25  # the user interrupts the answer with the next question
    p_overlap: float = 0.15  # the system starts just before the user has finished
    pause: list[float] = dataclasses.field(default_factory=lambda: [0.6, 1.2])  # seconds
    response_gap: list[float] = dataclasses.field(default_factory=lambda: [0.2, 0.5])
    turn_gap: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.1])
    overlap: list[float] = dataclasses.field(default_factory=lambda: [0.05, 0.2])
    # seconds after an interruption's onset; the system's reply is cut there
    yield_after: list[float] = dataclasses.field(default_factory=lambda: [0.1, 0.3])
    rms: float = 0.07  # loudness of every clip
    # held-out splits (module docstring): "" = the fixed `user_voice`, every instance, the original templates
    voices: str = ""  # user TTS voices of this split (speaker_splits.yaml), one base voice per conversation
    instances: str = ""  # task instances of this split (heldout.yaml)
    phrasings: str = ""  # question templates of this split (heldout.yaml)
    recordings: str = ""  # the split whose grid of pitch / rate factors every clip is spoken at (required with the above)
    voice_pitch: list[float] = dataclasses.field(default_factory=lambda: [0.8, 1.25])  # a user voice's F0 factor
    voice_rate: list[float] = dataclasses.field(default_factory=lambda: [0.85, 1.2])  # and speaking rate factor
    system_rate: list[float] = dataclasses.field(default_factory=lambda: [0.94, 1.06])  # the system's (slt) rate factor
    p_unknown: float = 0.0  # a question outside the system's knowledge (heldout.yaml unknown), reply "i do not know"
    p_reading: float = 0.0  # a conversation in which a real reader of `real_data` reads and the system listens
    real_data: str = ""  # a data dir of real readers (recipes.real_speech <out>/<split>)
    reading_clips: list[int] = dataclasses.field(default_factory=lambda: [3, 6])  # prompts read, fewest and most
    user_gain_db: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])  # the user channel's level
    p_noise: float = 0.0  # light noise on the user channel (a microphone), at noise_snr_db
    noise_snr_db: list[float] = dataclasses.field(default_factory=lambda: [20.0, 40.0])
    p_formant: float = 0.0  # every user clip of the conversation formant-shifted (Praat PSOLA, timing kept)
    formant_ratio: float = 1.12  # the shift, log-uniform in [1/r, r]

    def split_meta(self) -> dict:
        """What a conversation's meta records of the splits it was drawn from."""
        return {"voices": self.voices, "instances": self.instances, "phrasings": self.phrasings,
                "recordings": self.recordings}

    @property
    def held(self) -> bool:
        """Drawn by the held-out splits (`voices`, `instances`, `phrasings`) rather than as before them."""
        return bool(self.voices or self.instances or self.phrasings or self.recordings)

    def check(self) -> None:
        """Settings that cannot make a corpus, named (before any audio is synthesised)."""
        if not 1 <= self.min_turns <= self.max_turns:
            raise ValueError(f"CorpusConfig: need 1 <= min_turns <= max_turns, got min_turns={self.min_turns}, "
                             f"max_turns={self.max_turns}")
        unknown = [s for s in self.styles if s not in STYLES] + [t for t in self.tasks if t not in TASKS]
        if unknown or not self.styles or not self.tasks:
            raise ValueError(f"CorpusConfig: styles must be from {list(STYLES)} and tasks from {list(TASKS)} "
                             f"(non-empty), got unknown {unknown}")
        if self.arithmetic_entries not in ("by_operation", "uniform"):
            raise ValueError(f"CorpusConfig.arithmetic_entries is {self.arithmetic_entries!r}, expected "
                             f"'by_operation' or 'uniform'")
        if self.counting_reply not in COUNTING_REPLIES:
            raise ValueError(f"CorpusConfig.counting_reply is {self.counting_reply!r}, expected one of "
                             f"{list(COUNTING_REPLIES)}")
        if len(self.count_lengths) != 2 or not 2 <= self.count_lengths[0] <= self.count_lengths[1] <= LAST_COUNTED:
            raise ValueError(f"CorpusConfig.count_lengths is {self.count_lengths}, expected [fewest, most] with "
                             f"2 <= fewest <= most <= {LAST_COUNTED}")
        for name in ("p_pause", "p_backchannel", "p_interruption", "p_overlap", "p_unknown", "p_reading", "p_noise",
                     "p_formant"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"CorpusConfig.{name} is {getattr(self, name)}, expected a probability in [0, 1]")
        if self.held:
            bad = {k: getattr(self, k) for k in ("voices", "instances", "phrasings", "recordings")
                   if getattr(self, k) not in SPLITS}
            if bad:
                raise ValueError(f"CorpusConfig: with held-out splits every one of voices, instances, phrasings, "
                                 f"recordings must be one of {SPLITS}, got {bad}")
            if self.instances != "train" and "facts" in self.tasks and self.p_unknown < 1:
                raise ValueError(f"CorpusConfig: tasks hold 'facts' with instances {self.instances!r}: a fact the "
                                 f"system was never told is an unknown question (p_unknown)")
        elif self.p_unknown > 0:
            raise ValueError("CorpusConfig.p_unknown needs the held-out splits (instances: the unknown questions' split)")
        if self.p_reading > 0 and not self.real_data:
            raise ValueError("CorpusConfig.p_reading needs real_data (a recipes.real_speech split dir)")




def build_conversation(cfg: CorpusConfig, seed: int, user_pitch: float | None = None
                       ) -> tuple[np.ndarray, dict, dict[str, list]]:
    """One conversation → (stereo audio [2, N], metadata, {channel: [(word, start, end)]}).
    `user_pitch`: speak the user at this F0 factor instead of the style's, all else the same (flite keeps
    its timing): the conversation's pitch twin, to ask what of a style is the pitch alone."""
    rng = random.Random(seed)
    if cfg.p_reading > 0 and rng.random() < cfg.p_reading:
        return build_reading(cfg, rng)
    u = lambda a, c: rng.uniform(a, c)  # noqa: E731
    style = STYLES[rng.choice(cfg.styles)]
    rate = style.rate if cfg.style_rates else 1.0
    pitch = style.pitch if user_pitch is None else user_pitch
    voice_u, voice_s = Voice(name=cfg.user_voice), Voice(name=cfg.system_voice)
    formant = 1.0
    if cfg.held:
        voice_u = draw_user_voice(cfg, rng)
        voice_s = dataclasses.replace(voice_s, rate=grid_factor(rng, *cfg.system_rate, cfg.recordings))
        if rng.random() < cfg.p_formant:
            formant = math.exp(u(-math.log(cfg.formant_ratio), math.log(cfg.formant_ratio)))
    b = ConversationBuilder(cfg, rng, formant)
    events = {"pauses": [], "backchannels": [], "interruptions": [], "overlaps": []}
    turns = []
    t = u(0.4, 0.8)
    prefix = None
    n_turns = rng.randint(cfg.min_turns, cfg.max_turns)
    for i in range(n_turns):
        task = rng.choice(cfg.tasks)
        if not cfg.held:
            ex = draw_exchange(task, rng, cfg.arithmetic_entries, cfg.counting_reply, cfg.count_lengths)
        else:
            task = "unknown" if rng.random() < cfg.p_unknown else task
            ex = draw_held_exchange(task, rng, load_heldout(), cfg.instances, cfg.phrasings, cfg.arithmetic_entries,
                                    cfg.counting_reply, cfg.count_lengths)
        q = ex.question if prefix is None else Utterance.plain(prefix) + ex.question
        q_start = t
        if prefix is None and len(q.words) >= 3 and rng.random() < cfg.p_pause:
            cut = rng.randint(2, len(q.words) - 1)
            first = b.say(USER_CHANNEL, Utterance(q.words[:cut], q.spoken[:cut]), t, voice_u, rate, pitch)
            pause_start = first.words[-1][2]
            resume = pause_start + u(*cfg.pause)
            events["pauses"].append({"start": pause_start, "end": resume})
            last = b.say(USER_CHANNEL, Utterance(q.words[cut:], q.spoken[cut:]), resume, voice_u, rate, pitch)
        else:
            last = b.say(USER_CHANNEL, q, t, voice_u, rate, pitch)
        q_end = last.words[-1][2]
        gap = u(*cfg.response_gap)
        if rng.random() < cfg.p_overlap:
            gap = -u(*cfg.overlap)
            events["overlaps"].append({"start": q_end + gap, "end": q_end})
        reply = b.say(SYSTEM_CHANNEL, reply_for(ex, style), q_end + gap, voice_s)
        words = reply.words
        turn = {"task": ex.task, "question": ex.question.text, "reply": reply_for(ex, style).text,
                "instance_split": cfg.instances or "all", "phrasing_split": cfg.phrasings or "original",
                "answer": list(ex.answer_words), "style_word": style.reply_word, "question_start": q_start,
                "question_end": q_end, "reply_start": words[0][1], "reply_end": words[-1][2], "interrupted": False}
        prefix = None
        if i < n_turns - 1 and len(words) >= 4 and rng.random() < cfg.p_interruption:
            onset = u(words[1][1], words[-2][2])
            stop = onset + u(*cfg.yield_after)
            truncate_clip(reply, stop, cfg.sample_rate)
            events["interruptions"].append({"user_start": onset, "system_stop": stop})
            turn.update(reply_end=stop, interrupted=True)
            prefix = rng.choice(INTERRUPTIONS)
            t = onset
        else:
            end = words[-1][2]
            if len(words) >= 3 and rng.random() < cfg.p_backchannel:
                bc = b.say(USER_CHANNEL, Utterance.plain(rng.choice(BACKCHANNELS)),
                           u(words[1][1], max(words[1][1], words[-2][1])), voice_u, rate, pitch)
                events["backchannels"].append({"start": bc.words[0][1], "end": bc.words[-1][2],
                                               "word": " ".join(w[0] for w in bc.words)})
                end = max(end, bc.words[-1][2])
            t = end + u(*cfg.turn_gap)
        turns.append(turn)
    speech_end = max(c.words[-1][2] for ch in b.clips.values() for c in ch if c.words)
    duration = speech_end + u(0.6, 1.0)
    audio = b.render(duration)
    meta = {"sample_rate": cfg.sample_rate, "duration": duration, "style": style.name,
            "user_voice": voice_u.name if not cfg.held else voice_u.id,
            "system_voice": voice_s.name if not cfg.held else voice_s.id, "channels": {"user": 0, "system": 1},
            "turns": turns, "events": events}
    if cfg.held:
        meta |= user_channel_conditions(cfg, rng, audio) | {"formant": formant, "approximate_times": b.approximate_times,
                                                             "split": cfg.split_meta()}
    meta["recordings"] = b.recordings
    return audio, meta, b.words()


def _drawn_conversation(cfg: CorpusConfig, i: int):
    """Conversation `i`, drawn again from a seed outside every conversation's own (`+ attempt << 40`) where an engine
    fails on it (festival's diphone voices abort on "what is" at rate 0.65, pitch 0.6); recorded as `redrawn`."""
    seed = cfg.seed * 1_000_003 + i
    for attempt in range(REDRAWS + 1):
        try:
            audio, meta, words = build_conversation(cfg, seed + (attempt << 40))
        except SynthError as e:
            failure = e
            continue
        if attempt:
            meta["redrawn"] = {"attempts": attempt, "first_failure": str(failure)[:200]}
        return audio, meta, words
    raise SynthError(f"conversation {i}: {REDRAWS + 1} draws failed, the last: {failure}")


def _write_conversation(cfg: CorpusConfig, out: Path, i: int, reuse: bool = False) -> tuple[str, str, float, dict[str, list]]:
    """Build conversation `i` (a pure function of the seed and i) and write its wav and meta; with `reuse`, one
    an interrupted run of the same config finished (its meta, written last, holds the words) is read back."""
    if reuse:
        for path in (out / "meta").glob(f"*-{cfg.seed:03d}-{i:05d}.json"):
            meta = json.loads(path.read_text())
            if "words" in meta and (out / "wav" / f"{meta['id']}.wav").is_file():
                return meta["id"], meta["style"], meta["duration"], {ch: list(map(tuple, ws)) for ch, ws in meta["words"].items()}
    audio, meta, words = _drawn_conversation(cfg, i)
    conv_id = meta["id"] = f"{meta['style']}-{cfg.seed:03d}-{i:05d}"
    sf.write(out / "wav" / f"{conv_id}.wav", audio.T, cfg.sample_rate, subtype="PCM_16")
    meta["words"] = {ch: [list(w) for w in ws] for ch, ws in words.items()}
    tmp = out / "meta" / f"{conv_id}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out / "meta" / f"{conv_id}.json")
    return conv_id, meta["style"], meta["duration"], words


def corpus_config(data_dir: str | Path) -> CorpusConfig:
    """The settings a data dir was synthesised with; a data dir without them (made by another
    recipe) gets the defaults."""
    path = Path(data_dir) / CORPUS_CONFIG
    return config_io.load(CorpusConfig, path) if path.is_file() else CorpusConfig()


def synthesize_corpus(cfg: CorpusConfig, out: Path, num_workers: int = 1, progress: bool = False) -> DataDir:
    """Write the corpus; `num_workers` processes share the conversations (the output does not
    depend on it: every conversation is seeded by its index)."""
    cfg.check()
    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "meta").mkdir(exist_ok=True)
    # the settings of a run in progress: a run of the same settings after an interruption reuses its conversations
    partial = out / (CORPUS_CONFIG + ".partial")
    reuse = _says(partial, cfg)
    config_io.save(cfg, partial)
    wav_scp, utt2spk, text, utt2dur, ctm = {}, {}, {}, {}, {USER_CHANNEL: [], SYSTEM_CHANNEL: []}
    work = functools.partial(_write_conversation, cfg, out, reuse=reuse)
    indices = range(cfg.num_conversations)
    bar = tqdm(total=cfg.num_conversations, desc=out.name, disable=not progress, unit="conv")
    with worker_pool(num_workers) as pool:
        for conv_id, style, duration, words in pool.imap(work, indices, chunksize=8):
            wav_scp[conv_id] = f"wav/{conv_id}.wav"
            utt2spk[conv_id] = style
            text[conv_id] = " ".join(w[0] for w in words[SYSTEM_CHANNEL])
            utt2dur[conv_id] = duration
            for ch in ctm:
                ctm[ch] += [CtmEntry(conv_id, ch, s, e - s, w) for w, s, e in words[ch]]
            bar.update()
    bar.close()
    for ch, name in ((USER_CHANNEL, "user.ctm"), (SYSTEM_CHANNEL, "system.ctm")):
        write_ctm(out / name, ctm[ch])
    config_io.save(cfg, out / CORPUS_CONFIG)
    partial.unlink()
    d = DataDir(wav_scp=wav_scp, utt2spk=utt2spk, text=text, utt2dur=utt2dur, path=out)
    d.save(out)
    return d.validate()


def _says(settings: Path, cfg: CorpusConfig) -> bool:
    """Whether the settings file `settings` exists and holds `cfg` (a corpus.yaml, or a run's corpus.yaml.partial)."""
    return settings.is_file() and config_io.to_dict(config_io.load(CorpusConfig, settings)) == config_io.to_dict(cfg)


def is_complete(cfg: CorpusConfig, out: Path) -> bool:
    """Whether `out` already holds this corpus, whole: its settings file says `cfg` and its data dir loads
    (written last, after every conversation), so an interrupted recipe stage resumes past the parts it finished."""
    out = Path(out)
    if not ((out / "wav.scp").is_file() and _says(out / CORPUS_CONFIG, cfg)):
        return False
    try:
        DataDir.load(out, check_audio=False)
    except ValueError:
        return False
    return True


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, nargs="*", default=[], help="base config, then deltas")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--nj", type=int, default=1, help="worker processes (the corpus does not depend on it)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="synthesise even if --out already holds this corpus")
    args = p.parse_args(argv)
    if args.nj < 1:
        p.error(f"--nj must be >= 1, got {args.nj}")
    cfg = load_configs(CorpusConfig, args.config, parse_overrides(args.set))
    if not args.overwrite and is_complete(cfg, args.out):
        print(f"{args.out}: holds this corpus already ({CORPUS_CONFIG} matches), left as it is")
        return
    d = synthesize_corpus(cfg, args.out, num_workers=args.nj, progress=not args.no_progress)
    hours = sum(d.utt2dur.values()) / 3600
    print(f"{args.out}: {len(d.utts)} conversations, {hours * 60:.1f} min")


if __name__ == "__main__":
    main()
