"""Streaming full-duplex demo: a user recording in, the system's spoken answer out.

    python -m dialogue.demo --user in.wav --out out_dir [--codec PATH] [--model PATH] [--realtime]
    python -m dialogue.demo --bundled --out out_dir      # bundled conversation + checkpoint
    python -m dialogue.demo --live 30 --out out_dir      # 30 s from the microphone, system on the speaker

The user's audio is streamed in 80 ms steps through the streaming codec encoder, the dialogue
model and the streaming codec decoder (`dialogue.pipeline`). Writes `duplex.wav` (stereo: user
left, system right, on one clock), `monologue.ctm` (the inner monologue with timings),
`timeline.png` (both streams and the monologue), `summary.json` and, when the model has a listening
head, `heard.ctm` (the user's words as the model heard them); prints per-step latency (mean,
p95), the real-time factor and the theoretical latency computed from the configuration. A stereo
`--user` file is read as (user, system): its left channel is the user. `--live` (needs sounddevice
and PortAudio: `dialogue.live`) listens to the microphone and plays the system on the loudspeaker
as it is decoded; use headphones, or the system hears itself.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from importlib import resources
from pathlib import Path

import soundfile as sf
import torch

from codec import load_codec
from codec.api import Codec, codec_identity, default_checkpoint, intra_op_threads
from codec.config import preset
from codec.model import SpeechCodec
from codec.audio import load_audio, to_mono_batch

from .checkpoint import PAIRED_CODEC, DialogueBundle, dialogue_codec_id, load_dialogue, paired_codec
from .layout import Word
from .live import MicrophoneSource
from .pipeline import DuplexRun, run_duplex, stream_duplex
from .session import SamplingConfig

ASSETS = "assets"
BUNDLED_MODEL, BUNDLED_CONVERSATION = "dialogue.safetensors", "conversation.flac"


def asset(name: str) -> Path:
    return Path(str(resources.files("dialogue").joinpath(ASSETS, name)))


def untrained_codec(preset_name: str = "duet_cpu16k", seed: int = 0) -> Codec:
    """A seeded untrained codec for tests and --tiny recipe runs (never a stand-in for a missing one):
    random weights, rounded to float16 as a saved codec is, so a checkpoint written with `.save()` and this
    object have the same id and tokens."""
    torch.manual_seed(seed)
    model = SpeechCodec(preset(preset_name))
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    return Codec(model, codec_identity(model), f"untrained {preset_name} (seed {seed})")


def load_demo_codec(path: Path | None, model: Path | None = None) -> Codec:
    """`path` (--codec); else the codec the dialogue checkpoint `model` was trained on (`paired_codec`: the
    one it ships, a recipe's exp/codec.safetensors or the general bundled codec); else the bundled codec.
    A codec that cannot be had is an error that says where it was looked for, never an untrained stand-in."""
    if path is not None:
        return load_codec(path)
    if model is not None and model.is_file():
        found = paired_codec(model, default_checkpoint())
        if found is None:
            raise FileNotFoundError(
                f"{model}: trained on the tokens of codec {dialogue_codec_id(model)}, and no codec of that id is at "
                f"{model.parent / PAIRED_CODEC}, {model.parent.parent / PAIRED_CODEC} or {default_checkpoint()}; "
                f"pass it with --codec")
        return load_codec(found)
    return load_codec(None)


def load_bundle(args, codec: Codec) -> DialogueBundle:
    """The dialogue checkpoint `args.model` (default: the bundled one), which must have been trained on
    `codec`'s tokens: another codec's tokens would run a model that never learned them."""
    path = args.model if args.model is not None else asset(BUNDLED_MODEL)
    if not path.is_file():
        hint = "" if args.model is not None else " (the bundled model is made by egs/mini/dialogue1/run.sh --bundle true)"
        raise FileNotFoundError(f"{path}: no dialogue checkpoint{hint}")
    trained_on = dialogue_codec_id(path)
    if trained_on not in (codec.codec_id, "any"):
        given = getattr(args, "codec", None)
        raise ValueError(f"{path} was trained on the tokens of codec {trained_on}, but the codec "
                         f"{given or 'in use'} is codec {codec.codec_id}: leave out --codec to use the codec the "
                         f"model was trained on, or give a codec whose id is {trained_on}")
    return load_dialogue(path, codec_id=codec.codec_id)


def load_user(path: Path, codec: Codec) -> torch.Tensor:
    wav, sr = load_audio(path)
    return to_mono_batch(wav[:1], sr, codec.sample_rate)  # [1, N]: the left channel is the user


def write_words_ctm(path: Path, channel: str, words: list[Word]) -> None:
    """Words with timings as a CTM of the recording `duplex` (channel 1: user, 2: system)."""
    path.write_text("".join(f"duplex {channel} {w.start:.3f} {w.end - w.start:.3f} {w.word}\n" for w in words))


def plot_timeline(run: DuplexRun, words: list[Word], path: Path, title: str, heard: list[Word] = ()) -> None:
    """Both streams on one clock, the inner monologue's words at their emission times and (with a
    listening head) the user's words as the model heard them, over the user's waveform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sr = run.sample_rate
    t = torch.arange(run.user_audio.shape[1]) / sr
    fig, axes = plt.subplots(3, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [1, 1, 1.3]})
    for ax, sig, name, color in ((axes[0], run.user_audio[0], "user\n(input)", "tab:blue"),
                                 (axes[1], run.system_audio[0], "system\n(output)", "tab:red")):
        ax.plot(t[::4], sig[::4], lw=0.4, color=color)
        ax.set_ylabel(name)
        ax.set_ylim(-1, 1)
    axes[1].axvspan(0, run.output_offset, color="grey", alpha=0.25, lw=0)
    for i, w in enumerate(heard):
        axes[0].text(w.start, 0.85 - 0.25 * (i % 2), w.word[:12], fontsize=7, va="center", color="navy")
    for i, w in enumerate(words):
        axes[2].text(w.start, 3 - i % 4, w.word[:12], fontsize=7, va="center")
        axes[2].plot([w.start, w.start], [3.4 - i % 4, 2.6 - i % 4], color="k", lw=0.5)
    axes[2].set_ylim(-0.8, 3.8)
    axes[2].set_yticks([])
    axes[2].set_ylabel("inner\nmonologue")
    axes[2].set_xlabel("seconds on the user's clock (grey: one step + codec latency, before any output can play)")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@contextlib.contextmanager
def _stop_on_ctrl_c(source: MicrophoneSource):
    """Ctrl-C ends a live conversation at the next step (the outputs are still written)."""
    previous = signal.signal(signal.SIGINT, lambda *_: source.stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--user", type=Path, help="user audio (wav/flac; stereo: left channel)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--codec", type=Path, default=None, help="codec checkpoint (default: the one the "
                   "model was trained on: beside it, one folder up, or the bundled general codec)")
    p.add_argument("--model", type=Path, default=None, help="dialogue checkpoint (default: the bundled one)")
    p.add_argument("--bundled", action="store_true", help="use the bundled conversation as --user")
    p.add_argument("--realtime", action="store_true", help="pace the steps by the wall clock")
    p.add_argument("--live", type=float, default=None, metavar="SECONDS",
                   help="listen to the microphone for SECONDS and play the system live (sounddevice)")
    p.add_argument("--device", default=None, help="sounddevice device (name or index) for --live")
    p.add_argument("--seed", type=int, default=0)
    SamplingConfig.add_arguments(p)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if sum((args.user is not None, args.bundled, args.live is not None)) != 1:
        p.error("give exactly one of --user PATH, --bundled and --live SECONDS")
    if args.live is not None and args.live <= 0:
        p.error(f"--live SECONDS must be > 0, got {args.live}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    with intra_op_threads(args.threads):  # the caller's thread count comes back (an in-process call leaks nothing)
        return _demo(args, p)


def _demo(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    try:
        codec = load_demo_codec(args.codec, args.model or asset(BUNDLED_MODEL))
        bundle = load_bundle(args, codec)
    except (FileNotFoundError, ValueError) as e:
        p.exit(2, f"dialogue.demo: {e}\n")
    cfg = bundle.model.cfg
    sampling = SamplingConfig.from_args(args)
    voice = bundle.system_voice if cfg.system_voice else None
    if args.live is not None:
        user_path = Path("microphone")
        source = MicrophoneSource(codec.sample_rate, cfg.streams.frames_per_step * codec.config.samples_per_token,
                                  args.live, args.device)
        print(f"live: listening for {args.live:g} s (Ctrl-C stops early); the system plays on the loudspeaker")
        try:
            with _stop_on_ctrl_c(source):
                run = stream_duplex(codec, bundle.model, source, voice, sampling, args.seed)
        except (ImportError, OSError, RuntimeError) as e:
            p.exit(2, f"dialogue.demo --live: {e}\n")
    else:
        user_path = args.user or asset(BUNDLED_CONVERSATION)
        user = load_user(user_path, codec)
        run = run_duplex(codec, bundle.model, user, voice, sampling, args.seed, args.realtime)
    realtime = args.realtime or args.live is not None
    words = run.words(0, bundle.tokenizer)
    heard = run.heard_words(0, bundle.tokenizer)
    args.out.mkdir(parents=True, exist_ok=True)
    sf.write(args.out / "duplex.wav", run.stereo(0).numpy(), run.sample_rate, subtype="PCM_16")
    write_words_ctm(args.out / "monologue.ctm", "2", words)
    if run.heard_tokens is not None:
        write_words_ctm(args.out / "heard.ctm", "1", heard)
    plot_timeline(run, words, args.out / "timeline.png",
                  f"{user_path.name}: {cfg.name}{'' if bundle.trained else ' (UNTRAINED)'}", heard)
    mean, p95 = run.latency_ms
    step_ms = 1000 * cfg.streams.step_seconds
    delay_steps = max(0, cfg.delays.system - cfg.delays.user)
    summary = {"user": str(user_path), "model": cfg.name, "trained": bundle.trained, "codec_id": codec.codec_id,
               "steps": len(run.step_times), "step_ms": step_ms, "latency_mean_ms": mean, "latency_p95_ms": p95,
               "rtf": run.rtf, "realtime": realtime, "late_steps": run.late_steps, "theoretical_latency_ms": cfg.theoretical_latency_ms,
               "monologue": " ".join(w.word for w in words),
               "heard": " ".join(w.word for w in heard) if run.heard_tokens is not None else None}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"inner monologue: {summary['monologue'] or '(silent)'}")
    if summary["heard"] is not None:
        print(f"heard (listening head): {summary['heard'] or '(nothing)'}")
    print(f"per-step compute latency: mean {mean:.1f} ms, p95 {p95:.1f} ms (budget {step_ms:.0f} ms per step); "
          f"RTF {run.rtf:.3f} over {len(run.step_times)} steps"
          + (f"; realtime: {run.late_steps} step(s) missed their {step_ms:.0f} ms deadline" if realtime else ""))
    print(f"theoretical latency {cfg.theoretical_latency_ms:.0f} ms = one step {step_ms:.0f} ms + system audio delay "
          f"{delay_steps} step(s) {delay_steps * step_ms:.0f} ms + codec algorithmic latency "
          f"{cfg.streams.codec_latency_ms:.0f} ms")
    print(f"wrote {args.out / 'duplex.wav'}, monologue.ctm{', heard.ctm' if heard else ''}, timeline.png, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
