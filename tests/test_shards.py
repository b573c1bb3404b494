"""Codec training shards: written one utterance at a time, mapped (not loaded) by every rank, and read
exactly as the eager in-memory shard was; crops cut only what a stage uses, from the same draws."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.numpy import load_file, save_file

from recipes.codec.shards import CropSampler, Shard, ShardWriter, build_shard

SR, HOP = 16000, 256


def corpus(n=7, seed=0):
    rng = np.random.default_rng(seed)
    utts = []
    for i in range(n):
        length = int(rng.integers(SR // 8, SR))  # some shorter than a crop
        labels = rng.integers(0, 4, length // HOP + 3) if i % 2 else None  # one too long, padding cut
        utts.append((f"u{i}", f"s{i % 3}", (0.5 * rng.standard_normal(length)).astype(np.float32), labels))
    return utts


def legacy_save(shard: Shard, path) -> None:
    """The file as the shard's writer was before (safetensors.numpy.save_file: its own array order)."""
    meta = {"utt_ids": shard.utt_ids, "speakers": shard.speakers, "phones": shard.phones,
            "sample_rate": shard.sample_rate, "hop_length": shard.hop_length}
    save_file({"audio": shard.audio, "utt_offsets": shard.utt_offsets, "labels": shard.labels,
               "label_offsets": shard.label_offsets, "speaker": shard.speaker}, str(path),
              metadata={"shard": json.dumps(meta)})


def assert_same_shard(a: Shard, b: Shard) -> None:
    for name in ("audio", "utt_offsets", "labels", "label_offsets", "speaker"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.meta() == b.meta()


def assert_same_batch(a, b) -> None:
    for name in ("wav", "history", "labels", "speaker", "ref_wav", "twin_wav", "twin_history"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), name


def test_the_mapped_shard_reads_exactly_what_the_eager_one_did(tmp_path):
    shard = build_shard(corpus(), ["sil", "a", "b", "c"], SR, HOP)
    legacy_save(shard, tmp_path / "legacy.safetensors")
    shard.save(tmp_path / "new.safetensors")
    for path in (tmp_path / "legacy.safetensors", tmp_path / "new.safetensors"):
        mapped, eager = Shard.load(path), Shard.load(path, mmap=False)
        assert isinstance(mapped.audio, np.memmap) and not mapped.audio.flags.writeable
        assert not isinstance(eager.audio, np.memmap)
        assert_same_shard(mapped, shard)
        assert_same_shard(eager, shard)
        for step in range(4):
            for rank in range(2):
                args = (6, 16, 2, 768)
                assert_same_batch(CropSampler(mapped, *args, seed=1, ref_frames=8).batch(step, rank),
                                  CropSampler(shard, *args, seed=1, ref_frames=8).batch(step, rank))
    written = load_file(str(tmp_path / "new.safetensors"))  # the new file is a plain safetensors file
    np.testing.assert_array_equal(written["audio"], shard.audio)


def test_the_writer_streams_the_same_shard_and_leaves_nothing_on_failure(tmp_path):
    utts = corpus()
    with ShardWriter(tmp_path / "w.safetensors", ["sil", "a", "b", "c"], SR, HOP) as w:
        for u in utts:
            w.add(*u)
    assert_same_shard(Shard.load(tmp_path / "w.safetensors"), build_shard(utts, ["sil", "a", "b", "c"], SR, HOP))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    with pytest.raises(RuntimeError, match="disk full"):
        with ShardWriter(tmp_path / "x.safetensors", ["sil"], SR, HOP) as w:
            w.add(*utts[0])
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    with pytest.raises(ValueError, match="at least one utterance"):
        ShardWriter(tmp_path / "y.safetensors", ["sil"], SR, HOP).close()


def test_prepare_writes_the_data_dir_one_utterance_at_a_time(tmp_path):
    from recipes.codec.prepare import prepare
    from recipes.datadir import DataDir

    utts = corpus(4)
    wav_scp = {}
    for utt, _, wav, _ in utts:
        sf.write(tmp_path / f"{utt}.wav", wav.clip(-1, 1), SR, subtype="FLOAT")
        wav_scp[utt] = str(tmp_path / f"{utt}.wav")
    DataDir(wav_scp=wav_scp, utt2spk={u: s for u, s, _, _ in utts}).save(tmp_path / "data")
    out = prepare([tmp_path / "data"], tmp_path / "shard" / "train.safetensors", SR, HOP, None, progress=False)
    expected = build_shard([(u, s, w, None) for u, s, w, _ in utts], ["sil"], SR, HOP)
    assert_same_shard(Shard.load(out), expected)


def test_crops_convert_only_their_samples_and_skip_unused_references(tmp_path):
    shard = build_shard(corpus(), ["sil", "a", "b", "c"], SR, HOP)
    with_refs = CropSampler(shard, 5, 16, 2, 768, seed=3)
    without = CropSampler(shard, 5, 16, 2, 768, seed=3, references=False)
    for step in range(3):
        a, b = with_refs.batch(step), without.batch(step)
        assert b.ref_wav is None and a.ref_wav.shape == (5, 16 * HOP)
        b.ref_wav = a.ref_wav
        assert_same_batch(a, b)  # the same crops: the references' draws are still made
    # a crop is the utterance's samples as float, zero-padded past its end, with the samples before it
    rng = np.random.default_rng(0)
    for _ in range(20):
        utt, start = int(rng.integers(shard.num_utts)), 2 * int(rng.integers(4))
        seg, hist = with_refs._cut(shard, utt, start, 16)
        wav = np.concatenate([np.zeros(768, np.float32), shard.wav(utt), np.zeros(16 * HOP, np.float32)])
        np.testing.assert_array_equal(seg, wav[768 + start * HOP:768 + (start + 16) * HOP])
        np.testing.assert_array_equal(hist, wav[start * HOP:768 + start * HOP])
    # labels stop at the utterance's end (zero-padded), never run into the next one's
    short = int(np.argmin(np.diff(shard.label_offsets)))
    n = int(np.diff(shard.label_offsets)[short])
    twice = CropSampler(build_shard([corpus()[short]] * 2, ["sil", "a", "b", "c"], SR, HOP), 4, n + 10, 1, 768)
    for step in range(3):
        assert (twice.batch(step).labels[:, n:] == 0).all()


def test_a_truncated_or_foreign_file_is_named(tmp_path):
    shard = build_shard(corpus(3), ["sil"], SR, HOP)
    shard.save(tmp_path / "s.safetensors")
    data = (tmp_path / "s.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="cut.safetensors: truncated"):
        Shard.load(tmp_path / "cut.safetensors")
    save_file({"x": np.zeros(3, np.int16)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a codec training shard"):
        Shard.load(tmp_path / "other.safetensors")
