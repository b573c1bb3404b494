"""Dialogue data layout: text stream ↔ words, delays ↔ undelays, grid building, codec features."""
import pytest
import torch

import codec
from codec.api import Codec
from codec.model import SpeechCodec
from dialogue import (Columns, DelayConfig, StreamConfig, TextTokenizer, Word, build_grid, delay_tokens,
                      grid_words, text_stream, text_stream_words, train_tokenizer, undelay_tokens)
from dialogue.features import silence_token
from dialogue.layout import delay_rows, user_text_targets
from recipes.ctm import CtmEntry, read_ctm, write_ctm

SENTENCES = ["sure seven plus five is twelve", "wow the capital of france is paris", "okay c a t",
             "what is three times four", "count from two to six", "two three four five six"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 4, vocab_size=64)


def test_tokenizer_special_ids_are_named_constants(tokenizer):
    assert [tokenizer.piece(i) for i in (TextTokenizer.PAD, TextTokenizer.EPAD)] == ["<pad>", "<epad>"]
    assert all(tokenizer.is_piece(i) for w in SENTENCES[0].split() for i in tokenizer.encode_word(w))
    assert tokenizer.decode(tokenizer.encode_word("paris")) == "paris"


def words_at(text, start, gap, step):
    out, t = [], start
    for w in text.split():
        out.append(Word(w, t, t + step * 2))
        t += gap
    return out


@pytest.mark.parametrize("lead", [0, 2])
def test_text_stream_round_trip(tokenizer, lead):
    step = 0.08
    words = words_at("sure seven plus five is twelve", 0.5, 0.65, step)  # well separated
    tokens = text_stream(words, 80, step, tokenizer, lead)
    # Moshi's convention: EPAD right before each word's first piece, PAD elsewhere; the first piece
    # `lead` steps ahead of the word's audio onset
    assert int((tokens == TextTokenizer.EPAD).sum()) == len(words)
    assert int(tokens[int(0.5 / step) - 1 - lead]) == TextTokenizer.EPAD
    assert tokenizer.is_piece(int(tokens[int(0.5 / step) - lead]))
    back = text_stream_words(tokens, step, tokenizer, lead)
    assert [w.word for w in back] == [w.word for w in words]
    for got, want in zip(back, words):
        assert got.start == pytest.approx(int(want.start / step + 1e-6) * step)
        assert want.start - step < got.start <= want.start + 1e-9


def test_text_stream_dense_words_keep_order_and_count(tokenizer):
    step = 0.08
    words = words_at("wow the capital of france is paris two three four five six", 0.0, 0.05, step)
    tokens = text_stream(words, 200, step, tokenizer)
    back = text_stream_words(tokens, step, tokenizer)
    assert [w.word for w in back] == [w.word for w in words]
    assert all(b.start >= w.start - step for b, w in zip(back, words))
    assert all(a.end < b.start for a, b in zip(back, back[1:]))  # an EPAD between every two words


@pytest.mark.parametrize("delays", [DelayConfig(0, 1, 0), DelayConfig(0, 2, 0), DelayConfig(2, 0, 1),
                                    DelayConfig(0, 0, 0)])
def test_delays_applied_and_undone_exactly(rng, delays):
    k = 5
    cols = Columns(k)
    streams = StreamConfig(k, 62.5, 6561, 8, 123, 64)
    tokens = torch.randint(0, 6561, (3, 17, cols.width), generator=rng)
    delayed = delay_tokens(tokens, cols.delays(delays), cols.fills(streams))
    assert delayed.shape == (3, 17 + delays.max, cols.width)
    assert torch.equal(delayed[:, delays.system:delays.system + 17, cols.system], tokens[:, :, cols.system])
    assert torch.equal(delayed[:, delays.user:delays.user + 17, cols.user], tokens[:, :, cols.user])
    assert (delayed[:, :delays.system, cols.system] == streams.silence_token).all()
    assert (delayed[:, :delays.text, cols.text] == TextTokenizer.PAD).all()
    assert torch.equal(undelay_tokens(delayed, cols.delays(delays)), tokens)
    rows = torch.randn(3, 17, 4, generator=rng)
    shifted = delay_rows(rows, delays.user, 17 + delays.max)
    assert torch.equal(shifted[:, delays.user:delays.user + 17], rows)
    # the listening head's targets: the user's text `user_text_delay` steps behind the user's audio
    heard = torch.randint(5, 64, (3, 17), generator=rng)
    for lag in (0, 3):
        target = user_text_targets(heard, delays, lag, 17 + delays.max)
        d = delays.user + lag
        n = min(17, 17 + delays.max - d)
        assert target.shape == (3, 17 + delays.max) and torch.equal(target[:, d:d + n], heard[:, :n])
        assert (target[:, :d] == TextTokenizer.PAD).all() and (target[:, d + n:] == TextTokenizer.PAD).all()


def test_grid_build_and_inverse(tokenizer, tmp_path, rng):
    streams = StreamConfig(5, 62.5, 6561, 8, 42, tokenizer.vocab_size)
    frames = 5 * 40 - 3  # not a whole number of steps: the last step is padded with silence
    user = torch.randint(0, 6561, (frames,), generator=rng)
    system = torch.randint(0, 6561, (frames,), generator=rng)
    words = words_at("okay c a t", 0.9, 0.4, 0.08)
    write_ctm(tmp_path / "ctm", [CtmEntry("conv1", "2", w.start, w.end - w.start, w.word) for w in words])
    words_read = [Word(e.token, e.start, e.end) for e in read_ctm(tmp_path / "ctm")]
    voice = torch.randn(frames, 8, generator=rng)
    grid = build_grid(user, system, words_read, tokenizer, streams, voice)
    cols = Columns(5)
    assert grid.tokens.shape == (40, cols.width) and grid.user_voice.shape == (40, 8)
    assert torch.equal(grid.tokens[:, cols.user].flatten()[:frames], user)
    assert torch.equal(grid.tokens[:, cols.system].flatten()[:frames], system)
    assert (grid.tokens[-1, cols.user][-3:] == 42).all()
    assert torch.equal(grid.user_voice[3], voice[19])  # the running vector after step 3's last frame
    delays = DelayConfig(1, 2, 0)
    delayed = delay_tokens(grid.tokens, cols.delays(delays), cols.fills(streams))
    back = grid_words(delayed, streams, delays, tokenizer)
    assert [w.word for w in back] == ["okay", "c", "a", "t"]
    assert [round(w.start / 0.08) for w in back] == [int(w.start / 0.08 + 1e-6) for w in words]


def test_codec_features_match_the_streaming_api():
    torch.manual_seed(0)
    c = Codec(SpeechCodec(codec.preset("duet_cpu16k")))
    wav = torch.randn(2, 16000 // 2) * 0.1
    codes, voice = c.encode_frames(wav, c.sample_rate)
    spt = c.config.samples_per_token
    k = 5
    with c.streaming(2) as s:
        got, voices = [], []
        for i in range(0, wav.shape[1], k * spt):
            got.append(s.encode_step(wav[:, i:i + k * spt]))
            voices.append(s.voice.clone())
        got.append(s.encode_flush())
    assert torch.equal(torch.cat(got, 1), codes)
    for j, v in enumerate(voices[:-1]):
        torch.testing.assert_close(v, voice[:, (j + 1) * k - 1], atol=1e-4, rtol=1e-4)
    assert 0 <= silence_token(c) < c.config.codebook_size
