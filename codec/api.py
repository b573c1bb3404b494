"""The codec's public API: load, encode, decode, voice, and streaming.

    from codec import load_codec
    codec = load_codec()                       # bundled default (no download)
    tokens = codec.encode(wav, sample_rate)    # CodecTokens: codes [B, T], voice [B, D]
    audio = codec.decode(tokens)               # [B, 1, N] at codec.sample_rate
    with codec.streaming(batch_size=1) as s:   # any chunk size; buffering is inside
        codes = s.encode_step(chunk)           # [B, t] (t may be 0)
        audio = s.decode_step(codes)           # [B, 1, n]
        s.reset(mask)                          # restart chosen items; get_state/set_state snapshot all

Weights are safetensors with the config in the file's metadata; no pickle anywhere.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from . import config_io
from .audio import AudioError, to_mono_batch
from .config import CodecConfig
from .model import SemanticOutput, SpeechCodec
from .streaming import StateHolder, StreamingState

DEFAULT_CHECKPOINT = "assets/default_codec.safetensors"


@dataclasses.dataclass
class CodecTokens:
    """What the codec sends: one token per frame, plus the voice vector once per stream."""

    codes: torch.Tensor  # [B, T] int64 in [0, codebook_size)
    voice: torch.Tensor  # [B, voice_dim] float
    frame_rate: float  # tokens per second
    codec_id: str  # identity of the token space that made them (see `codec_identity`)
    num_samples: int | None = None  # original length at the codec rate, to trim the decode


class Codec:
    """A loaded codec: model + config + identity, with audio handling around the network."""

    def __init__(self, model: SpeechCodec, codec_id: str = "untrained", description: str = "") -> None:
        self.model = model.eval()
        self.config: CodecConfig = model.cfg
        self.codec_id = codec_id
        self.description = description

    # --- facts ---------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- offline -------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, wav, sample_rate: int) -> CodecTokens:
        """wav [N] / [B, N] / [B, C, N] at any rate → CodecTokens (T = ceil(N' / samples_per_token))."""
        x = to_mono_batch(wav, sample_rate, self.sample_rate)
        codes, running_voice = self._frames(x)
        return CodecTokens(codes, running_voice[:, -1], self.frame_rate, self.codec_id, x.shape[-1])

    @torch.inference_mode()
    def encode_frames(self, wav, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """wav (as `encode`) → (codes [B, T], running voice [B, T, voice_dim]): the voice vector over
        everything heard up to each frame, as `CodecStream.voice` reports it while streaming (what a
        dialogue model conditions on). The last frame is zero-padded, as `encode_flush` does."""
        return self._frames(to_mono_batch(wav, sample_rate, self.sample_rate))

    @torch.inference_mode()
    def semantic_output(self, wav, sample_rate: int) -> SemanticOutput:
        """wav (as `encode`) → the semantic branch's whole output: the tokens (`indices`), their posterior,
        and for a "phones" input its frame classifier's logits (`unit_logits`), for analysis. The last
        frame is zero-padded, as `encode` does."""
        return self.model.tokens_from_mel(self._mel(to_mono_batch(wav, sample_rate, self.sample_rate)))

    def _frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel = self._mel(x)
        return self.model.tokens_from_mel(mel).indices, self.model.paralinguistic(mel)[0]

    def _mel(self, x: torch.Tensor) -> torch.Tensor:
        """Mono [B, N] at the codec rate → the front end's mel, the last frame zero-padded."""
        return self.model.frontend(_pad_to_multiple(x.to(self.device), self.config.samples_per_token))

    @torch.inference_mode()
    def voice(self, wav, sample_rate: int) -> torch.Tensor:
        """The paralinguistic vector G [B, voice_dim] of a reference recording."""
        return self.model.paralinguistic(self._mel(to_mono_batch(wav, sample_rate, self.sample_rate)))[0][:, -1]

    @torch.inference_mode()
    def decode(self, tokens: CodecTokens, voice: torch.Tensor | None = None) -> torch.Tensor:
        """CodecTokens → waveform [B, 1, N] at `sample_rate`; `voice` overrides the tokens' voice
        (voice conversion: same words, another speaker/style)."""
        codes = self._check_codes(tokens)
        g = self._check_voice(voice if voice is not None else tokens.voice, codes.shape[0])
        mel = self.model.mel_from_codes(self.model.codes_from_indices(codes), g)
        wav = self.model.vocoder.synthesize(mel)
        if tokens.num_samples is not None:
            wav = wav[:, :tokens.num_samples]
        return wav[:, None]

    def _check_codes(self, tokens: CodecTokens) -> torch.Tensor:
        if not isinstance(tokens, CodecTokens):
            raise TypeError(f"decode expects CodecTokens, got {type(tokens).__name__}")
        if tokens.codec_id not in (self.codec_id, "any") and tokens.codec_id != "":
            raise ValueError(f"tokens were made by codec {tokens.codec_id!r}, this is {self.codec_id!r}")
        return check_codes(tokens.codes, self.config.codebook_size).to(self.device)

    def _check_voice(self, voice: torch.Tensor | None, batch: int) -> torch.Tensor:
        if voice is None:
            return torch.zeros(batch, self.config.voice_dim, device=self.device)  # the VAE prior's mean
        voice = voice.to(self.device, torch.float32)
        if voice.dim() == 1:
            voice = voice[None]
        if voice.shape[-1] != self.config.voice_dim or voice.shape[0] not in (1, batch):
            raise ValueError(f"voice has shape {tuple(voice.shape)}, expected [{batch}, {self.config.voice_dim}]")
        if not torch.isfinite(voice).all():
            raise ValueError("voice vector contains NaN or infinite values")
        return voice.expand(batch, -1)

    # --- streaming -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def streaming(self, batch_size: int = 1, voice: torch.Tensor | None = None, threads: int | None = 1):
        """Open encode and decode streams for `batch_size` parallel signals at the codec rate. While open, torch
        runs `threads` intra-op threads (restored on exit; None: leave torch's setting): a streaming step is tens
        of small kernels, which a second thread only slows down (benchmarks/codec_speed.py)."""
        with torch.inference_mode(), intra_op_threads(threads), self.model.streaming(batch_size):
            yield CodecStream(self, batch_size, self._check_voice(voice, batch_size))

    # --- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, description: str = "", half: bool = True) -> str:
        """Write weights + config (in the metadata) to one safetensors file; returns the codec id."""
        return save_codec_model(self.model, path, description or self.description, half=half)


@contextlib.contextmanager
def intra_op_threads(threads: int | None):
    """torch's intra-op thread count set to `threads` inside the block, restored after (None: unchanged)."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    if threads < 1:
        raise ValueError(f"intra_op_threads: threads must be >= 1 or None, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class CodecStreamState(StreamingState):
    """What a `CodecStream` keeps besides its model's layer states, per batch item.

    The batch stays in one phase: every item has the same number of buffered samples (chunks are
    [B, N]), so a per-item reset zeroes an item's buffered samples but keeps their count — a
    conversation restarted mid-frame starts with that partial frame as silence (< one token; none
    when chunks are whole frames, as dialogue steps are). `to_skip` counts the vocoder's overlap
    samples that lie before an item's time 0: a fresh stream drops them; an item restarted while
    the batch plays on gets them as silence, so the batch's outputs keep one length.
    """

    pending: torch.Tensor  # [B, samples_per_token] buffered samples of the partial frame (first pending_len valid)
    pending_len: torch.Tensor  # [B] long, equal across the batch
    to_skip: torch.Tensor  # [B] long, vocoder lag samples not yet played (reset: the lag)
    encoded_frames: torch.Tensor  # [B] long, tokens encoded since the item's (re)start
    voice: torch.Tensor  # [B, voice_dim] running voice vector of the encoded audio
    lag: int = 0

    def reset_value(self, name: str) -> float:
        return self.lag if name == "to_skip" else 0

    def reset(self, mask: torch.Tensor | None = None) -> None:
        if mask is not None and bool(mask.all()):
            mask = None  # nothing goes on: a fresh stream, phase included
        phase = self.pending_len.clone()
        super().reset(mask)
        if mask is not None:
            self.pending_len.copy_(phase)


class CodecStream(StateHolder):
    """Streaming encoder and decoder over one model; created by `Codec.streaming`. Holds its state on
    the streaming protocol: `reset(mask)` restarts chosen batch items, `get_state`/`set_state`
    snapshot the model's layers and the stream's own buffers (`CodecStreamState`)."""

    def __init__(self, codec: Codec, batch_size: int, voice: torch.Tensor) -> None:
        self.codec, self.batch_size = codec, batch_size
        self.model = codec.model
        self.decode_voice = voice
        dev, spt, lag = codec.device, codec.config.samples_per_token, self.model.vocoder.lag
        self.state = CodecStreamState(torch.zeros(batch_size, spt, device=dev),
                                      torch.zeros(batch_size, dtype=torch.long, device=dev),
                                      torch.full((batch_size,), lag, dtype=torch.long, device=dev),
                                      torch.zeros(batch_size, dtype=torch.long, device=dev),
                                      torch.zeros(batch_size, codec.config.voice_dim, device=dev), lag)

    def named_states(self):
        yield "stream", self.state
        for name, state in self.model.named_states():
            yield f"model/{name}", state

    @property
    def voice(self) -> torch.Tensor:
        """[B, voice_dim]: the running voice vector of everything encoded so far (per item since its reset)."""
        return self.state.voice

    @property
    def encoded_frames(self) -> torch.Tensor:
        """[B] tokens encoded per item since its (re)start."""
        return self.state.encoded_frames

    def set_voice(self, voice: torch.Tensor) -> None:
        """Voice G used by decode_step from now on (a setting, not state: snapshots leave it alone)."""
        self.decode_voice = self.codec._check_voice(voice, self.batch_size)

    def encode_step(self, chunk: torch.Tensor) -> torch.Tensor:
        """chunk [N] / [B, N] / [B, C, N] at the codec rate (any N ≥ 1) → new codes [B, t]."""
        x = self._prepare(chunk)
        st, spt = self.state, self.codec.config.samples_per_token
        held = int(st.pending_len[0])
        buffered = torch.cat([st.pending[:, :held], x], dim=-1)
        usable = (buffered.shape[-1] // spt) * spt
        rest = buffered.shape[-1] - usable
        st.pending[:, :rest] = buffered[:, usable:]
        st.pending_len.fill_(rest)
        return self._encode_ready(buffered[:, :usable])

    def encode_flush(self) -> torch.Tensor:
        """Zero-pad the buffered partial frame and encode it (end of stream) → codes [B, 0 or 1]."""
        st = self.state
        held = int(st.pending_len[0])
        if held == 0:
            return torch.zeros(self.batch_size, 0, dtype=torch.long, device=self.codec.device)
        ready = _pad_to_multiple(st.pending[:, :held], self.codec.config.samples_per_token)
        st.pending_len.fill_(0)
        return self._encode_ready(ready)

    def _encode_ready(self, ready: torch.Tensor) -> torch.Tensor:
        if ready.shape[-1] == 0:
            return torch.zeros(self.batch_size, 0, dtype=torch.long, device=self.codec.device)
        mel = self.model.frontend(ready)
        codes = self.model.tokens_from_mel(mel).indices
        self.state.voice.copy_(self.model.paralinguistic(mel)[0][:, -1])
        self.state.encoded_frames += codes.shape[1]
        return codes

    def decode_step(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, t] → the audio that is final now, [B, 1, n] (n = t·samples_per_token once the
        vocoder's overlap lag has passed; an item restarted alone gets its lag as leading silence)."""
        codes = check_codes(codes, self.codec.config.codebook_size).to(self.codec.device)
        if codes.shape[0] != self.batch_size:
            raise ValueError(f"decode_step: codes have batch {codes.shape[0]}, stream has {self.batch_size}")
        if codes.shape[1] == 0:
            return torch.zeros(self.batch_size, 1, 0, device=self.codec.device)
        mel = self.model.mel_from_codes(self.model.codes_from_indices(codes), self.decode_voice)
        return self._drop_lag(self.model.vocoder(mel))[:, None]

    def decode_flush(self) -> torch.Tensor:
        """The vocoder's last overlap tail [B, 1, ≤ n_fft − hop] (end of stream)."""
        return self._drop_lag(self.model.vocoder.ola.flush())[:, None]

    def _drop_lag(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, n] → the samples at or after each item's time 0: what the whole batch still has
        to skip is cut, an item's own remainder (restarted alone) is silenced."""
        st = self.state
        skip = min(int(st.to_skip.min()), wav.shape[-1])
        wav = wav[:, skip:]
        st.to_skip -= skip
        if bool((st.to_skip > 0).any()):
            silent = torch.arange(wav.shape[-1], device=wav.device)[None] < st.to_skip[:, None]
            wav = wav.masked_fill(silent, 0.0)
            st.to_skip.sub_(wav.shape[-1]).clamp_(min=0)
        return wav

    def _prepare(self, chunk) -> torch.Tensor:
        if isinstance(chunk, torch.Tensor) and chunk.numel() == 0:
            return torch.zeros(self.batch_size, 0, device=self.codec.device)
        x = to_mono_batch(chunk, self.codec.sample_rate, self.codec.sample_rate, "stream chunk").to(self.codec.device)
        if x.shape[0] != self.batch_size:
            raise AudioError(f"stream chunk has batch {x.shape[0]}, the stream was opened with {self.batch_size}")
        return x


def check_codes(codes, codebook_size: int) -> torch.Tensor:
    if not isinstance(codes, torch.Tensor) or codes.dtype not in (torch.int64, torch.int32, torch.int16):
        raise TypeError(f"codes must be an integer tensor [B, T], got {getattr(codes, 'dtype', type(codes))}")
    if codes.dim() == 1:
        codes = codes[None]
    if codes.dim() != 2:
        raise ValueError(f"codes must be [B, T], got shape {tuple(codes.shape)}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(f"codes out of range: found [{int(codes.min())}, {int(codes.max())}], "
                         f"codebook has {codebook_size} entries")
    return codes.long()


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    rem = (-x.shape[-1]) % multiple
    return torch.nn.functional.pad(x, (0, rem)) if rem else x


# --- files ---------------------------------------------------------------------------------------
TOKEN_SPACE_PARTS = ("frontend", "encoder", "semantic", "paralinguistic")
TOKEN_SPACE_FIELDS = ("mel", "downsample", "fsq_levels", "latent_dim", "voice_dim", "voice_hidden", "encoder", "semantic")


def codec_identity(model: SpeechCodec) -> str:
    """16 hex digits of SHA-256 over what defines the token space: the stream config (rates, FSQ
    levels, encoder shapes) and the weights of the front end, encoder, semantic projector and
    paralinguistic encoder. Token files and dialogue models record it. Decoder-side training
    (connector, mel decoder, vocoder) leaves it unchanged, so improving the decoder never
    invalidates existing tokens or the models trained on them."""
    cfg = config_io.to_dict(model.cfg)
    fields = {k: cfg[k] for k in TOKEN_SPACE_FIELDS}
    if model.cfg.semantic_input.kind != "latent":  # left out for the original input: existing ids stay valid
        fields["semantic_input"] = model.cfg.semantic_input.defining_fields()
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.split(".")[0] in TOKEN_SPACE_PARTS:
            h.update(name.encode())
            h.update(tensor.detach().to(torch.float16).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def save_codec_model(model: SpeechCodec, path: str | Path, description: str = "", half: bool = True,
                     recipe: str = "") -> str:
    """Write the codec file; `recipe` is the command that rebuilds it from a clean checkout (kept in its metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
               for k, v in model.state_dict().items()}
    codec_id = codec_identity(model)
    meta = {"format": "duet-codec", "config": json.dumps(config_io.to_dict(model.cfg)),
            "codec_id": codec_id, "description": description, **({"recipe": recipe} if recipe else {})}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return codec_id


def default_checkpoint() -> Path:
    return Path(str(resources.files("codec").joinpath(DEFAULT_CHECKPOINT)))


def read_checkpoint_metadata(path: Path, expected_format: str) -> dict[str, str]:
    """The metadata of a Duet safetensors checkpoint, checked to be `expected_format` with a config
    (codec and dialogue checkpoints both carry their config there)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"{path}: not a safetensors file ({e})") from e
    if meta.get("format") != expected_format or "config" not in meta:
        raise ValueError(f"{path}: metadata format is {meta.get('format')!r}, expected {expected_format!r} "
                         f"with a config")
    return meta


def checkpoint_codec_id(path: str | Path) -> str:
    """A codec checkpoint's identity, read from its header without its weights."""
    return read_checkpoint_metadata(Path(path), "duet-codec").get("codec_id", "unknown")


def load_codec(path: str | Path | None = None, device: str | torch.device = "cpu") -> Codec:
    """Load a codec from a safetensors file (None = the bundled default; never downloads)."""
    path = Path(path) if path is not None else default_checkpoint()
    if path.is_dir():
        path = path / "codec.safetensors"
    if not path.is_file():
        hint = " (the bundled default is made by egs/mini/codec1/run.sh)" if path == default_checkpoint() else ""
        raise FileNotFoundError(f"{path}: no codec checkpoint{hint}")
    meta = read_checkpoint_metadata(path, "duet-codec")
    cfg = config_io.from_dict(CodecConfig, json.loads(meta["config"]), where=str(path))
    model = SpeechCodec(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match config {cfg.name}: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
    return Codec(model.to(device), meta.get("codec_id", "unknown"), meta.get("description", ""))
