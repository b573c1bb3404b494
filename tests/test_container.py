"""The .duet token file: exact round trip, one clear CodecFormatError for every kind of damage."""
import struct

import numpy as np
import pytest
import torch

from codec import CodecFormatError, CodecTokens, read_tokens, write_tokens
from codec.cli import main as cli_main
from codec.container import MAX_HEADER, pack_codes, tokens_per_word, unpack_codes


def write_sample(path, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = CodecTokens(torch.randint(0, 6561, (1, n), generator=g), torch.randn(1, 8, generator=g), 62.5,
                         "abcdef0123456789", n * 256)
    write_tokens(path, tokens, 16000, 256, [3] * 8)
    return tokens


def test_round_trip_is_exact(tmp_path):
    tokens = write_sample(tmp_path / "a.duet")
    back, header = read_tokens(tmp_path / "a.duet")
    assert torch.equal(back.codes, tokens.codes)
    assert back.codec_id == tokens.codec_id and back.num_samples == tokens.num_samples
    assert header.levels == [3] * 8 and header.frame_rate == 62.5
    torch.testing.assert_close(back.voice, tokens.voice.half().float())


@pytest.mark.parametrize("codebook", [2, 6561, 1000, 2 ** 16, 3 ** 20])
def test_packing_round_trip(codebook):
    codes = np.random.default_rng(0).integers(0, codebook, 1001)
    assert np.array_equal(unpack_codes(pack_codes(codes, codebook), len(codes), codebook), codes)
    assert tokens_per_word(6561) == 5  # 12.8 bits per token


def test_bitrate_of_the_file_is_near_the_bound(tmp_path):
    write_sample(tmp_path / "a.duet", n=6250)  # 100 s at 62.5 Hz
    size = (tmp_path / "a.duet").stat().st_size
    assert 8 * size / 100 < 62.5 * 12.8 * 1.01


def damage(tmp_path, how):
    path = tmp_path / "a.duet"
    write_sample(path)
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[:len(data) - 17]
    elif how == "truncated_header":
        data = data[:20]
    elif how == "bitflip_payload":
        data[len(data) // 2] ^= 0x10
    elif how == "bitflip_header":
        data[10] ^= 0x01
    elif how == "magic":
        data[:4] = b"RIFF"
    elif how == "version":
        data[4] = 99
    elif how == "oversized_header":
        data[5:7] = struct.pack("<H", MAX_HEADER + 1)
    elif how == "empty":
        data = bytearray()
    elif how == "extra_chunk":
        data += data[-40:]
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how,match", [
    ("truncated", "truncated"), ("truncated_header", "truncated"), ("bitflip_payload", "checksum"),
    ("bitflip_header", "checksum"), ("magic", "magic"), ("version", "version"),
    ("oversized_header", "header length"), ("empty", "truncated"), ("extra_chunk", "chunk"),
])
def test_damaged_files_raise_one_clear_error(tmp_path, how, match):
    path = damage(tmp_path, how)
    with pytest.raises(CodecFormatError, match=match) as e:
        read_tokens(path)
    assert str(path) in str(e.value)


def test_huge_frame_count_is_refused_before_allocating(tmp_path):
    path = tmp_path / "a.duet"
    write_sample(path)
    data = bytearray(path.read_bytes())
    # num_frames lives after sr, spt, nl, levels(8), codec_id(16): offset 7 + 9 + 8 + 16
    off = 7 + 9 + 8 + 16
    data[off:off + 8] = struct.pack("<Q", 2 ** 60)
    import zlib
    body_end = 7 + struct.unpack("<H", bytes(data[5:7]))[0]
    data[body_end:body_end + 4] = struct.pack("<I", zlib.crc32(bytes(data[:body_end])))
    path.write_bytes(bytes(data))
    with pytest.raises(CodecFormatError, match="claims"):
        read_tokens(path)


def test_cli_encode_decode_info(tmp_path, capsys):
    import soundfile as sf

    from codec.api import Codec
    from codec.model import SpeechCodec
    from tests.test_codec import make_codec

    codec = make_codec("duet_cpu16k")
    ckpt = tmp_path / "c.safetensors"
    codec.save(ckpt)
    wav = 0.1 * np.random.default_rng(0).standard_normal(22050 * 2).astype(np.float32)
    sf.write(tmp_path / "in.wav", np.stack([wav, wav], 1), 22050)  # stereo, another rate
    assert cli_main(["--codec", str(ckpt), "--quiet", "encode", str(tmp_path / "in.wav"), str(tmp_path / "x.duet")]) == 0
    assert cli_main(["--codec", str(ckpt), "--quiet", "decode", str(tmp_path / "x.duet"), str(tmp_path / "out.wav")]) == 0
    out, sr = sf.read(tmp_path / "out.wav")
    assert sr == 16000 and len(out) == 32000
    assert cli_main(["info", str(tmp_path / "x.duet")]) == 0
    text = capsys.readouterr().out
    assert "792.5 bit/s" in text and "voice" in text
    assert cli_main(["--codec", str(ckpt), "info"]) == 0
    assert "0.792 kbps" in capsys.readouterr().out
    (tmp_path / "bad.duet").write_bytes(b"nope")
    assert cli_main(["--codec", str(ckpt), "--quiet", "decode", str(tmp_path / "bad.duet"), str(tmp_path / "o.wav")]) == 2
    assert "error:" in capsys.readouterr().err
    (tmp_path / "empty.wav").write_bytes(b"")
    assert cli_main(["--codec", str(ckpt), "--quiet", "encode", str(tmp_path / "empty.wav"), str(tmp_path / "e.duet")]) == 2
