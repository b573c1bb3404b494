"""Dialogue model: teacher-forced forward vs streaming steps, session batching, reset, checkpoints."""
import dataclasses

import pytest
import torch

from codec import config_io
from codec.transformer import TransformerConfig
from dialogue import (DelayConfig, DialogueConfig, DialogueConfigError, DuplexModel, DuplexSession, LossWeights,
                      SamplingConfig, StreamConfig, TextTokenizer, delay_tokens, duplex_loss, load_dialogue,
                      UserEncoderConfig, save_dialogue, train_tokenizer)
from dialogue.layout import Columns, delay_rows


def tiny_config(predict_user=False, window=8, delays=DelayConfig(text=0, system=2, user=1),
                audio_rank=None, user_text_delay=None, user_encoder=None, user_text_input=False) -> DialogueConfig:
    streams = StreamConfig(frames_per_step=3, codec_frame_rate=37.5, codebook_size=50, voice_dim=6,
                           silence_token=7, text_vocab_size=40, codec_latency_ms=64.0)
    return DialogueConfig(name="tiny", streams=streams, delays=delays,
                          temporal=TransformerConfig(dim=32, num_layers=2, num_heads=4, window=window, max_step=4),
                          depth=TransformerConfig(dim=16, num_layers=2, num_heads=2), predict_user=predict_user,
                          audio_rank=audio_rank, user_text_delay=user_text_delay, user_encoder=user_encoder,
                          user_text_input=user_text_input)


ENCODER = UserEncoderConfig(dim=12, num_layers=3, kernel_size=3)  # 15 frames of context: 5 steps of K=3


def random_grid(cfg, b, s, gen):
    k = cfg.streams.frames_per_step
    cols = Columns(k)
    tokens = torch.cat([torch.randint(0, cfg.streams.text_vocab_size, (b, s, 1), generator=gen),
                        torch.randint(0, cfg.streams.codebook_size, (b, s, 2 * k), generator=gen)], dim=-1)
    delayed = delay_tokens(tokens, cols.delays(cfg.delays), cols.fills(cfg.streams))
    voice = delay_rows(torch.randn(b, s, cfg.streams.voice_dim, generator=gen), cfg.delays.user, delayed.shape[1])
    return delayed, voice, torch.randn(b, cfg.streams.voice_dim, generator=gen)


def test_config_round_trip_and_checks(tmp_path):
    cfg = tiny_config()
    for suffix in (".yaml", ".json"):
        config_io.save(cfg, tmp_path / f"c{suffix}")
        assert config_io.load(DialogueConfig, tmp_path / f"c{suffix}") == cfg
    with pytest.raises(DialogueConfigError, match="frames_per_step"):
        DuplexModel(DialogueConfig())
    assert cfg.theoretical_latency_ms == pytest.approx(2 * 80.0 + 64.0)
    with pytest.raises(DialogueConfigError, match="text_lead"):
        DuplexModel(dataclasses.replace(cfg, streams=dataclasses.replace(cfg.streams, text_lead=-1)))
    with pytest.raises(DialogueConfigError, match="user_text_delay"):
        DuplexModel(dataclasses.replace(cfg, user_text_delay=-2))
    with pytest.raises(DialogueConfigError, match="user_text_input needs the listening head"):
        DuplexModel(dataclasses.replace(cfg, user_text_input=True))
    with pytest.raises(ValueError, match="pass heard"):
        DuplexModel(tiny_config(user_text_delay=1, user_text_input=True))(*random_grid(cfg, 1, 3, torch.Generator()))
    with pytest.raises(DialogueConfigError, match="user_encoder"):
        DuplexModel(dataclasses.replace(cfg, user_encoder=UserEncoderConfig(kernel_size=0)))
    enc = tiny_config(user_encoder=ENCODER)
    config_io.save(enc, tmp_path / "e.yaml")
    assert config_io.load(DialogueConfig, tmp_path / "e.yaml") == enc and ENCODER.receptive_frames == 15


@pytest.mark.parametrize("predict_user,audio_rank,user_text_delay,user_encoder,user_text_input", [
    (False, None, None, None, False), (True, None, None, None, False), (True, 8, None, None, False),
    (False, None, 2, None, False), (False, None, 2, ENCODER, False), (True, 8, None, ENCODER, False),
    (False, 8, 2, ENCODER, True)])
def test_streaming_steps_reproduce_teacher_forced_logits(rng, predict_user, audio_rank, user_text_delay, user_encoder,
                                                         user_text_input):
    cfg = tiny_config(predict_user, audio_rank=audio_rank, user_text_delay=user_text_delay, user_encoder=user_encoder,
                      user_text_input=user_text_input)
    torch.manual_seed(0)
    model = DuplexModel(cfg).eval()
    tokens, voice, g_sys = random_grid(cfg, 2, 13, rng)  # 13 + 3 delay steps > window 8: the ring wraps
    heard = torch.randint(0, cfg.streams.text_vocab_size, tokens.shape[:2], generator=rng) if user_text_input else None
    with torch.no_grad():
        ref = model(tokens, voice, g_sys, heard)
        prev_text, prev_system, user = model.temporal_inputs(tokens)
        targets = model.depth_targets(tokens)
        out = torch.zeros_like(targets[:, 0])
        with model.streaming(2):
            for t in range(tokens.shape[1]):
                prev_heard = None if heard is None else \
                    (heard[:, t - 1] if t else torch.full_like(heard[:, 0], TextTokenizer.PAD))
                h = model.step_hidden(prev_text[:, t], prev_system[:, t], user[:, t], voice[:, t], g_sys, prev_heard)
                if user_text_delay is not None:  # the listening head reads the same temporal state
                    torch.testing.assert_close(model.listen(h), ref.user_text[:, t], atol=1e-4, rtol=1e-4)
                got = []

                def teacher(q, logits):
                    got.append(logits)
                    return targets[:, t, q]

                model.depth_step(h, teacher, out)
                k = cfg.streams.frames_per_step
                torch.testing.assert_close(got[0], ref.text[:, t], atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(torch.stack(got[1:1 + k], 1), ref.system[:, t], atol=1e-4, rtol=1e-4)
                if predict_user:
                    torch.testing.assert_close(torch.stack(got[1 + k:], 1), ref.user[:, t], atol=1e-4, rtol=1e-4)
                assert torch.equal(out, targets[:, t])


def test_loss_weights_and_gradients(rng):
    cfg = tiny_config(predict_user=True, audio_rank=4)
    model = DuplexModel(cfg)
    tokens, voice, g_sys = random_grid(cfg, 2, 6, rng)
    mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
    mask[1, 4:] = False
    loss, scalars = duplex_loss(model, model(tokens, voice, g_sys), tokens, mask, LossWeights())
    loss.backward()
    assert torch.isfinite(loss) and {"loss/text", "loss/system", "loss/user", "acc/system"} <= set(scalars)
    assert model.text_emb.weight.grad is not None and model.audio_head.heads[-1].weight.grad.abs().sum() > 0
    assert model.codes.weight.grad.abs().sum() > 0  # the shared codebook table learns from every position
    zero_text, _ = duplex_loss(model, model(tokens, voice, g_sys), tokens, mask,
                               LossWeights(text=0.0, user=0.0))
    assert float(zero_text.detach()) == pytest.approx(scalars["loss/system"], rel=1e-5)


def test_epad_targets_get_their_own_weight(rng):
    """text_epad weights the system text's EPAD targets (the decision that a word starts next step)
    apart from PAD; None keeps them with PAD."""
    import torch.nn.functional as F

    cfg = tiny_config()
    model = DuplexModel(cfg)
    tokens, voice, g_sys = random_grid(cfg, 2, 8, rng)
    tokens[:, 2::3, 0] = TextTokenizer.EPAD
    tokens[:, 1::3, 0] = TextTokenizer.PAD
    mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
    logits = model(tokens, voice, g_sys)
    target = model.depth_targets(tokens)[..., 0]
    assert (target == TextTokenizer.EPAD).any() and (target == TextTokenizer.PAD).any()
    ce = F.cross_entropy(logits.text.detach().flatten(0, 1), target.flatten(), reduction="none").view_as(target)
    for epad in (None, 0.5, 0.0, 3.0):
        _, scalars = duplex_loss(model, logits, tokens, mask, LossWeights(text_padding=0.5, text_epad=epad))
        w = torch.where(target == TextTokenizer.PAD, 0.5, 1.0)
        w = torch.where(target == TextTokenizer.EPAD, 0.5 if epad is None else epad, w)
        assert scalars["loss/text"] == pytest.approx(float((ce * w).sum() / w.sum()), rel=1e-5)
        assert 0.0 <= scalars["acc/text_epad"] <= 1.0


def test_listening_head_loss_needs_its_targets_and_trains_the_temporal_state(rng):
    cfg = tiny_config(user_text_delay=2)
    model = DuplexModel(cfg)
    tokens, voice, g_sys = random_grid(cfg, 2, 6, rng)
    mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
    logits = model(tokens, voice, g_sys)
    assert logits.user_text.shape == (*tokens.shape[:2], cfg.streams.text_vocab_size)
    with pytest.raises(ValueError, match="listening head"):
        duplex_loss(model, logits, tokens, mask, LossWeights())
    heard = torch.randint(0, cfg.streams.text_vocab_size, tokens.shape[:2], generator=rng)
    loss, scalars = duplex_loss(model, logits, tokens, mask, LossWeights(), heard)
    assert {"loss/user_text", "acc/user_text_words"} <= set(scalars)
    base, _ = duplex_loss(model, logits, tokens, mask, LossWeights(user_text=0.0), heard)
    assert float((loss - base).detach()) == pytest.approx(0.5 * scalars["loss/user_text"], rel=1e-4)
    loss.backward()
    assert model.user_text_head.weight.grad.abs().sum() > 0 and model.user_emb.tables[0].weight.grad.abs().sum() > 0
    assert DuplexModel(tiny_config()).listen(torch.zeros(1, 32)) is None  # no head, nothing heard


def test_own_audio_noise_corrupts_the_history_not_the_targets(rng):
    """history: the temporal transformer reads a grid with the system's audio corrupted (as sampling
    makes it), the targets stay the clean grid; only system audio columns change, at about the rate."""
    from recipes.dialogue.task import corrupt_own_audio

    cfg = tiny_config()
    model = DuplexModel(cfg)
    tokens, voice, g_sys = random_grid(cfg, 2, 40, rng)
    cols = Columns(cfg.streams.frames_per_step)
    history = corrupt_own_audio(tokens, cols, 0.5, cfg.streams.codebook_size, torch.Generator().manual_seed(0))
    changed = history != tokens
    assert not changed[..., cols.text].any() and not changed[..., cols.user].any()
    assert 0.3 < changed[..., cols.system].float().mean() < 0.55  # a random code can equal the old one
    clean, noisy = model(tokens, voice, g_sys), model(tokens, voice, g_sys, history=history)
    assert not torch.allclose(clean.text, noisy.text)
    same = model(tokens, voice, g_sys, history=tokens)
    assert torch.equal(clean.text, same.text) and torch.equal(clean.system, same.system)
    with pytest.raises(ValueError, match="history must be shaped like tokens"):
        model(tokens, voice, g_sys, history=history[:, :5])
    from recipes.dialogue.task import DialogueTrainConfig

    with pytest.raises(ValueError, match="own_audio_noise is 1.5"):
        DialogueTrainConfig(own_audio_noise=1.5).check()


def test_own_audio_noise_speech_only_keeps_the_system_silence(rng):
    """With the silence token given, only steps where the system speaks are corrupted."""
    from recipes.dialogue.task import corrupt_own_audio

    cfg = tiny_config()
    tokens, _, _ = random_grid(cfg, 2, 40, rng)
    cols = Columns(cfg.streams.frames_per_step)
    silence = cfg.streams.silence_token
    quiet = torch.zeros(tokens.shape[:2], dtype=torch.bool)
    quiet[:, 10:25] = True
    system = tokens[..., cols.system]
    system[quiet] = silence
    system[:, 5, 0] = silence  # one silent frame of a speaking step: that step is still speech
    tokens[..., cols.system] = system
    history = corrupt_own_audio(tokens, cols, 0.5, cfg.streams.codebook_size, torch.Generator().manual_seed(0),
                                silence)
    changed = (history != tokens)[..., cols.system]
    assert not changed[quiet].any()
    assert 0.3 < changed[~quiet].float().mean() < 0.55
    assert changed[:, 5].any()


@pytest.mark.parametrize("user_text_input", [False, True])
def test_session_heard_is_the_listening_heads_argmax(rng, user_text_input):
    """...and the traced text probabilities (`trace_text`) are the teacher-forced text distribution's."""
    cfg = tiny_config(user_text_delay=1, user_text_input=user_text_input)
    torch.manual_seed(3)
    model = DuplexModel(cfg).eval()
    k, s = cfg.streams.frames_per_step, 7
    user = torch.randint(0, cfg.streams.codebook_size, (1, s, k), generator=rng)
    voice = torch.randn(1, s, cfg.streams.voice_dim, generator=rng)
    g_sys = torch.randn(1, cfg.streams.voice_dim, generator=rng)
    heard, texts, systems, traced = [], [], [], []
    with DuplexSession(model, 1, SamplingConfig(0.0, 0, 0.0, 0), system_voice=g_sys, trace_text=True) as session:
        for t in range(s):
            text, system = session.step(user[:, t], voice[:, t])
            traced.append(session.text_probs.clone())
            heard.append(session.heard.clone())
            texts.append(text.clone())
            systems.append(system.clone())
    # rebuild the grid the session produced and read the head teacher-forced: the same pieces
    cols = Columns(k)
    grid = torch.zeros(1, s, cols.width, dtype=torch.long)
    grid[..., cols.text] = torch.stack(texts, 1)
    grid[..., cols.system] = torch.stack(systems, 1)
    grid[..., cols.user] = torch.cat([torch.full((1, 1, k), cfg.streams.silence_token), user[:, :-1]], 1)  # user delay 1
    v = torch.cat([voice[:, :1], voice[:, :-1]], 1)
    heard = torch.stack(heard, 1)
    with torch.no_grad():  # with user_text_input the session fed its own transcript back: so does the reference
        logits = model(grid, v, g_sys, heard)
    ref = logits.user_text.argmax(-1)
    lag = cfg.delays.user + cfg.user_text_delay
    assert torch.equal(heard[:, lag:], ref[:, lag:]) and (heard[:, :lag] == TextTokenizer.PAD).all()
    ids = torch.stack([grid[..., cols.text], torch.full_like(grid[..., 0], TextTokenizer.PAD),
                       torch.full_like(grid[..., 0], TextTokenizer.EPAD)], -1)
    traced = torch.stack(traced, 1)
    torch.testing.assert_close(traced, logits.text.softmax(-1).gather(-1, ids), atol=1e-5, rtol=1e-4)
    assert (traced[..., 0] >= traced[..., 1:].amax(-1) - 1e-6).all()  # greedy: the token chosen is the likeliest


def run_session(model, user, voice, g_sys, seeds, sampling):
    b = user.shape[0]
    texts, systems = [], []
    with DuplexSession(model, b, sampling, system_voice=g_sys, seeds=seeds) as session:
        for t in range(user.shape[1]):
            text, system = session.step(user[:, t], voice[:, t])
            texts.append(text.clone())
            systems.append(system.clone())
    return torch.stack(texts, 1), torch.stack(systems, 1)


@pytest.mark.parametrize("temperature,user_encoder", [(0.0, None), (1.0, None), (1.0, ENCODER)])
def test_session_batch_of_two_equals_two_single_runs(rng, temperature, user_encoder):
    cfg = tiny_config(user_encoder=user_encoder)
    torch.manual_seed(1)
    model = DuplexModel(cfg).eval()
    k = cfg.streams.frames_per_step
    user = torch.randint(0, cfg.streams.codebook_size, (2, 12, k), generator=rng)
    voice = torch.randn(2, 12, cfg.streams.voice_dim, generator=rng)
    g_sys = torch.randn(2, cfg.streams.voice_dim, generator=rng)
    sampling = SamplingConfig(temperature, 10, temperature, 20)
    text2, sys2 = run_session(model, user, voice, g_sys, [11, 12], sampling)
    for b in range(2):
        text1, sys1 = run_session(model, user[b:b + 1], voice[b:b + 1], g_sys[b:b + 1], [11 + b], sampling)
        assert torch.equal(text1[0], text2[b]) and torch.equal(sys1[0], sys2[b])
    # the first `delays.system` steps of system audio are the silence fill, as in training
    assert (sys2[:, :cfg.delays.system] == cfg.streams.silence_token).all()


@pytest.mark.parametrize("user_encoder", [None, ENCODER])
def test_session_reset_one_conversation_and_state_replay(rng, user_encoder):
    cfg = tiny_config(user_encoder=user_encoder)
    model = DuplexModel(cfg).eval()
    k = cfg.streams.frames_per_step
    user = torch.randint(0, cfg.streams.codebook_size, (2, 10, k), generator=rng)
    voice = torch.randn(2, 10, cfg.streams.voice_dim, generator=rng)
    g_sys = torch.randn(cfg.streams.voice_dim, generator=rng)
    greedy = SamplingConfig(0.0, 0, 0.0, 0)
    with DuplexSession(model, 2, greedy, system_voice=g_sys) as session:
        for t in range(5):
            session.step(user[:, t], voice[:, t])
        snapshot = session.get_state()
        session.reset(torch.tensor([True, False]))
        outs = [tuple(x.clone() for x in session.step(user[:, 5 + t], voice[:, 5 + t])) for t in range(5)]
        session.set_state(snapshot)
        session.reset(torch.tensor([True, False]))
        again = [tuple(x.clone() for x in session.step(user[:, 5 + t], voice[:, 5 + t])) for t in range(5)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(outs, again))
    # conversation 0 restarted: it matches a fresh single run on the same input
    fresh_text, fresh_sys = run_session(model, user[:1, 5:], voice[:1, 5:], g_sys, [0], greedy)
    assert torch.equal(torch.stack([o[1][0] for o in outs]), fresh_sys[0])
    assert torch.equal(torch.stack([o[0][0] for o in outs]), fresh_text[0])


def test_checkpoint_round_trip(tmp_path, rng):
    tok = train_tokenizer(["what is two plus two", "two plus two is four", "spell cat"] * 5, 40)
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, streams=dataclasses.replace(cfg.streams, text_vocab_size=tok.vocab_size))
    model = DuplexModel(cfg)
    g = torch.randn(cfg.streams.voice_dim)
    save_dialogue(tmp_path / "m.safetensors", model, tok, "abc123", g, "test")
    bundle = load_dialogue(tmp_path / "m.safetensors", codec_id="abc123")
    assert bundle.model.cfg == cfg and bundle.tokenizer.proto == tok.proto
    assert torch.equal(bundle.system_voice, g)
    for (n, a), (_, b) in zip(model.state_dict().items(), bundle.model.state_dict().items()):
        assert torch.equal(a, b), n
    with pytest.raises(ValueError, match="codec"):
        load_dialogue(tmp_path / "m.safetensors", codec_id="other")
    assert TextTokenizer(tok.proto).vocab_size == tok.vocab_size


def test_paired_codec_is_found_by_identity(tmp_path):
    """The demo's default codec is the one the checkpoint was trained on: beside it (a bundle shipping its
    own codec), then one folder up (a recipe's exp/), then the general codec; never one of another id."""
    from dialogue.checkpoint import paired_codec
    from dialogue.demo import load_demo_codec, untrained_codec

    general, other = untrained_codec(seed=1), untrained_codec(seed=2)
    general_path, exp = tmp_path / "general.safetensors", tmp_path / "exp"
    general.save(general_path)
    tok = train_tokenizer(["what is two plus two", "spell cat"] * 5, 30)
    cfg = tiny_config()
    model = DuplexModel(dataclasses.replace(cfg, streams=dataclasses.replace(cfg.streams, text_vocab_size=tok.vocab_size)))
    on_other, on_general = exp / "adapted" / "model.safetensors", exp / "base" / "model.safetensors"
    save_dialogue(on_other, model, tok, other.codec_id)
    save_dialogue(on_general, model, tok, general.codec_id)
    assert paired_codec(on_other, general_path) is None
    assert paired_codec(on_general, general_path) == general_path
    other.save(exp / "codec.safetensors")
    assert paired_codec(on_other, general_path) == exp / "codec.safetensors"
    assert paired_codec(on_general, general_path) == general_path  # the exp/ codec has another id
    general.save(on_general.parent / "codec.safetensors")
    assert paired_codec(on_general, general_path) == on_general.parent / "codec.safetensors"
    assert load_demo_codec(None, on_other).codec_id == other.codec_id
    assert load_demo_codec(general_path, on_other).codec_id == general.codec_id  # --codec wins


def test_session_steps_reuse_their_buffers(rng):
    cfg = tiny_config(window=4)
    model = DuplexModel(cfg).eval()
    k = cfg.streams.frames_per_step
    with DuplexSession(model, 2, system_voice=torch.zeros(cfg.streams.voice_dim)) as session:
        cache = model.temporal.layers[0].attn.state
        pointers = (cache.keys.data_ptr(), cache.values.data_ptr(), cache.slot_positions.data_ptr())
        outs = set()
        for t in range(12):  # past the ring's size: it wraps in place
            text, system = session.step(torch.randint(0, 50, (2, k), generator=rng), torch.randn(2, 6, generator=rng))
            outs.add((text.data_ptr(), system.data_ptr()))
        assert (cache.keys.data_ptr(), cache.values.data_ptr(), cache.slot_positions.data_ptr()) == pointers
        assert len(outs) == 1 and int(cache.slot_positions.max()) == 11
