"""Turn a synthetic dialogue data dir into what the dialogue model trains on.

    python -m recipes.dialogue.prepare tokenizer --data data/train --out exp/tokenizer.model --vocab 256
    python -m recipes.dialogue.prepare tokenizer --from-model dialogue/assets/dialogue.safetensors --out exp/tokenizer.model
    python -m recipes.dialogue.prepare tokens --data data/train --codec exp/codec.safetensors \
        --tokenizer exp/tokenizer.model --out exp/tokens/train.safetensors

`tokenizer` trains the sentencepiece model on the corpus text (both channels' words plus the task
vocabulary), or writes out the one a trained model holds. `tokens` encodes both channels with the codec (tokens and the user's running voice
vector per frame, as the streaming encoder reports them), lays out the undelayed grid per
conversation (`dialogue.build_grid`) with the user's words as a text stream beside it (the listening
head's targets), takes the system voice G_sys from the system channel's speech,
and writes one safetensors file per split with the stream facts (K, codebook, silence token, codec
id) in its metadata.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from codec import load_codec
from codec.audio import load_audio, to_mono_batch
from dialogue import StreamConfig, TextTokenizer, Word, build_grid, text_stream, train_tokenizer
from dialogue.checkpoint import load_dialogue
from dialogue.features import silence_token

from ..ctm import group_by_utt, read_ctm
from ..datadir import DataDir
from ..parallel import worker_pool
from .tasks import corpus_sentences


def make_tokenizer(data: Path, out: Path, vocab_size: int) -> TextTokenizer:
    d = DataDir.load(data)
    lines = list(d.text.values())
    lines += [" ".join(e.token for e in entries) for entries in group_by_utt(read_ctm(data / "user.ctm")).values()]
    tok = train_tokenizer(lines + corpus_sentences(), vocab_size=vocab_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(out)
    return tok


def make_tokens(data: Path, codec_path: Path | None, tokenizer_path: Path, out: Path, step_hz: float = 12.5,
                num_workers: int = 1, progress: bool = False, text_lead: int = 0) -> int:
    """Encode every conversation of `data` into the grid file `out`; `num_workers` processes share
    the conversations in blocks (the file does not depend on it)."""
    d = DataDir.load(data)
    if not d.utts:
        raise ValueError(f"{data}: no conversations to encode")
    system_words = group_by_utt(read_ctm(data / "system.ctm"))
    user_words = group_by_utt(read_ctm(data / "user.ctm"))

    def words(ctm, utt):
        return [Word(e.token, e.start, e.end) for e in ctm.get(utt, [])]

    items = [(utt, d.wav_path(utt), words(system_words, utt), words(user_words, utt)) for utt in d.utts]
    block = 32
    jobs = [(codec_path, tokenizer_path, step_hz, text_lead, items[i:i + block]) for i in range(0, len(items), block)]
    cache = BlockCache(Path(out), _cache_key(codec_path, tokenizer_path, step_hz, text_lead, d.utts))
    todo = [i for i in range(len(jobs)) if not cache.has(i)]
    bar = tqdm(total=len(d.utts), initial=len(d.utts) - sum(len(jobs[i][-1]) for i in todo), desc=Path(out).stem,
               disable=not progress, unit="conv")
    encoded = {}  # this run's blocks stay in memory: only those an earlier run left are read back
    with worker_pool(num_workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for i, res in zip(todo, pool.imap(_encode_block, [jobs[i] for i in todo])):
            cache.save(i, res)
            encoded[i] = res
            bar.update(len(res))
    bar.close()
    results = [r for i in range(len(jobs)) for r in (encoded[i] if i in encoded else cache.load(i))]
    codec_id, streams = results[0][3], results[0][4]
    parts = [r[1] for r in results]
    tensors = {"tokens": torch.from_numpy(np.concatenate([g["tokens"] for g in parts])).to(torch.int32),
               "user_text": torch.from_numpy(np.concatenate([g["user_text"] for g in parts])).to(torch.int32),
               "user_voice": torch.from_numpy(np.concatenate([g["user_voice"] for g in parts])).half(),
               "system_voice": torch.from_numpy(np.stack([g["system_voice"] for g in parts])).float(),
               "system_speech": torch.from_numpy(np.concatenate([r[2] for r in results])).view(
                   -1, streams.frames_per_step),
               "offsets": torch.from_numpy(np.cumsum([0] + [len(g["tokens"]) for g in parts]))}
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {"format": "duet-dialogue-tokens", "streams": json.dumps(streams.__dict__), "codec_id": codec_id,
            "ids": json.dumps([r[0] for r in results]), "data": str(data)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(out)
    cache.clear()
    return len(results)


def _cache_key(codec_path: Path | None, tokenizer_path: Path, step_hz: float, text_lead: int, utts: list[str]) -> str:
    """What a block's grids depend on: the codec's token space, the tokenizer, the grid's rates, the conversations."""
    from codec.api import checkpoint_codec_id, default_checkpoint

    h = hashlib.sha256(json.dumps([checkpoint_codec_id(codec_path or default_checkpoint()), step_hz, text_lead,
                                   utts]).encode())
    h.update(Path(tokenizer_path).read_bytes())
    return h.hexdigest()[:16]


class BlockCache:
    """Encoded blocks of conversations beside the token file (`<out>.blocks/`, one safetensors file each, written
    atomically), so an interrupted `tokens` run resumes past the blocks it finished; cleared once the file is
    written. A cache made for other inputs (another key) is discarded."""

    FIELDS = ("tokens", "user_text", "user_voice", "system_voice")

    def __init__(self, out: Path, key: str) -> None:
        self.dir = out.with_name(out.name + ".blocks")
        if (self.dir / "key").is_file() and (self.dir / "key").read_text() != key:
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "key").write_text(key)

    def _path(self, i: int) -> Path:
        return self.dir / f"{i:06d}.safetensors"

    def has(self, i: int) -> bool:
        return self._path(i).is_file()

    def save(self, i: int, results: list[tuple]) -> None:
        from safetensors.numpy import save_file as save_numpy

        arrays = {f"{j}.{k}": np.ascontiguousarray(r[1][k]) for j, r in enumerate(results) for k in self.FIELDS}
        arrays.update({f"{j}.speech": np.ascontiguousarray(r[2]) for j, r in enumerate(results)})
        meta = {"ids": json.dumps([r[0] for r in results]), "codec_id": results[0][3],
                "streams": json.dumps(results[0][4].__dict__)}
        tmp = self._path(i).with_suffix(".tmp")
        save_numpy(arrays, str(tmp), metadata=meta)
        tmp.replace(self._path(i))

    def load(self, i: int) -> list[tuple]:
        with safe_open(str(self._path(i)), framework="np") as f:  # arrays and metadata in one read
            arrays, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
        streams = StreamConfig(**json.loads(meta["streams"]))
        return [(utt, {k: arrays[f"{j}.{k}"] for k in self.FIELDS}, arrays[f"{j}.speech"], meta["codec_id"], streams)
                for j, utt in enumerate(json.loads(meta["ids"]))]

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _encode_block(job) -> list[tuple]:
    """One block of (id, wav path, system words, user words) → [(id, grid arrays, system speech frames, codec id,
    stream config)]. numpy, not torch tensors: a worker's tensors would travel as shared-memory file
    handles, and thousands of them exhaust the process's descriptors."""
    codec_path, tokenizer_path, step_hz, text_lead, items = job
    codec = load_codec(codec_path)
    tok = TextTokenizer.load(tokenizer_path)
    streams = StreamConfig.derive(codec.config, tok.vocab_size, silence_token(codec), step_hz, text_lead)
    out = []
    for utt, wav_path, words, user_words in items:
        wav, sr = load_audio(wav_path)
        if wav.shape[0] != 2:
            raise ValueError(f"{wav_path}: {wav.shape[0]} channels, expected 2 (user, system)")
        x = to_mono_batch(wav[:, None], sr, codec.sample_rate)  # [2, N] at the codec rate
        codes, voice = codec.encode_frames(x, codec.sample_rate)
        g_sys = _speech_voice(codec, x[1], words)
        grid = build_grid(codes[0].cpu(), codes[1].cpu(), words, tok, streams, voice[0].float().cpu(), g_sys)
        speech = _speech_frames(words, grid.num_steps * streams.frames_per_step, codec.frame_rate)
        user_text = text_stream(user_words, grid.num_steps, streams.step_seconds, tok)
        arrays = {"tokens": grid.tokens.numpy(), "user_text": user_text.numpy(), "user_voice": grid.user_voice.numpy(),
                  "system_voice": grid.system_voice.numpy()}
        out.append((utt, arrays, speech.numpy(), codec.codec_id, streams))
    return out


def _speech_frames(words: list[Word], frames: int, frame_rate: float) -> torch.Tensor:
    """uint8 [frames]: 1 where the frame's centre lies inside a word (the system is speaking)."""
    centres = (torch.arange(frames) + 0.5) / frame_rate
    out = torch.zeros(frames, dtype=torch.uint8)
    for w in words:
        out[(centres >= w.start) & (centres < w.end)] = 1
    return out


def _speech_voice(codec, wav: torch.Tensor, words: list[Word]) -> torch.Tensor:
    """G_sys: the codec's voice vector of the channel's speech only (word spans, silences left out); zeros when the
    system says nothing (a reading it only listens to: `TokenSet` gives those the mean of the others)."""
    sr = codec.sample_rate
    spans = [wav[int(w.start * sr):int(w.end * sr)] for w in words]
    if not spans:
        return torch.zeros_like(codec.voice(wav[None, :sr], sr)[0].cpu())
    return codec.voice(torch.cat(spans)[None], sr)[0].cpu()


def _fill_silent_voices(voices: torch.Tensor, path: Path) -> torch.Tensor:
    """G_sys [N, D] with the rows of conversations where the system never speaks (zeros) set to the mean of the rest."""
    silent = voices.abs().sum(-1) == 0
    if silent.all():
        raise ValueError(f"{path}: the system speaks in none of its conversations (no G_sys to train with)")
    if silent.any():
        voices = voices.clone()
        voices[silent] = voices[~silent].mean(0)
    return voices


class TokenSet:
    """A split written by `make_tokens`, in memory: grids per conversation and the stream facts."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "duet-dialogue-tokens":
            raise ValueError(f"{path}: not a dialogue token file (run recipes.dialogue.prepare tokens)")
        t = load_file(str(path))
        self.path = path
        self.streams = StreamConfig(**json.loads(meta["streams"]))
        self.codec_id = meta["codec_id"]
        self.ids = json.loads(meta["ids"])
        self.data_dir = meta.get("data", "")  # the data dir the grids were made from (its metadata, CTMs)
        self.sources = [path]  # the token files whose conversations these are (several after `extend`)
        off = t["offsets"].tolist()
        self.tokens = [t["tokens"][a:b].long() for a, b in zip(off, off[1:])]
        # the user's words as a text stream [S] per conversation (None in files made before it existed)
        self.user_text = [t["user_text"][a:b].long() for a, b in zip(off, off[1:])] if "user_text" in t else None
        self.user_voice = [t["user_voice"][a:b].float() for a, b in zip(off, off[1:])]
        self.system_voice = _fill_silent_voices(t["system_voice"], path)
        self.system_speech = [t["system_speech"][a:b].bool() for a, b in zip(off, off[1:])]  # [S, K] per frame

    @property
    def data_dir(self) -> str:
        if len(set(self._data_dirs)) > 1:
            raise ValueError(f"{self.path}: a mix of token files from the data dirs {sorted(set(self._data_dirs))}; "
                             "this use reads one data dir's metadata (train on one token file)")
        return self._data_dirs[0]

    @data_dir.setter
    def data_dir(self, value: str) -> None:
        self._data_dirs = [value]

    def extend(self, other: TokenSet) -> None:
        """Add `other`'s conversations (a training mix of corpora): the same codec and streams only, or the grids
        would mean different things. The streams hold the tokenizer's size, not its pieces: the files must be made
        with one tokenizer model, which a token file does not record."""
        if other.codec_id != self.codec_id:
            raise ValueError(f"{other.path}: tokens of codec {other.codec_id}, {self.path} holds codec {self.codec_id}'s")
        if other.streams != self.streams:
            raise ValueError(f"{other.path}: streams {other.streams}, {self.path} has {self.streams} "
                             "(another tokenizer, step rate or codec layout)")
        if (other.user_text is None) != (self.user_text is None):
            raise ValueError(f"{other.path} and {self.path}: only one holds the user's text stream (remake the older)")
        self.ids += other.ids
        self._data_dirs += other._data_dirs
        self.sources += other.sources
        self.tokens += other.tokens
        if self.user_text is not None:
            self.user_text += other.user_text
        self.user_voice += other.user_voice
        self.system_voice = torch.cat([self.system_voice, other.system_voice])
        self.system_speech += other.system_speech

    def __len__(self) -> int:
        return len(self.ids)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("tokenizer")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="train a sentencepiece model on this corpus's words")
    src.add_argument("--from-model", type=Path,
                     help="write the one a trained dialogue model holds (a run that fine-tunes it needs its words)")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--vocab", type=int, default=256)
    b = sub.add_parser("tokens")
    b.add_argument("--data", type=Path, required=True)
    b.add_argument("--codec", type=Path, default=None)
    b.add_argument("--tokenizer", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--step-hz", type=float, default=12.5)
    b.add_argument("--text-lead", type=int, default=0,
                   help="steps an inner-monologue word is placed ahead of its audio onset")
    b.add_argument("--nj", type=int, default=1, help="worker processes (the output does not depend on it)")
    b.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.cmd == "tokenizer" and args.from_model:
        tok = load_dialogue(args.from_model, codec_id=None).tokenizer
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tok.save(args.out)
        print(f"{args.out}: sentencepiece of {args.from_model}, {tok.vocab_size} pieces")
    elif args.cmd == "tokenizer":
        tok = make_tokenizer(args.data, args.out, args.vocab)
        print(f"{args.out}: sentencepiece, {tok.vocab_size} pieces")
    else:
        if args.nj < 1:
            p.error(f"--nj must be >= 1, got {args.nj}")
        if args.text_lead < 0:
            p.error(f"--text-lead must be >= 0, got {args.text_lead}")
        n = make_tokens(args.data, args.codec, args.tokenizer, args.out, args.step_hz, args.nj, not args.no_progress,
                        args.text_lead)
        print(f"{args.out}: {n} conversations")


if __name__ == "__main__":
    main()
