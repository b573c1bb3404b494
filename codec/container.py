"""The `.duet` token file: a small header and CRC-checked chunks of mixed-radix packed codes.

Layout (little-endian), version 1:

    magic      4 bytes  b"DUET"
    version    u8       1
    header_len u16      bytes of header body that follow (<= 4096)
    body:      sample_rate u32, samples_per_token u32, num_levels u8, levels u8 × num_levels,
               codec_id 16 bytes ASCII, num_frames u64, num_samples u64,
               voice_dim u16, voice float16 × voice_dim
    header_crc u32      CRC-32 of everything before it
    chunks until EOF:   num_frames u32 (1…65536), payload_len u32, payload, crc u32 (CRC-32 of the
                        chunk's first three fields)

Codes are packed in groups of k = floor(64 / log2(codebook)) tokens into one u64 (mixed radix), e.g.
5 tokens of 6561 in 64 bits = 12.8 bits/token against the 12.68-bit entropy bound. Chunks let a
long file be written and read without holding it whole in memory. Every size is checked against
the bytes actually present before anything is allocated.
"""
from __future__ import annotations

import dataclasses
import io
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import torch

MAGIC = b"DUET"
VERSION = 1
MAX_HEADER = 4096
MAX_CHUNK_FRAMES = 65536
_PRE = struct.Struct("<4sBH")
_CHUNK = struct.Struct("<II")


class CodecFormatError(ValueError):
    """A token file that is not a valid .duet file (names the file and what is wrong)."""


@dataclasses.dataclass
class TokenFileHeader:
    sample_rate: int
    samples_per_token: int
    levels: list[int]
    codec_id: str
    num_frames: int
    num_samples: int
    voice: np.ndarray  # float16 [voice_dim]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.samples_per_token

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)


def tokens_per_word(codebook_size: int) -> int:
    """How many tokens share one u64 word."""
    return max(1, int(64 // math.log2(codebook_size))) if codebook_size > 1 else 64


def pack_codes(codes: np.ndarray, codebook_size: int) -> bytes:
    k = tokens_per_word(codebook_size)
    n = len(codes)
    padded = np.zeros(-(-n // k) * k, dtype=np.uint64)
    padded[:n] = codes
    groups = padded.reshape(-1, k)
    words = np.zeros(len(groups), dtype=np.uint64)
    for j in range(k - 1, -1, -1):
        words = words * np.uint64(codebook_size) + groups[:, j]
    return words.astype("<u8").tobytes()


def unpack_codes(payload: bytes, n: int, codebook_size: int) -> np.ndarray:
    k = tokens_per_word(codebook_size)
    words = np.frombuffer(payload, dtype="<u8").astype(np.uint64)
    out = np.zeros((len(words), k), dtype=np.uint64)
    for j in range(k):
        out[:, j] = words % np.uint64(codebook_size)
        words = words // np.uint64(codebook_size)
    codes = out.reshape(-1)[:n].astype(np.int64)
    return codes


def _encode_header(h: TokenFileHeader) -> bytes:
    cid = h.codec_id.encode("ascii")[:16].ljust(16, b"\0")
    voice = np.asarray(h.voice, dtype="<f2").reshape(-1)
    body = struct.pack("<IIB", h.sample_rate, h.samples_per_token, len(h.levels)) + bytes(h.levels) + cid \
        + struct.pack("<QQH", h.num_frames, h.num_samples, len(voice)) + voice.tobytes()
    if len(body) > MAX_HEADER:
        raise CodecFormatError(f"header of {len(body)} bytes exceeds {MAX_HEADER}")
    pre = _PRE.pack(MAGIC, VERSION, len(body)) + body
    return pre + struct.pack("<I", zlib.crc32(pre))


class TokenWriter:
    """Write a .duet file chunk by chunk; the header's frame count is patched on close."""

    def __init__(self, path: str | Path, header: TokenFileHeader) -> None:
        self.path = Path(path)
        self.header = dataclasses.replace(header, num_frames=0)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._f: BinaryIO = open(self._tmp, "wb")
        self._f.write(_encode_header(self.header))

    def write(self, codes: np.ndarray | torch.Tensor) -> None:
        codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64).reshape(-1)
        if codes.size and (codes.min() < 0 or codes.max() >= self.header.codebook_size):
            raise CodecFormatError(f"{self.path}: code out of range for codebook {self.header.codebook_size}")
        for start in range(0, len(codes), MAX_CHUNK_FRAMES):
            part = codes[start:start + MAX_CHUNK_FRAMES]
            payload = pack_codes(part, self.header.codebook_size)
            head = _CHUNK.pack(len(part), len(payload))
            self._f.write(head + payload + struct.pack("<I", zlib.crc32(head + payload)))
            self.header.num_frames += len(part)

    def close(self, num_samples: int | None = None) -> None:
        if num_samples is not None:
            self.header.num_samples = num_samples
        self._f.seek(0)
        self._f.write(_encode_header(self.header))
        self._f.close()
        self._tmp.replace(self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self._f.close()
            self._tmp.unlink(missing_ok=True)


class TokenReader:
    """Read a .duet file: `header` at once, codes chunk by chunk with `chunks()` or all with `read_all()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")
        except OSError as e:
            raise CodecFormatError(f"{self.path}: cannot open ({e})") from e
        self._size = self.path.stat().st_size
        self.header = self._read_header()

    def _fail(self, what: str):
        self._f.close()
        raise CodecFormatError(f"{self.path}: {what}")

    def _read_exact(self, n: int, what: str) -> bytes:
        data = self._f.read(n)
        if len(data) != n:
            self._fail(f"truncated file: {what} needs {n} bytes, found {len(data)}")
        return data

    def _read_header(self) -> TokenFileHeader:
        pre = self._read_exact(_PRE.size, "preamble")
        magic, version, body_len = _PRE.unpack(pre)
        if magic != MAGIC:
            self._fail(f"not a .duet token file (magic {magic!r}, expected {MAGIC!r})")
        if version != VERSION:
            self._fail(f"unsupported .duet version {version} (this reader handles {VERSION})")
        if body_len > MAX_HEADER:
            self._fail(f"header length {body_len} exceeds the limit of {MAX_HEADER} bytes")
        body = self._read_exact(body_len, "header")
        (crc,) = struct.unpack("<I", self._read_exact(4, "header checksum"))
        if crc != zlib.crc32(pre + body):
            self._fail("header checksum mismatch (corrupted file)")
        try:
            buf = io.BytesIO(body)
            sr, spt, nl = struct.unpack("<IIB", buf.read(9))
            levels = list(buf.read(nl))
            cid = buf.read(16).rstrip(b"\0").decode("ascii")
            num_frames, num_samples, vdim = struct.unpack("<QQH", buf.read(18))
            voice = np.frombuffer(buf.read(2 * vdim), dtype="<f2")
            if len(voice) != vdim or len(levels) != nl or buf.read(1):
                raise ValueError("header body length does not match its fields")
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            self._fail(f"malformed header ({e})")
        if sr == 0 or spt == 0 or nl == 0 or any(l < 2 for l in levels):
            self._fail(f"invalid header values (sample_rate={sr}, samples_per_token={spt}, levels={levels})")
        k = tokens_per_word(math.prod(levels))
        min_bytes = num_frames // k * 8  # packed payload cannot be smaller than this
        if min_bytes > self._size:
            self._fail(f"header claims {num_frames} frames, more than the file's {self._size} bytes can hold")
        return TokenFileHeader(sr, spt, levels, cid, num_frames, num_samples, voice.copy())

    def chunks(self) -> Iterator[np.ndarray]:
        total = 0
        cb = self.header.codebook_size
        while True:
            head = self._f.read(_CHUNK.size)
            if not head:
                break
            if len(head) != _CHUNK.size:
                self._fail("truncated chunk header")
            n, plen = _CHUNK.unpack(head)
            expected = -(-n // tokens_per_word(cb)) * 8
            if not 1 <= n <= MAX_CHUNK_FRAMES or plen != expected:
                self._fail(f"corrupt chunk header (frames={n}, payload={plen} bytes, expected {expected})")
            payload = self._read_exact(plen, "chunk payload")
            (crc,) = struct.unpack("<I", self._read_exact(4, "chunk checksum"))
            if crc != zlib.crc32(head + payload):
                self._fail(f"chunk checksum mismatch at frame {total} (corrupted file)")
            codes = unpack_codes(payload, n, cb)
            if codes.size and codes.max() >= cb:
                self._fail(f"code out of range at frame {total}")
            total += n
            if total > self.header.num_frames:
                self._fail(f"more frames than the header's {self.header.num_frames}")
            yield codes
        if total != self.header.num_frames:
            self._fail(f"truncated file: {total} frames of the header's {self.header.num_frames}")
        self._f.close()

    def read_all(self) -> np.ndarray:
        parts = list(self.chunks())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def write_tokens(path: str | Path, tokens, sample_rate: int, samples_per_token: int, levels: list[int]) -> None:
    """Write one stream of `CodecTokens` (batch 1) to a .duet file."""
    if tokens.codes.shape[0] != 1:
        raise ValueError(f"a .duet file holds one stream; got batch {tokens.codes.shape[0]}")
    header = TokenFileHeader(sample_rate, samples_per_token, list(levels), tokens.codec_id, 0,
                             tokens.num_samples or 0, tokens.voice[0].float().cpu().numpy().astype(np.float16))
    with TokenWriter(path, header) as w:
        w.write(tokens.codes[0])


def read_tokens(path: str | Path):
    """Read a .duet file → (CodecTokens with batch 1, header)."""
    from .api import CodecTokens

    reader = TokenReader(path)
    codes = torch.from_numpy(reader.read_all())[None]
    h = reader.header
    tokens = CodecTokens(codes, torch.from_numpy(h.voice.astype(np.float32))[None], h.frame_rate, h.codec_id,
                         h.num_samples or None)
    return tokens, h
