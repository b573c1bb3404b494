"""Speed of Duet's Triton kernels against their peers and against the hardware.

Times the causal/sliding-window attention forward and backward against SDPA's flash backend, the
ring-cache decode step against SDPA with a position mask, and FSQ against
vector_quantize_pytorch.FSQ; reports achieved TFLOP/s and GB/s and their fraction of the device's
peak. Without a CUDA device it prints the expected FLOPs, bytes and H100 roofline times per call
(formulas in benchmarks/ROOFLINE.md), so the first GPU run can be judged.

    python benchmarks/kernels.py                 # everything (GPU), or the roofline table (no GPU)
    python benchmarks/kernels.py --quick         # fewer configs
    python benchmarks/kernels.py --only fsq      # one of: fwd, bwd, decode, fsq
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

# H100 SXM5 dense peaks (no sparsity); the GPU actually found is named in the output.
PEAK_TFLOPS = {torch.bfloat16: 989.0, torch.float16: 989.0, torch.float32: 67.0}  # fp32: non-tensor-core
PEAK_TBPS = 3.35

SEQ_LENS = (512, 1024, 2048, 4096, 8192, 16384)
TOKENS_PER_BATCH = 16384


def sdpa_flash_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The causal-attention peer: SDPA forced onto its FlashAttention-2 backend (with an explicit mask SDPA
    would silently pick a slower one). Flash SDPA has no sliding window, so for windowed configs it computes
    full causal attention, more work than the kernel it is compared with (the table says so).
    q [B, H, T, D], k/v [B, Hkv, T, D] (GQA allowed)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.shape[1] != q.shape[1])


def sdpa_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The ring-decode peer: SDPA with an explicit boolean mask [B, 1, Tq, S] (any backend SDPA picks),
    what a ring cache costs without a dedicated kernel."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


@dataclass(frozen=True)
class AttnConfig:
    """One training-attention call: q [B, H, T, D], k/v [B, Hkv, T, D], causal, optional window."""
    batch: int
    heads: int
    kv_heads: int
    seq: int
    head_dim: int
    window: int | None

    def label(self) -> str:
        w = "-" if self.window is None else str(self.window)
        return f"B{self.batch} H{self.heads}/{self.kv_heads} T{self.seq} D{self.head_dim} w{w}"


@dataclass(frozen=True)
class DecodeConfig:
    """One decode step: q [B, H, Tq, D] against a full ring cache [B, Hkv, S, D]."""
    batch: int
    heads: int
    kv_heads: int
    q_len: int
    slots: int
    head_dim: int
    window: int | None

    def label(self) -> str:
        w = "-" if self.window is None else str(self.window)
        return f"B{self.batch} H{self.heads}/{self.kv_heads} Tq{self.q_len} S{self.slots} D{self.head_dim} w{w}"


@dataclass(frozen=True)
class FSQConfig:
    """z [N, len(levels)] → codes [N, d] and indices [N]."""
    rows: int
    levels: tuple[int, ...]

    def label(self) -> str:
        return f"N{self.rows} L{list(self.levels)}"


# ----------------------------------------------------------------------------------- formulas

def visible_pairs(seq: int, window: int | None) -> int:
    """Number of (query, key) pairs a causal (windowed) mask lets through for T = seq, q_offset = 0."""
    w = seq if window is None else min(window, seq)
    return w * (w + 1) // 2 + (seq - w) * w


def attn_fwd_flops(c: AttnConfig) -> float:
    """2 matmuls (QK^T, PV) x 2 FLOP per multiply-add over the visible pairs."""
    return 4.0 * c.batch * c.heads * visible_pairs(c.seq, c.window) * c.head_dim


def attn_bwd_flops(c: AttnConfig) -> float:
    """5 matmuls (recomputed QK^T, dV, dP, dQ, dK) = 2.5x the forward."""
    return 2.5 * attn_fwd_flops(c)


def attn_fwd_bytes(c: AttnConfig, elt: int) -> float:
    """Compulsory HBM traffic: read Q, K, V, write O, write the fp32 logsumexp."""
    q = c.batch * c.heads * c.seq * c.head_dim
    kv = c.batch * c.kv_heads * c.seq * c.head_dim
    return elt * (2 * q + 2 * kv) + 4 * c.batch * c.heads * c.seq


def attn_bwd_bytes(c: AttnConfig, elt: int) -> float:
    """Read Q, K, V, O, dO, LSE; write dQ, dK, dV and the fp32 rowsum(O*dO) (written then read)."""
    q = c.batch * c.heads * c.seq * c.head_dim
    kv = c.batch * c.kv_heads * c.seq * c.head_dim
    return elt * (4 * q + 4 * kv) + 12 * c.batch * c.heads * c.seq


def decode_flops(c: DecodeConfig) -> float:
    """Useful work: each query attends to min(S, window) valid slots of a full ring."""
    visible = c.slots if c.window is None else min(c.window, c.slots)
    return 4.0 * c.batch * c.heads * c.q_len * visible * c.head_dim


def decode_bytes(c: DecodeConfig, elt: int) -> float:
    """The kernel reads every slot (positions decide visibility): K and V, int64 slot positions, q, o."""
    cache = 2 * c.batch * c.kv_heads * c.slots * c.head_dim
    qo = 2 * c.batch * c.heads * c.q_len * c.head_dim
    return elt * (cache + qo) + 8 * c.batch * (c.slots + c.q_len)


def fsq_bytes(c: FSQConfig, elt: int) -> float:
    """Read z, write codes (same dtype), write an int64 index per row."""
    return c.rows * len(c.levels) * 2 * elt + 8 * c.rows


def roofline_ms(flops: float, nbytes: float, dtype: torch.dtype) -> float:
    return 1e3 * max(flops / (PEAK_TFLOPS[dtype] * 1e12), nbytes / (PEAK_TBPS * 1e12))


# ----------------------------------------------------------------------------------- configs

def attn_configs(quick: bool) -> list[AttnConfig]:
    out = []
    for seq in SEQ_LENS[::2] if quick else SEQ_LENS:
        batch = max(1, TOKENS_PER_BATCH // seq)
        for head_dim, heads, kv_heads in ((64, 16, 16), (128, 8, 8), (128, 16, 4)):
            if quick and head_dim == 64:
                continue
            for window in (None, 1024):
                if window is not None and window >= seq:
                    continue
                out.append(AttnConfig(batch, heads, kv_heads, seq, head_dim, window))
    return out


def decode_configs(quick: bool) -> list[DecodeConfig]:
    out = []
    for batch in (1, 16):
        for slots in (2048, 16384):
            for head_dim, heads, kv_heads in ((64, 16, 16), (128, 32, 8)):
                for window in (None, 1024):
                    if quick and (window is not None or head_dim == 64):
                        continue
                    out.append(DecodeConfig(batch, heads, kv_heads, 1, slots, head_dim, window))
    return out


def fsq_configs(quick: bool) -> list[FSQConfig]:
    rows = (1 << 20,) if quick else (1 << 16, 1 << 20, 1 << 23)
    return [FSQConfig(n, lv) for n in rows for lv in ((3,) * 8, (8, 5, 5, 5))]


# ----------------------------------------------------------------------------------- printing

def _row(cells, widths):
    return "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def print_roofline(dtype: torch.dtype, quick: bool, only: str | None) -> None:
    elt = torch.finfo(dtype).bits // 8
    print(f"expected per call on an H100 SXM ({PEAK_TFLOPS[dtype]:.0f} TFLOP/s {str(dtype)[6:]} dense, "
          f"{PEAK_TBPS} TB/s); roofline = max(FLOPs / peak, bytes / bandwidth)")
    widths = (11, 38, 11, 11, 9, 12, 10)
    print(_row(("op", "config", "GFLOP", "MB", "FLOP/B", "roofline ms", "bound"), widths))
    rows = []
    if only in (None, "fwd", "bwd"):
        for c in attn_configs(quick):
            if only in (None, "fwd"):
                rows.append(("attn fwd", c.label(), attn_fwd_flops(c), attn_fwd_bytes(c, elt)))
            if only in (None, "bwd"):
                rows.append(("attn bwd", c.label(), attn_bwd_flops(c), attn_bwd_bytes(c, elt)))
    if only in (None, "decode"):
        for c in decode_configs(quick):
            rows.append(("decode", c.label(), decode_flops(c), decode_bytes(c, elt)))
    if only in (None, "fsq"):
        for c in fsq_configs(quick):
            rows.append(("fsq", c.label(), 0.0, fsq_bytes(c, elt)))
    for op, label, flops, nbytes in rows:
        intensity = flops / nbytes
        ridge = PEAK_TFLOPS[dtype] / PEAK_TBPS
        print(_row((op, label, f"{flops / 1e9:.1f}", f"{nbytes / 1e6:.1f}", f"{intensity:.1f}",
                    f"{roofline_ms(flops, nbytes, dtype):.4f}", "compute" if intensity > ridge else "memory"), widths))


def _bench(fn) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def check_correctness(dtype: torch.dtype) -> None:
    """Before timing: the GPU kernels against the reference on a few awkward shapes."""
    from kernels import reference
    from kernels.triton_attention import causal_attention_triton
    from kernels.triton_ring_attention import ring_attention_triton

    tol = {torch.float32: 2e-3, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
    dev = "cuda"
    for (b, h, hkv, tq, tk, d, off, win) in ((2, 4, 2, 333, 333, 64, 0, 100), (1, 8, 2, 200, 713, 128, 513, None),
                                             (1, 2, 1, 1, 17, 32, 16, 5), (2, 4, 4, 257, 257, 48, 0, None)):
        q = torch.randn(b, h, tq, d, device=dev, dtype=dtype, requires_grad=True)
        k = torch.randn(b, hkv, tk, d, device=dev, dtype=dtype, requires_grad=True)
        v = torch.randn(b, hkv, tk, d, device=dev, dtype=dtype, requires_grad=True)
        do = torch.randn(b, h, tq, d, device=dev, dtype=dtype)
        got = [causal_attention_triton(q, k, v, q_offset=off, window=win)]
        got += torch.autograd.grad(got[0], (q, k, v), do)
        qf, kf, vf = (x.detach().float().requires_grad_() for x in (q, k, v))
        want = [reference.causal_attention_reference(qf, kf, vf, q_offset=off, window=win)]
        want += torch.autograd.grad(want[0], (qf, kf, vf), do.float())
        errs = [_max_err(a, w) / max(1.0, w.abs().max().item()) for a, w in zip(got, want)]
        status = "ok" if max(errs) < tol else "MISMATCH"
        print(f"check attn B{b} H{h}/{hkv} Tq{tq} Tk{tk} D{d} off{off} w{win}: rel err o/dq/dk/dv "
              + " ".join(f"{e:.1e}" for e in errs) + f"  {status}")
    b, h, hkv, slots, d = 3, 8, 2, 1000, 64
    q = torch.randn(b, h, 2, d, device=dev, dtype=dtype)
    k = torch.randn(b, hkv, slots, d, device=dev, dtype=dtype)
    v = torch.randn(b, hkv, slots, d, device=dev, dtype=dtype)
    written = torch.tensor([2500, 700, 1], device=dev)
    cache_pos = torch.full((b, slots), -1, dtype=torch.long, device=dev)
    for i, n in enumerate(written.tolist()):
        p = torch.arange(max(0, n - slots), n, device=dev)
        cache_pos[i, p % slots] = p
    q_pos = torch.stack([torch.tensor([n - 2, n - 1], device=dev) for n in written.tolist()])
    for splits in (None, 1, 7):
        got = ring_attention_triton(q, k, v, q_pos, cache_pos, window=600, num_splits=splits)
        want = reference.ring_attention_reference(q.float(), k.float(), v.float(), q_pos, cache_pos, window=600)
        err = _max_err(got, want)
        print(f"check ring splits={splits}: max err {err:.1e}  {'ok' if err < tol else 'MISMATCH'}")


def run_gpu(dtype: torch.dtype, quick: bool, only: str | None) -> None:
    from vector_quantize_pytorch import FSQ

    from kernels.reference import position_mask
    from kernels.triton_attention import causal_attention_triton
    from kernels.triton_ring_attention import ring_attention_triton
    from kernels.triton_fsq import fsq_triton

    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, {props.multi_processor_count} SMs; peaks used: "
          f"{PEAK_TFLOPS[dtype]:.0f} TFLOP/s, {PEAK_TBPS} TB/s (H100 SXM)")
    check_correctness(dtype)
    elt = torch.finfo(dtype).bits // 8
    widths = (10, 38, 9, 9, 7, 9, 7, 8, 8)
    print(_row(("op", "config", "ours ms", "peer ms", "speedup", "TFLOP/s", "%peak", "GB/s", "roof ms"), widths))

    def report(op, label, ours, peer, flops, nbytes):
        tflops = flops / ours / 1e9
        gbps = nbytes / ours / 1e6
        frac = tflops / PEAK_TFLOPS[dtype] if flops else gbps / (PEAK_TBPS * 1e3)
        print(_row((op, label, f"{ours:.3f}", "-" if peer is None else f"{peer:.3f}",
                    "-" if peer is None else f"{peer / ours:.2f}x", f"{tflops:.1f}", f"{100 * frac:.0f}%",
                    f"{gbps:.0f}", f"{roofline_ms(flops, nbytes, dtype):.3f}"), widths), flush=True)

    if only in (None, "fwd", "bwd"):
        for c in attn_configs(quick):
            q = torch.randn(c.batch, c.heads, c.seq, c.head_dim, device="cuda", dtype=dtype, requires_grad=True)
            k = torch.randn(c.batch, c.kv_heads, c.seq, c.head_dim, device="cuda", dtype=dtype, requires_grad=True)
            v = torch.randn_like(k, requires_grad=True)
            do = torch.randn_like(q)
            ours = lambda: causal_attention_triton(q, k, v, window=c.window)  # noqa: E731
            peer = lambda: sdpa_flash_causal(q, k, v)  # noqa: E731  (no window: full causal)
            try:
                peer_ms = _bench(peer)
                o_peer = peer()
                peer_bwd = _bench(lambda: torch.autograd.grad(o_peer, (q, k, v), do, retain_graph=True))
            except RuntimeError as err:  # flash backend unavailable for this shape/dtype
                print(f"  (SDPA flash unavailable: {str(err).splitlines()[0][:80]})")
                peer_ms = peer_bwd = None
            label = c.label() + ("*" if c.window else "")
            if only in (None, "fwd"):
                report("attn fwd", label, _bench(ours), peer_ms, attn_fwd_flops(c), attn_fwd_bytes(c, elt))
            if only in (None, "bwd"):
                o = ours()
                ours_bwd = _bench(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
                report("attn bwd", label, ours_bwd, peer_bwd, attn_bwd_flops(c), attn_bwd_bytes(c, elt))
            del q, k, v, do
        print("  * windowed: SDPA flash has no window and computes the full causal product (more FLOPs).")
    if only in (None, "decode"):
        for c in decode_configs(quick):
            q = torch.randn(c.batch, c.heads, c.q_len, c.head_dim, device="cuda", dtype=dtype)
            k = torch.randn(c.batch, c.kv_heads, c.slots, c.head_dim, device="cuda", dtype=dtype)
            v = torch.randn_like(k)
            written = 3 * c.slots + 17  # a wrapped ring
            pos = torch.arange(written - c.slots, written, device="cuda")
            cache_pos = pos[torch.argsort(pos % c.slots)][None].expand(c.batch, -1).contiguous()
            q_pos = torch.full((c.batch, c.q_len), written - 1, device="cuda")
            mask = position_mask(q_pos, cache_pos, c.window)
            ours = _bench(lambda: ring_attention_triton(q, k, v, q_pos, cache_pos, window=c.window))
            peer = _bench(lambda: sdpa_decode(q, k, v, mask))
            report("decode", c.label(), ours, peer, decode_flops(c), decode_bytes(c, elt))
        print("  peer: SDPA with a precomputed boolean position mask (mask build not timed).")
    if only in (None, "fsq"):
        for c in fsq_configs(quick):
            z = torch.randn(c.rows, len(c.levels), device="cuda", dtype=dtype)
            vq = FSQ(list(c.levels)).cuda()
            ours = _bench(lambda: fsq_triton(z, c.levels))
            peer = _bench(lambda: vq(z[None]))
            report("fsq", c.label(), ours, peer, 0.0, fsq_bytes(c, elt))
        print("  peer: vector_quantize_pytorch.FSQ (forward, indices on; it upcasts to fp32 internally).")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configs")
    parser.add_argument("--only", choices=("fwd", "bwd", "decode", "fsq"), default=None)
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    args = parser.parse_args(argv)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to time")
        print_roofline(dtype, args.quick, args.only)
        return
    run_gpu(dtype, args.quick, args.only)


if __name__ == "__main__":
    main()
