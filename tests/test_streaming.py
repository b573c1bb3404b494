"""The streaming protocol: every stateful layer streamed in random chunks equals one offline call."""
import random

import pytest
import torch

from codec.conv import StreamingConv1d, StreamingConvTranspose1d
from codec.streaming import StreamingError
from codec.transformer import CausalTransformer, TransformerConfig


def run_chunks(module, x, sizes, dim):
    outs, i = [], 0
    while i < x.shape[dim]:
        n = next(sizes)
        outs.append(module(x.narrow(dim, i, min(n, x.shape[dim] - i))))
        i += n
    return torch.cat(outs, dim=dim)


def random_sizes(seed, lo, hi, multiple=1):
    r = random.Random(seed)
    while True:
        yield r.randint(lo, hi) * multiple


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (7, 2, 1), (5, 1, 4), (4, 4, 1)])
def test_conv_streams_like_offline(kernel, stride, dilation):
    torch.manual_seed(0)
    conv = StreamingConv1d(3, 5, kernel, stride=stride, dilation=dilation).eval()
    x = torch.randn(2, 3, 40 * stride)
    with torch.no_grad():
        ref = conv(x)
        for seed in range(3):
            with conv.streaming(2):
                out = run_chunks(conv, x, random_sizes(seed, 1, 9, stride), -1)
            torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_conv_transpose_streams_like_offline():
    torch.manual_seed(0)
    conv = StreamingConvTranspose1d(4, 3, 8, stride=4).eval()
    x = torch.randn(2, 4, 33)
    with torch.no_grad():
        ref = conv(x)
        with conv.streaming(2):
            out = run_chunks(conv, x, random_sizes(1, 1, 5), -1)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def small_transformer(window=6, max_step=3, kv_heads=2):
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=32, num_layers=2, num_heads=4, num_kv_heads=kv_heads, window=window, max_step=max_step)
    return CausalTransformer(cfg).eval()


def test_transformer_streams_like_offline_through_ring_wraparound():
    model = small_transformer()
    x = torch.randn(2, 57, 32)  # 57 frames >> ring of 8 slots: the ring wraps many times
    with torch.no_grad():
        ref = model(x)
        for seed in range(3):
            with model.streaming(2):
                out = run_chunks(model, x, random_sizes(seed, 1, 11), 1)
            torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def test_transformer_is_causal():
    model = small_transformer(window=100)
    x = torch.randn(1, 20, 32)
    y = x.clone()
    y[:, 12:] = torch.randn(1, 8, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, :12], model(y)[:, :12])
        assert not torch.allclose(model(x)[:, 12:], model(y)[:, 12:])


def test_per_item_reset_and_state_snapshot():
    model = small_transformer()
    a, b = torch.randn(1, 10, 32), torch.randn(1, 10, 32)
    with torch.no_grad(), model.streaming(2):
        model(torch.cat([a, b])[:, :5])
        model.reset(torch.tensor([True, False]))  # item 0 starts a new conversation
        snap = model.get_state()
        out0 = model(torch.cat([b, b])[:, 5:])
        model.set_state(snap)  # rewind
        out1 = model(torch.cat([b, b])[:, 5:])
        torch.testing.assert_close(out0, out1)
    with torch.no_grad():
        fresh = model(b[:, 5:])  # item 0 after reset == a fresh stream over b[:, 5:]
        alone = model(b)[:, 5:]  # item 1 == b continued
    torch.testing.assert_close(out0[:1], fresh, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out0[1:], alone, atol=2e-5, rtol=1e-4)


def test_set_state_is_strict():
    model = small_transformer()
    with model.streaming(1):
        snap = model.get_state()
        snap["bogus/field"] = torch.zeros(1)
        with pytest.raises(StreamingError, match="unknown keys"):
            model.set_state(snap)


def test_stream_errors_are_clear():
    model = small_transformer()
    attn = model.layers[0].attn
    with pytest.raises(StreamingError, match="not streaming"):
        attn.state
    with model.streaming(2):
        with pytest.raises(StreamingError, match="batch"):
            model(torch.randn(3, 2, 32))
        with pytest.raises(StreamingError, match="already streaming"):
            with model.streaming(2):
                pass
    unbounded = CausalTransformer(TransformerConfig(dim=32, num_layers=1, num_heads=4, window=None))
    with pytest.raises(StreamingError, match="window"):
        with unbounded.streaming(1):
            pass
