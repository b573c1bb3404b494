"""The codec's multi-stage training task (DESIGN.md, "Training is multi-stage"; its config: train_config.py).

    autoencoder  encoder + mel decoder on A: log-mel L1/L2
    semantic     (encoder/decoder frozen) semantic projector (VAE→FSQ) + paralinguistic encoder +
                 connector + text encoder: MSE(Â, A), mel through the frozen decoder, frame-level
                 symmetric InfoNCE(semantic frames, phone frames), hinged KL with warm-up; optionally the
                 semantic branch hears a perturbed copy (perturb.py; or the crop's pitch twin, twins.py) and
                 its latent is pulled to the clean copy's (view consistency) and held in the same FSQ bins
                 (code agreement), from `view_start` on; the branch reads the encoder's A, or (a "phones"
                 `semantic_input`) the log-mel through a frame phone classifier, the encoder then only
                 serving the target
    vocoder      causal iSTFT vocoder on ground-truth mels: mel L1 + multi-resolution STFT
                 (auraloss), then adversarial + feature matching against encodec's MS-STFT discriminator
    finetune     connector + decoder + vocoder end to end from tokens, same waveform losses

Log-mels (inputs and targets alike) are computed in fp32 whatever the trainer's autocast. Logged
scalars are detached tensors, read by the trainer once per `log_every` steps (no per-step host sync);
only the semantic and finetune stages, which hear a voice reference, have reference crops cut.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec.model import SpeechCodec

from ..trainer import LossTerm, TrainingTask
from .discriminators import build_discriminator
from .losses import (code_agreement, frame_infonce, hinged_kl, phone_recognition_loss, posterior_consistency,
                     view_consistency, warmup)
from .perturb import GuardedVoiceChange, perturb
from .shards import CropBatch, CropSampler, Shard
from .text_encoder import FrameTextEncoder
from .train_config import CodecTrainConfig

VOICE_STAGES = ("semantic", "finetune")  # the stages that hear a voice reference (ParalinguisticEncoder)


def log_mel(m: "CodecTrainingModel", wav: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
    """The codec front end's log-mel of wav [B, samples] (with its history), in fp32 under any autocast:
    the mels are the reconstruction targets, and bf16 would put its rounding error into them."""
    with torch.autocast(wav.device.type, enabled=False):
        return m.codec.frontend(wav.float(), None if history is None else history.float())


def codes_in_batch(indices: torch.Tensor, levels) -> torch.Tensor:
    """How many distinct FSQ codes `indices` holds, as a 0-d tensor (no host sync, unlike unique())."""
    seen = torch.zeros(math.prod(levels), device=indices.device)
    return seen.index_fill_(0, indices.reshape(-1).long(), 1.0).sum()


def _detached(scalars: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in scalars.items()}


class CodecTrainingModel(nn.Module):
    """The codec plus what only training needs (text encoder, contrastive head, discriminator)."""

    def __init__(self, cfg: CodecTrainConfig, num_phones: int) -> None:
        super().__init__()
        codec_cfg = cfg.codec_config()
        self.codec = SpeechCodec(codec_cfg)
        self.text_encoder = FrameTextEncoder(num_phones, out_dim=cfg.contrastive_dim)
        self.speech_head = nn.Linear(len(codec_cfg.fsq_levels), cfg.contrastive_dim)
        self.phone_head = nn.Sequential(nn.Linear(len(codec_cfg.fsq_levels), 128), nn.GELU(), nn.Linear(128, num_phones)) \
            if cfg.stage == "semantic" and cfg.weights.frame_phone > 0 else None
        self.discriminator = None
        if cfg.stage in ("vocoder", "finetune") and cfg.disc_filters > 0:
            self.discriminator = build_discriminator(codec_cfg.mel.hop_length, cfg.disc_filters, tuple(cfg.disc_periods))


def _check_holds_phone_classifier(init_from: str | None) -> None:
    """A frozen classifier must be a trained one: from `init_from` (`assemble --phone-classifier`), which the
    trainer loads without strictness, so a seed without it would leave the classifier random and frozen."""
    key = "codec.semantic.phones.classify.weight"
    if init_from is None:
        raise ValueError("freeze_phone_classifier: the classifier comes from init_from, and none is set")
    from safetensors import safe_open

    with safe_open(str(Path(init_from) / "model.safetensors"), framework="pt") as f:
        if key not in f.keys():
            raise ValueError(f"freeze_phone_classifier: {init_from} holds no phone classifier ({key}); make it with "
                             "`python -m recipes.codec.assemble ... --phone-classifier CLASSIFIER`")


def _trainable(model: CodecTrainingModel, cfg: CodecTrainConfig) -> list[nn.Module]:
    c, stage = model.codec, cfg.stage
    semantic = [c.semantic, c.paralinguistic, c.connector, model.text_encoder, model.speech_head]
    if model.phone_head is not None:
        semantic.append(model.phone_head)
    return {"autoencoder": [c.encoder, c.decoder],
            "semantic": semantic,
            "vocoder": [c.vocoder],
            "finetune": [c.connector, c.decoder] + ([c.vocoder] if cfg.finetune_vocoder else [])}[stage]


class CodecTask(TrainingTask):
    # a stage's discriminator is its own (its size is the stage's disc_filters/disc_periods): never warm-started
    init_skip = ("discriminator.",)

    def __init__(self, cfg: CodecTrainConfig) -> None:
        self.cfg = cfg
        self.shard = Shard.load(cfg.shard)
        twin_path = cfg.perturbation.twin_shard if cfg.perturbation.enabled and cfg.stage == "semantic" else None
        self.twins = Shard.load(twin_path) if twin_path else None
        self.voice_change = GuardedVoiceChange()  # its worker process starts at the first perturbed batch
        codec_cfg = cfg.codec_config()
        if self.shard.sample_rate != codec_cfg.sample_rate or self.shard.hop_length != codec_cfg.mel.hop_length:
            raise ValueError(f"{cfg.shard}: shard is {self.shard.sample_rate} Hz / hop {self.shard.hop_length}, "
                             f"codec {codec_cfg.name} needs {codec_cfg.sample_rate} Hz / hop {codec_cfg.mel.hop_length}")
        units = codec_cfg.semantic_input
        if units.kind == "phones" and units.n_units != len(self.shard.phones):
            raise ValueError(f"{cfg.shard}: {len(self.shard.phones)} phones, but the codec's phone classifier has "
                             f"semantic_input.n_units = {units.n_units}")
        if cfg.freeze_phone_classifier and cfg.stage == "semantic":  # init_from loads non-strictly: check it here
            _check_holds_phone_classifier(cfg.init_from)
        self.codec_cfg = codec_cfg
        self.mrstft = None

    def build_model(self) -> nn.Module:
        model = CodecTrainingModel(self.cfg, len(self.shard.phones))
        model.requires_grad_(False)
        for m in _trainable(model, self.cfg):
            m.requires_grad_(True)
        if self.cfg.freeze_phone_classifier and self.cfg.stage == "semantic":
            phones = model.codec.semantic.phones
            for m in (phones.inp, phones.transformer, phones.classify):
                m.requires_grad_(False)
        if model.discriminator is not None:
            model.discriminator.requires_grad_(True)
        return model

    def parameter_groups(self, model):
        groups = {"main": [p for m in _trainable(model, self.cfg) for p in m.parameters() if p.requires_grad]}
        if model.discriminator is not None:
            groups["disc"] = list(model.discriminator.parameters())
        return groups

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator[CropBatch]:
        c = self.codec_cfg
        sampler = CropSampler(self.shard, self.cfg.batch_size, self.cfg.segment_frames, c.downsample,
                              c.mel.n_fft - c.mel.hop_length, seed=self.cfg.trainer.seed, ref_frames=self.cfg.ref_frames,
                              twin=self.twins, references=self.cfg.stage in VOICE_STAGES)
        step = start_step
        while True:
            batch = sampler.batch(step, rank)
            if self.cfg.stage == "semantic" and self.cfg.perturbation.enabled:
                batch = self._perturbed(batch, np.random.default_rng([self.cfg.trainer.seed, step, rank, 1]))
            yield batch
            step += 1

    def _perturbed(self, batch: CropBatch, rng: np.random.Generator) -> CropBatch:
        """The batch with `perturbed_wav/history`: each crop and its history changed as one signal, starting
        from its pitch twin (when it has one that differs) with probability `twin_rate`."""
        full = torch.cat([batch.history, batch.wav], dim=-1).numpy()
        cfg, sr = self.cfg.perturbation, self.codec_cfg.sample_rate
        if batch.twin_wav is None:
            changed = [perturb(x, sr, rng, cfg, voice_change=self.voice_change) for x in full]
        else:
            twins = torch.cat([batch.twin_history, batch.twin_wav], dim=-1).numpy()
            use_twin = (rng.uniform(size=len(full)) < cfg.twin_rate) & np.any(twins != full, axis=-1)
            changed = [perturb(t, sr, rng, cfg, change_pitch=False) if use
                       else perturb(x, sr, rng, cfg, voice_change=self.voice_change)
                       for x, t, use in zip(full, twins, use_twin)]
        changed = torch.from_numpy(np.stack(changed))
        n_hist = batch.history.shape[-1]
        return dataclasses.replace(batch, perturbed_wav=changed[:, n_hist:], perturbed_history=changed[:, :n_hist])

    # --- losses ----------------------------------------------------------------------------------
    def losses(self, model: CodecTrainingModel, batch: CropBatch, step: int) -> Iterator[LossTerm]:
        m = model
        mel = log_mel(m, batch.wav, batch.history)
        if self.cfg.stage == "autoencoder":
            yield self._autoencoder(m, mel)
        elif self.cfg.stage == "semantic":
            yield self._semantic(m, mel, batch, step)
        else:
            yield from self._waveform(m, mel, batch, step)

    def _autoencoder(self, m, mel):
        rec = m.codec.decoder(m.codec.encoder(mel))
        l1, l2 = F.l1_loss(rec, mel), F.mse_loss(rec, mel)
        return LossTerm("main", self.cfg.weights.mel * (l1 + l2), _detached({"ae/mel_l1": l1, "ae/mel_l2": l2}))

    def _voice(self, m, ref_wav, sample: bool):
        mu, logvar = m.codec.paralinguistic(log_mel(m, ref_wav))
        mu, logvar = mu[:, -1], logvar[:, -1]
        g = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return g, mu, logvar

    def _semantic(self, m, mel, batch, step):
        w = self.cfg.weights
        with torch.no_grad():
            a = m.codec.encoder(mel)  # the target: the clean crop's latent
            src = mel if m.codec.semantic.reads_mel else a
            src_in = src if batch.perturbed_wav is None else m.codec.semantic_source(
                log_mel(m, batch.perturbed_wav, batch.perturbed_history))
        sem = m.codec.semantic(src_in, sample=True)
        consistency = agreement = None
        clean = None
        phone_views = sem.unit_logits is not None and (w.phone_consistency > 0 or w.phone_recognition_clean > 0)
        if batch.perturbed_wav is not None and (w.consistency > 0 or w.code_agreement > 0 or phone_views):
            clean = m.codec.semantic(src)
            mu_clean = clean.mu
            if w.consistency > 0:
                consistency = view_consistency(sem.mu, mu_clean)
            if w.code_agreement > 0:
                agreement = code_agreement(sem.mu, mu_clean, self.codec_cfg.fsq_levels, w.code_margin)
        g, g_mu, g_logvar = self._voice(m, batch.ref_wav, sample=True)
        a_hat = m.codec.connector(sem.codes, g)
        latent = F.mse_loss(a_hat, a)
        dec = F.l1_loss(m.codec.decoder(a_hat), mel)
        labels = batch.labels[:, ::self.codec_cfg.downsample]
        valid = labels >= 0
        text = m.text_encoder(labels.clamp_min(0))
        # + 0·text: a batch without transcripts (real speech) still puts the text encoder in the graph, so every
        # rank has a gradient, zero here, for every parameter the ranks average
        nce = frame_infonce(m.speech_head(sem.codes), text, valid, self.cfg.contrastive_temperature) + 0.0 * text.sum()
        view_ramp = warmup(step, w.view_start, w.view_warmup)
        ramp = warmup(step, 0, w.kl_warmup)
        kl_s = hinged_kl(sem.mu, sem.logvar, w.free_nats)
        kl_v = hinged_kl(g_mu, g_logvar, w.free_nats)
        loss = w.latent_mse * latent + w.decoded_mel * dec + w.infonce * nce + ramp * (w.kl_semantic * kl_s + w.kl_voice * kl_v)
        scalars = _detached({"sem/latent_mse": latent, "sem/decoded_mel_l1": dec, "sem/infonce": nce,
                             "sem/kl_semantic": kl_s, "sem/kl_voice": kl_v,
                             "sem/codes_in_batch": codes_in_batch(sem.indices, self.codec_cfg.fsq_levels)})
        if m.phone_head is not None:
            frame_phone, scalars["sem/frame_phone_accuracy"] = phone_recognition_loss(m.phone_head(sem.codes), labels)
            loss = loss + w.frame_phone * frame_phone
            scalars["sem/frame_phone_ce"] = frame_phone.detach()
        if sem.unit_logits is not None:
            units, unit_scalars = self._phone_terms(sem, clean, batch.labels, view_ramp)
            loss = loss + units
            scalars.update(unit_scalars)
        if consistency is not None:
            loss = loss + view_ramp * w.consistency * consistency
            scalars["sem/consistency"] = consistency.detach()
        if agreement is not None:
            loss = loss + view_ramp * w.code_agreement * agreement
            scalars["sem/code_agreement"] = agreement.detach()
        return LossTerm("main", loss, scalars)

    def _phone_terms(self, sem, clean, labels, view_ramp):
        """A "phones" input's frame classifier: cross-entropy on the view the branch hears, and (with a clean
        view) the symmetric KL between the views' posteriors, ramped in with the other view losses."""
        w = self.cfg.weights
        recognition, accuracy = phone_recognition_loss(sem.unit_logits, labels)
        loss = (0.0 if self.cfg.freeze_phone_classifier else w.phone_recognition) * recognition
        scalars = {"sem/phone_ce": recognition.detach(), "sem/phone_accuracy": accuracy}
        if clean is not None:
            scalars["sem/phone_view_agreement"] = (sem.unit_logits.argmax(-1) == clean.unit_logits.argmax(-1)).float().mean()
            clean_recognition, scalars["sem/phone_accuracy_clean"] = phone_recognition_loss(clean.unit_logits, labels)
            if w.phone_recognition_clean > 0:
                loss = loss + w.phone_recognition_clean * clean_recognition
            if w.phone_consistency > 0:
                apart = posterior_consistency(sem.unit_logits, clean.unit_logits)
                loss = loss + view_ramp * w.phone_consistency * apart
                scalars["sem/phone_consistency"] = apart.detach()
        return loss, scalars

    def _waveform(self, m, mel, batch, step):
        w, c = self.cfg.weights, self.codec_cfg
        if self.cfg.stage == "finetune":
            with torch.no_grad():
                codes = m.codec.tokens_from_mel(mel).codes
            g, _, _ = self._voice(m, batch.ref_wav, sample=False)
            mel_in = m.codec.decoder(m.codec.connector(codes, g))
        else:
            mel_in = mel
        n = batch.wav.shape[-1] - m.codec.vocoder.lag  # samples whose overlap-add is complete
        n -= n % c.mel.hop_length
        fake = m.codec.vocoder.synthesize(mel_in)[:, None, :n]
        real = batch.wav[:, None, :n]
        adversarial = m.discriminator is not None and step >= self.cfg.adversarial_start
        if adversarial:
            d_real, _ = m.discriminator(real)
            d_fake, _ = m.discriminator(fake.detach())
            d_loss = sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(d_real, d_fake)) / len(d_real)
            yield LossTerm("disc", d_loss, {"gan/d_loss": d_loss.detach()})
        if self.mrstft is None:
            import auraloss

            hop = c.mel.hop_length
            self.mrstft = auraloss.freq.MultiResolutionSTFTLoss(
                fft_sizes=[4 * hop, 2 * hop, hop // 2], hop_sizes=[hop, hop // 2, hop // 8],
                win_lengths=[4 * hop, 2 * hop, hop // 2]).to(fake.device)
        with torch.autocast(fake.device.type, enabled=False):  # fp32 mels, the target's above all
            mel_fake = m.codec.frontend.mel(fake[:, 0].float()).clamp_min(1e-5).log()
            mel_real = m.codec.frontend.mel(real[:, 0].float()).clamp_min(1e-5).log()
        mel_l1 = F.l1_loss(mel_fake, mel_real)
        stft = self.mrstft(fake, real)
        loss = w.wave_mel * mel_l1 + w.mrstft * stft
        scalars = _detached({"voc/mel_l1": mel_l1, "voc/mrstft": stft})
        if adversarial:
            d_fake, fmap_fake = m.discriminator(fake)
            with torch.no_grad():
                _, fmap_real = m.discriminator(real)
            adv = sum(F.relu(1 - f).mean() for f in d_fake) / len(d_fake)
            fm = sum(F.l1_loss(a, b) / (b.abs().mean() + 1e-5) for fa, fr in zip(fmap_fake, fmap_real)
                     for a, b in zip(fa, fr)) / len(fmap_fake)
            loss = loss + w.adversarial * adv + w.feature_matching * fm
            scalars.update(_detached({"gan/g_adv": adv, "gan/feature_matching": fm}))
        yield LossTerm("main", loss, scalars)

    def log_samples(self, model, writer, step):
        m: CodecTrainingModel = model
        sr = self.codec_cfg.sample_rate
        wav = torch.from_numpy(self.shard.wav(0)[: 3 * sr])[None]
        wav = wav[:, : wav.shape[-1] // self.codec_cfg.samples_per_token * self.codec_cfg.samples_per_token]
        with torch.no_grad():
            mel = log_mel(m, wav.to(next(m.parameters()).device))
            if self.cfg.stage in ("vocoder",):
                out = m.codec.vocoder.synthesize(mel)
            else:
                codes = m.codec.tokens_from_mel(mel).codes
                g = m.codec.paralinguistic(mel)[0][:, -1]
                out = m.codec.vocoder.synthesize(m.codec.decoder(m.codec.connector(codes, g)))
        writer.add_audio("sample/reference", wav[0].clamp(-1, 1), step, sample_rate=sr)
        writer.add_audio("sample/decoded", out[0].cpu().clamp(-1, 1), step, sample_rate=sr)


def stage_codec_state(stage_ckpt: Path, vocoder_ckpt: Path | None = None) -> dict[str, torch.Tensor]:
    """The codec's tensors of a stage checkpoint (CodecTrainingModel weights, `codec.` stripped), with the vocoder's
    taken from `vocoder_ckpt` when given: the semantic stage's own vocoder is the untrained one it was built with."""
    from safetensors.torch import load_file

    def codec_part(ckpt: Path, prefix: str = "codec.") -> dict[str, torch.Tensor]:
        return {k[len("codec."):]: v for k, v in load_file(str(Path(ckpt) / "model.safetensors")).items()
                if k.startswith(prefix)}

    state = codec_part(stage_ckpt)
    if vocoder_ckpt is not None:
        vocoder = codec_part(vocoder_ckpt, "codec.vocoder.")
        if not vocoder:
            raise ValueError(f"{vocoder_ckpt}: holds no vocoder (no codec.vocoder.* tensors)")
        state.update(vocoder)
    return state


def export_codec(stage_ckpt: Path, out: Path, cfg: CodecTrainConfig, vocoder_ckpt: Path | None = None,
                 description: str = "", recipe: str = "") -> str:
    """Assemble the codec from stage checkpoints into one safetensors file for `load_codec`."""
    from codec.api import save_codec_model

    codec = SpeechCodec(cfg.codec_config())
    codec.load_state_dict(stage_codec_state(stage_ckpt, vocoder_ckpt))
    return save_codec_model(codec, out, description, recipe=recipe)
