"""DuplexSession on the streaming protocol: one conversation of a batch ends and a new one starts in
its slot while the others go on bit-exactly; snapshots are strict and include the random generators."""
import pytest
import torch

from codec.streaming import StreamingError
from dialogue import DuplexModel, DuplexSession, SamplingConfig
from tests.test_dialogue_model import tiny_config

SAMPLING = SamplingConfig(1.0, 10, 1.0, 20)  # sampled, not greedy: the generators matter


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return DuplexModel(tiny_config(user_text_delay=1)).eval()


def inputs(model, b, steps, seed):
    g = torch.Generator().manual_seed(seed)
    s = model.cfg.streams
    return (torch.randint(0, s.codebook_size, (b, steps, s.frames_per_step), generator=g),
            torch.randn(b, steps, s.voice_dim, generator=g))


def run(session, user, voice):
    out = []
    for t in range(user.shape[1]):
        text, system = session.step(user[:, t], voice[:, t])
        out.append(torch.cat([text[:, None], system, session.heard[:, None]], 1).clone())
    return torch.stack(out, 1)  # [B, S, 1 + K + 1]


def test_restart_one_conversation_while_the_others_go_on(model):
    g_sys = torch.randn(3, model.cfg.streams.voice_dim, generator=torch.Generator().manual_seed(0))
    user, voice = inputs(model, 3, 14, 1)
    new_user, new_voice = inputs(model, 3, 8, 2)
    with DuplexSession(model, 3, SAMPLING, g_sys, seeds=[5, 6, 7]) as session:
        ref = run(session, user, voice)
    with DuplexSession(model, 3, SAMPLING, g_sys, seeds=[5, 6, 7]) as session:
        head = run(session, user[:, :6], voice[:, :6])
        session.set_seed(1, 99)
        session.reset(torch.tensor([False, True, False]))  # conversation 1 ends, a new one takes the slot
        assert session.steps.tolist() == [6, 0, 6]
        user2, voice2 = user[:, 6:].clone(), voice[:, 6:].clone()
        user2[1], voice2[1] = new_user[1], new_voice[1]
        tail = run(session, user2, voice2)
    got = torch.cat([head, tail], 1)
    for b in (0, 2):  # the others: bit for bit as if nothing happened, and as a session of their own
        assert torch.equal(got[b], ref[b])
        with DuplexSession(model, 1, SAMPLING, g_sys[b:b + 1], seeds=[5 + b]) as alone:
            assert torch.equal(run(alone, user[b:b + 1], voice[b:b + 1])[0], got[b])
    with DuplexSession(model, 1, SAMPLING, g_sys[1:2], seeds=[99]) as fresh:  # the new one: a fresh session
        assert torch.equal(run(fresh, new_user[1:2], new_voice[1:2])[0], tail[1])


def test_snapshot_rewinds_sampling_and_is_strict(model):
    g_sys = torch.zeros(model.cfg.streams.voice_dim)
    user, voice = inputs(model, 2, 10, 3)
    with DuplexSession(model, 2, SAMPLING, g_sys) as session:
        run(session, user[:, :4], voice[:, :4])
        snap = session.get_state()
        assert {"session/prev_text", "session/user_fifo", "rng/0", "rng/1"} <= set(snap)
        assert any(k.startswith("model/temporal.") for k in snap)
        first = run(session, user[:, 4:], voice[:, 4:])
        session.set_state(snap)
        assert torch.equal(run(session, user[:, 4:], voice[:, 4:]), first)
        with pytest.raises(StreamingError, match=r"unknown keys \['session/bogus'\]"):
            session.set_state({**snap, "session/bogus": torch.zeros(2)})
        with pytest.raises(StreamingError, match=r"missing keys \['session/steps'\]"):
            session.set_state({k: v for k, v in snap.items() if k != "session/steps"})
        with pytest.raises(StreamingError, match=r"missing keys \['rng/1'\]"):
            session.set_state({k: v for k, v in snap.items() if k != "rng/1"})
        with pytest.raises(ValueError, match="mask must be"):
            session.reset(torch.tensor([True, False, True]))
