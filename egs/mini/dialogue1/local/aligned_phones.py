"""Can a frame phone classifier hear the same phones at every style pitch? (analysis for RESULTS.md)

    python local/aligned_phones.py --train DATA_DIR --test DATA_DIR --out DIR [--utts 4000] [--steps 2000]
        [--codec-data CODEC_DATA_DIR ... --codec-heldout CODEC_DATA_DIR]

A phones codec's tokens are a function of its frame classifier's decisions, and a reader of those
decisions tells the pitch-only styles apart (97 % on `ph2`; docs/history.md). This asks whether
the classifier's training can take that out, before a codec is trained again. User utterances drawn with
--train's corpus settings (questions, interruption prefixes, backchannels; with `--sentences fortune`, the
codec corpus's sentences instead) are spoken by flite at each style's pitch. flite keeps the timing when
only the pitch changes, so the three renderings share one phone labelling. A classifier of the codec's
shape (`codec.model.PhoneInput`) is trained on crops of them (`--crops utterance`: one utterance on the
frame grid, as the codec's sampler cuts; `conversation`: one to three, pause fragments too, anywhere on
the sample grid, as a user channel holds them) in arms:

    one_pitch       each utterance at one of the pitches, cross-entropy (what a corpus gives)
    three_pitches   all three renderings, cross-entropy on each
    consistent      the same, plus the divergence of each rendering's posteriors from their mean

With `--codec-data` the classifier also learns the codec corpus (69 voices of three engines, one rendering
each): each utterance of a crop is one of its utterances with probability `--codec-share`, and
`--codec-heldout` scores it on the corpus's held-out voices. That is the classifier a general codec can
freeze (`recipes.codec.assemble --phone-classifier`): it must recognise other voices and still leave the
dialogue user's style out.

Each arm is scored on held-out utterances (frame accuracy, decisions kept across pitches), then by the
sequence reader (local/decisions.py), trained on its decisions of the user channel of the --train
conversations and scored on the --test conversations, and on the first --twins of them built again with
every user at one style's pitch (`build_conversation(user_pitch=...)`). At one pitch for all, the reader
has only what is not the pitch: chance, unless the corpus gives the style away some other way.
The classifier trains on the test's exact nuisance (the three style pitches) and, with the dialogue's
sentences, its templates (other draws): the most favourable case for this corpus. Everything is cached
in DIR, per arm. Findings: egs/mini/dialogue1/RESULTS.md, second session of 2026-12-02.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from codec.config import SemanticInputConfig, preset
from codec.frontend import MelFrontend
from codec.model import PhoneInput
from codec.transformer import TransformerConfig
from decisions import cached, sequences, user_decisions, views
from safetensors.torch import load_file, save_file
from recipes.codec.prepare import load_utterance
from recipes.ctm import frame_labels, group_by_utt, read_ctm
from recipes.datadir import DataDir
from recipes.dialogue.sequence_probe import fit_reader, reader_accuracy
from recipes.dialogue.synth import build_conversation, corpus_config, speech_from_first_word
from recipes.synth.flite import synthesize
from recipes.dialogue.tasks import BACKCHANNELS, INTERRUPTIONS, STYLES, Utterance, draw_exchange
from recipes.synth.base import SynthError
from recipes.synth.phones import PHONE_IDS, PHONES, SILENCE
from recipes.synth.text import fortune_sentences

ARMS = ("one_pitch", "three_pitches", "consistent")
IGNORE = -100
VIEWS = ("decisions", "phone string (runs collapsed)")
DEFAULT_RECOGNIZER = (SemanticInputConfig().recognizer.dim, SemanticInputConfig().recognizer.num_layers)


def draw_utterances(data_dir: Path, n: int, seed: int, fragments: bool = False, fortune: bool = False
                    ) -> list[Utterance]:
    """What the corpus's user says, drawn with its settings: questions (a fifth after an interruption
    word) and, one in seven, a backchannel. `fragments`: a question is cut in two where the corpus would
    put a pause in it (as often as its p_pause), and both parts are kept, each spoken on its own.
    `fortune`: sentences of the codec corpus's pool (recipes.synth.text) instead: none of the dialogue's words."""
    cfg, rng = corpus_config(data_dir), random.Random(seed)
    pool = fortune_sentences() if fortune else None
    out = []
    while len(out) < n:
        if pool is not None:
            q = Utterance.plain(rng.choice(pool).spoken)
        elif rng.random() < 1 / 7:
            out.append(Utterance.plain(rng.choice(BACKCHANNELS)))
            continue
        else:
            q = draw_exchange(rng.choice(cfg.tasks), rng, cfg.arithmetic_entries, cfg.counting_reply,
                              cfg.count_lengths).question
        if fragments and len(q.words) >= 3 and rng.random() < cfg.p_pause:
            cut = rng.randint(2, len(q.words) - 1)
            out += [Utterance(q.words[:cut], q.spoken[:cut]), Utterance(q.words[cut:], q.spoken[cut:])]
        else:
            out.append(Utterance.plain(rng.choice(INTERRUPTIONS)) + q if pool is None and rng.random() < 0.2 else q)
    return out[:n]


def render_aligned(utt: Utterance, voice: str, rms: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(audio [pitches, N] at every style pitch, a phone id per sample [N]) of one utterance, cut at its
    first word as the corpus cuts it, and cut to the shortest (the tail after the last phone differs by a
    few pitch periods). The phones are the renderings' shared ones: flite's timing does not change with
    the pitch, and that is checked here."""
    audio, phones = [], None
    for style in STYLES.values():
        syn = synthesize(utt.tts_text, voice, 1.0, style.pitch)
        if not syn.words:
            raise ValueError(f"flite {voice}: no word times for {utt.tts_text!r}")
        cut = int(round(syn.words[0].start * sr))
        audio.append(speech_from_first_word(syn, rms))
        these = [(p.label, p.start - cut / sr, p.end - cut / sr) for p in syn.phones]
        if phones is not None and [(p, round(a, 3), round(b, 3)) for p, a, b in these] != \
                [(p, round(a, 3), round(b, 3)) for p, a, b in phones]:
            raise ValueError(f"flite {voice}: {utt.tts_text!r} at pitch {style.pitch} has other phone times")
        phones = these
    n = min(len(a) for a in audio)
    t = np.arange(n) / sr
    labels = np.full(n, PHONE_IDS[SILENCE], dtype=np.int8)
    for label, start, end in phones:
        labels[(t >= start) & (t < end)] = PHONE_IDS[label]
    return np.stack([a[:n] for a in audio]), labels


def as_items(arrays: dict[str, np.ndarray]) -> list:
    """audio{i} (int16, [pitches, N]) and lab{i} arrays, as `cached` reads them back → [(audio [pitches, N]
    float32, phone id per sample [N] int64)]."""
    return [(torch.from_numpy(arrays[f"audio{i}"].astype(np.float32) / 32767),
             torch.from_numpy(arrays[f"lab{i}"].astype(np.int64))) for i in range(len(arrays) // 2)]


def build_set(path: Path, utts: list[Utterance], voice: str, rms: float, sr: int) -> list:
    """[(audio [pitches, N] float32, phone id per sample [N])], rendered once and cached in `path` (int16)."""
    def render() -> dict[str, np.ndarray]:
        rendered = []
        for u in tqdm(utts, desc="flite x3", mininterval=30):
            try:
                rendered.append(render_aligned(u, voice, rms, sr))
            except (ValueError, SynthError) as e:  # no word times, or timing that moved with the pitch
                print(f"skipped: {e}", flush=True)
        return {**{f"audio{i}": (a * 32767).astype(np.int16) for i, (a, _) in enumerate(rendered)},
                **{f"lab{i}": lab for i, (_, lab) in enumerate(rendered)}}
    return as_items(cached(path, render))


def load_codec_corpus(path: Path, data_dirs: list[Path], sr: int) -> list:
    """[(audio [1, N], phone id per sample [N])] of codec-corpus data dirs (wav.scp + phones.ctm: many
    voices, one rendering each), cached in `path` (int16) as `build_set`'s renderings are."""
    def load() -> dict[str, np.ndarray]:
        arrays = {}
        for d in data_dirs:
            data = DataDir.load(d)
            ctm = group_by_utt(read_ctm(d / "phones.ctm"))
            for utt in tqdm(data.utts, desc=f"load {d.name}", mininterval=30):
                if utt not in ctm:
                    raise ValueError(f"{d}: {utt} has no phones in phones.ctm")
                wav = load_utterance(data, utt, sr)
                i = len(arrays) // 2
                arrays[f"audio{i}"] = (np.clip(wav, -1, 1)[None] * 32767).astype(np.int16)
                arrays[f"lab{i}"] = frame_labels(ctm[utt], sr, len(wav), list(PHONES)).astype(np.int8)
        if not arrays:
            raise ValueError(f"no utterances in {[str(d) for d in data_dirs]}")
        return arrays
    return as_items(cached(path, load))


def classifier(mel_cfg, dim: int, layers: int) -> PhoneInput:
    """A PhoneInput whose recognizer is `dim` wide and `layers` deep (the codec's default: `--recognizer`'s); a codec
    that freezes another shape needs the same `codec_overrides.semantic_input.recognizer` (no recipe option sets it)."""
    recognizer = TransformerConfig(dim=dim, num_layers=layers)
    return PhoneInput(mel_cfg, SemanticInputConfig(kind="phones", n_units=len(PHONES), recognizer=recognizer), 128, 4)


def layout_utterance(items: list, rng: random.Random, hop: int, pick) -> list[tuple[int, int]]:
    """One utterance per crop (item `pick(rng)`), after 0–30 frames of silence, on the frame grid:
    [(item, start sample)]."""
    return [(pick(rng), rng.randint(0, 30) * hop)]


def layout_conversation(items: list, rng: random.Random, hop: int, pick, max_len: int = 6 * 16000
                        ) -> list[tuple[int, int]]:
    """One to three utterances per crop as a user channel holds them: 0–0.5 s of silence first, 0.1–1.5 s
    between, anywhere on the sample grid (a conversation does not start its turns on frame boundaries)."""
    out, t = [], rng.randint(0, 8000)
    for _ in range(rng.choice((1, 2, 3))):
        i = pick(rng)
        if out and t + items[i][1].shape[0] > max_len:
            break
        out.append((i, t))
        t += items[i][1].shape[0] + rng.randint(1600, 24000)
    return out


def collate(items: list, layouts: list, frontend: MelFrontend) -> tuple[torch.Tensor, torch.Tensor]:
    """→ log-mel [B, pitches, n_mels, T], frame labels [B, T] (the phone at each frame's centre; the padding
    after a crop's last utterance is not scored). An item with one rendering fills every pitch's row."""
    hop = frontend.cfg.hop_length
    ends = [max(t + items[i][1].shape[0] for i, t in lay) for lay in layouts]
    n = -(-max(ends) // hop) * hop
    audio = torch.zeros(len(layouts), max(items[i][0].shape[0] for lay in layouts for i, _ in lay), n)
    labels = torch.full((len(layouts), n), PHONE_IDS[SILENCE])
    for b, lay in enumerate(layouts):
        for i, t in lay:
            a, y = items[i]
            audio[b, :, t:t + y.shape[0]] = a
            labels[b, t:t + y.shape[0]] = y
        labels[b, ends[b]:] = IGNORE
    with torch.no_grad():
        mel = frontend(audio.flatten(0, 1)).unflatten(0, audio.shape[:2])
    return mel, labels[:, hop // 2::hop]


def train_arm(arm: str, train: list, frontend: MelFrontend, layout, steps: int, batch: int, consistency: float,
              seed: int, n_codec: int = 0, codec_share: float = 0.0, size: tuple[int, int] = DEFAULT_RECOGNIZER) -> PhoneInput:
    """`train`'s last `n_codec` items are codec-corpus utterances: each utterance slot of a crop is one of
    them with probability `codec_share`."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    n_own = len(train) - n_codec

    def pick(r: random.Random) -> int:
        return n_own + r.randrange(n_codec) if n_codec and r.random() < codec_share else r.randrange(n_own)
    model = classifier(frontend.cfg, *size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.05, 1 - s / steps))
    bar = tqdm(range(steps), desc=arm, mininterval=30)
    for _ in bar:
        mel, lab = collate(train, [layout(train, rng, frontend.cfg.hop_length, pick) for _ in range(batch)], frontend)
        if arm == "one_pitch":
            row = torch.tensor([rng.randrange(mel.shape[1]) for _ in range(batch)])
            mel = mel[torch.arange(batch), row][:, None]
        b, p = mel.shape[:2]
        logits = model.frame_logits(mel.flatten(0, 1)).unflatten(0, (b, p))  # [B, P, T, C]
        loss = F.cross_entropy(logits.flatten(0, 2), lab[:, None].expand(b, p, -1).flatten(), ignore_index=IGNORE)
        if arm == "consistent":
            logp = logits.log_softmax(-1)
            mean = logp.exp().mean(1, keepdim=True).clamp_min(1e-8).log()
            js = (logp.exp() * (logp - mean)).sum(-1).mean(1)  # [B, T]: the divergence of each rendering from the mean
            loss = loss + consistency * js[lab != IGNORE].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


def heldout_scores(model: PhoneInput, held: list, frontend: MelFrontend) -> dict:
    """Frame accuracy per style pitch and the share of frames decided the same as at the calm pitch, on
    held-out utterances alone, each from the first sample."""
    names = list(STYLES)
    correct, same, frames = np.zeros(len(names)), np.zeros(len(names)), 0
    with torch.no_grad():
        for i in range(len(held)):
            mel, lab = collate(held, [[(i, 0)]], frontend)
            scored = lab[0] != IGNORE
            dec = model.frame_logits(mel[0]).argmax(-1)[:, scored]  # [P, T]
            correct += (dec == lab[0, scored]).float().sum(-1).numpy()
            same += (dec == dec[0]).float().sum(-1).numpy()
            frames += int(scored.sum())
    return {"accuracy": dict(zip(names, (correct / frames).round(4).tolist())),
            "kept_from_calm": dict(zip(names[1:], (same[1:] / frames).round(4).tolist()))}


def classifier_decisions(model: PhoneInput, frontend: MelFrontend):
    """The classifier as a `decisions.user_decisions` decider (the channel cut to whole frames)."""
    hop = frontend.cfg.hop_length

    def decide(user: np.ndarray, sr: int) -> np.ndarray:
        if sr != frontend.cfg.sample_rate:
            raise ValueError(f"{sr} Hz audio, the classifier's mel is at {frontend.cfg.sample_rate} Hz")
        wav = torch.from_numpy(np.ascontiguousarray(user[: len(user) // hop * hop]))
        with torch.no_grad():
            return model.frame_logits(frontend(wav[None]))[0].argmax(-1).numpy().astype(np.int16)
    return decide


def twin_decisions(decide, data_dir: Path, n: int, pitch: float) -> dict[str, np.ndarray]:
    """The first n conversations of data_dir built again with the user at F0 factor `pitch` (their pitch
    twins: same words, timings and system audio), → decisions keyed as `user_decisions`'."""
    cfg = corpus_config(data_dir)
    ids = [line.split()[0] for line in (data_dir / "wav.scp").read_text().splitlines() if line.strip()][:n]
    out = {}
    for cid in tqdm(ids, desc=f"{data_dir.name} at x{pitch}", mininterval=30):
        style, seed, i = cid.split("-")
        audio, meta, _ = build_conversation(cfg, int(seed) * 1_000_003 + int(i), user_pitch=pitch)
        if meta["style"] != style:
            raise ValueError(f"{data_dir}: {cid} rebuilt as a {meta['style']} conversation (not this corpus's settings?)")
        out[f"{style}/{cid}"] = decide(audio[meta["channels"]["user"]], cfg.sample_rate)
    return out


def kept(a: dict[str, np.ndarray], b: dict[str, np.ndarray], sil: int) -> float:
    """Share of frames decided alike in two renderings of the same conversations, over the frames where
    either hears speech."""
    same = total = 0
    for k in a:
        x, y = a[k], b[k][: len(a[k])]
        speech = (x[: len(y)] != sil) | (y != sil)
        same += int((x[: len(y)] == y)[speech].sum())
        total += int(speech.sum())
    return same / max(1, total)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, required=True, help="pitch-only training conversations (and their settings)")
    p.add_argument("--test", type=Path, required=True, help="pitch-only test conversations")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--utts", type=int, default=4000, help="utterances rendered at the three pitches (a tenth held out)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--consistency", type=float, default=5.0)
    p.add_argument("--twins", type=int, default=600, help="test conversations built again at each style's pitch")
    p.add_argument("--crops", choices=("utterance", "conversation"), default="utterance",
                   help="what a training crop holds: one utterance on the frame grid, or one to three (pause "
                        "fragments too) anywhere on the sample grid, as a user channel holds them")
    p.add_argument("--sentences", choices=("dialogue", "fortune"), default="dialogue",
                   help="what is rendered: the corpus's own user utterances, or the codec corpus's sentences")
    p.add_argument("--codec-data", type=Path, nargs="+", default=[],
                   help="codec-corpus data dirs (wav.scp, phones.ctm) trained on too: many voices, one rendering each")
    p.add_argument("--codec-heldout", type=Path, nargs="*", default=[],
                   help="codec-corpus data dirs scored: frame accuracy on other voices and sentences")
    p.add_argument("--codec-share", type=float, default=0.5,
                   help="with --codec-data: the share of a crop's utterances drawn from it")
    p.add_argument("--recognizer", type=int, nargs=2, default=list(DEFAULT_RECOGNIZER), metavar=("DIM", "LAYERS"),
                   help="the classifier's transformer: width and depth (default: the codec's). For the screen: "
                        "codec1 run.sh --phone_classifier builds the codec with the default shape only")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 0 <= args.codec_share <= 1:
        p.error(f"--codec-share is a share of a crop's utterances, in [0, 1], not {args.codec_share}")
    args.out.mkdir(parents=True, exist_ok=True)
    mel_cfg = preset("duet_cpu16k").mel
    frontend = MelFrontend(mel_cfg)
    cfg = corpus_config(args.train)
    utts = draw_utterances(args.train, args.utts, args.seed + 1000, fragments=args.crops == "conversation",
                           fortune=args.sentences == "fortune")
    data = build_set(args.out / "aligned_audio.npz", utts, cfg.user_voice, cfg.rms, mel_cfg.sample_rate)
    layout = {"utterance": layout_utterance, "conversation": layout_conversation}[args.crops]
    n_held = len(data) // 10
    held, train = data[:n_held], data[n_held:]
    codec_train = load_codec_corpus(args.out / "codec_train.npz", args.codec_data, mel_cfg.sample_rate) \
        if args.codec_data else []
    codec_held = load_codec_corpus(args.out / "codec_heldout.npz", args.codec_heldout, mel_cfg.sample_rate) \
        if args.codec_heldout else []
    sil = PHONES.index(SILENCE)
    for arm in args.arms:
        arm_dir = args.out / arm
        arm_dir.mkdir(exist_ok=True)
        weights = arm_dir / "classifier.safetensors"
        if weights.exists():
            model = classifier(mel_cfg, *args.recognizer)
            model.load_state_dict(load_file(weights))
            model.eval()
        else:
            model = train_arm(arm, train + codec_train, frontend, layout, args.steps, args.batch, args.consistency,
                              args.seed, len(codec_train), args.codec_share, tuple(args.recognizer))
            save_file(model.state_dict(), arm_dir / "classifier.tmp.safetensors")
            (arm_dir / "classifier.tmp.safetensors").rename(weights)
        result_path = arm_dir / "result.json"
        if result_path.exists() and "twins" in json.loads(result_path.read_text()):
            print(arm, json.loads(result_path.read_text()), flush=True)
            continue
        result = {"arm": arm, "crops": args.crops, "sentences": args.sentences, "steps": args.steps, "batch": args.batch, "utterances": len(train),
                  "codec_utterances": len(codec_train), "codec_share": args.codec_share if codec_train else 0.0,
                  "recognizer": args.recognizer,
                  **heldout_scores(model, held, frontend)}
        if codec_held:
            result["codec_heldout_accuracy"] = heldout_scores(model, codec_held, frontend)["accuracy"]["calm"]
        print(arm, result, flush=True)
        decide = classifier_decisions(model, frontend)
        arrays = cached(arm_dir / "decisions.npz", lambda: {
            **{f"train/{k}": v for k, v in user_decisions(decide, args.train).items()},
            **{f"test/{k}": v for k, v in user_decisions(decide, args.test).items()}})
        twins = {name: cached(arm_dir / f"twins_{name}.npz",
                              lambda s=style: twin_decisions(decide, args.test, args.twins, s.pitch))
                 for name, style in STYLES.items()}
        result["twins"] = {"conversations": args.twins,
                           "kept_from_calm": {n: kept(twins["calm"], t, sil) for n, t in twins.items() if n != "calm"}}
        styles = sorted({k.split("/")[1] for k in arrays})
        result["reader"] = {}
        for name in VIEWS:
            view = views(list(PHONES))[name]
            reader, val, epoch, _ = fit_reader(*sequences(arrays, "train/", view, styles), len(PHONES), len(styles))
            scores = {"test": reader_accuracy(reader, *sequences(arrays, "test/", view, styles)), "val": val, "epoch": epoch}
            scores.update({f"test, every user at the {n} pitch": reader_accuracy(reader, *sequences(t, "", view, styles))
                           for n, t in twins.items()})
            result["reader"][name] = scores
            print(f"{arm} / {name}: {scores}", flush=True)
        result["silence_frames_test"] = float(np.mean([np.mean(arrays[k] == sil) for k in arrays if k.startswith("test/")]))
        result_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
