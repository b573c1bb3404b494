"""The codec training configuration: stage, codec preset and overrides, loss weights, perturbation and trainer
settings (YAML/JSON round trip through codec.config_io; recipes/codec/task.py runs it)."""
from __future__ import annotations

import dataclasses

from codec.config import CodecConfig, preset
from codec.config_io import merge

from ..trainer import TrainerConfig
from .perturb import PerturbationConfig

STAGES = ("autoencoder", "semantic", "vocoder", "finetune")


@dataclasses.dataclass
class LossWeights:
    mel: float = 1.0
    latent_mse: float = 1.0
    decoded_mel: float = 0.5
    infonce: float = 0.5
    kl_semantic: float = 0.01
    kl_voice: float = 0.01
    free_nats: float = 0.05
    kl_warmup: int = 500
    # with a perturbed semantic input: the posterior means of the perturbed and the clean crop pulled together,
    # frame by frame (scaled by their spread, so shrinking the latent does not pay): invariance, not only disuse
    consistency: float = 0.0
    # with a perturbed semantic input: both views' FSQ inputs held inside the clean view's bin, `code_margin` from
    # its edges (losses.code_agreement), so the *tokens* agree and do not sit on bin boundaries
    code_agreement: float = 0.0
    code_margin: float = 0.25
    # the view losses join at `view_start` and ramp in over `view_warmup` steps: a semantic branch with a fresh
    # input layer must first learn content, or pulling the views together from step 0 collapses it to one token
    view_start: int = 0
    view_warmup: int = 0
    # a "phones" semantic input: cross-entropy of its frame classifier against the phone timings, on the view the
    # branch hears (the perturbed one, when perturbation is on), so its decisions learn to ignore the voice
    phone_recognition: float = 1.0
    # ... and the symmetric KL between its posteriors for the perturbed and the clean view, on every frame (real
    # speech without a transcript too): correct decisions are not enough, wrong ones must not depend on the voice
    phone_consistency: float = 0.0
    # ... and its cross-entropy on the clean view as well, the sound it hears at inference (computes that view)
    phone_recognition_clean: float = 0.0
    # a frame phone classifier (training only) reads the semantic codes (after FSQ, straight-through) and is
    # trained on the phone timings: the tokens are pushed to carry the phone, as LitCodec's frame-level loss on the
    # pre-quantiser latent does (frames without a transcript are left out)
    frame_phone: float = 0.0
    wave_mel: float = 15.0
    mrstft: float = 1.0
    adversarial: float = 1.0
    feature_matching: float = 2.0


@dataclasses.dataclass
class CodecTrainConfig:
    stage: str = "autoencoder"
    codec_preset: str = "duet_cpu16k"
    codec_overrides: dict = dataclasses.field(default_factory=dict)
    shard: str = "data/train.safetensors"
    init_from: str | None = None  # a previous stage's checkpoint dir (step-N)
    batch_size: int = 8
    segment_frames: int = 96  # mel frames per crop
    ref_frames: int = 96
    contrastive_dim: int = 64
    contrastive_temperature: float = 0.1
    disc_filters: int = 16  # 0: no discriminator (vocoder / finetune on the regression losses only)
    # periods of a multi-period waveform discriminator beside the MS-STFT one (discriminators.py); empty: none
    disc_periods: list[int] = dataclasses.field(default_factory=list)
    adversarial_start: int = 0  # step at which the discriminator joins (vocoder / finetune)
    # finetune stage: the vocoder learns the decoder's mels too (False: connector + decoder only, so the vocoder
    # keeps what it does on true mels)
    finetune_vocoder: bool = True
    weights: LossWeights = dataclasses.field(default_factory=LossWeights)
    # semantic stage, "phones" input: keep its frame classifier as loaded (`assemble --phone-classifier`), trained
    # apart on what the semantic stage's crops cannot give (e.g. a dialogue's sentences at its styles' pitches);
    # its cross-entropy is then logged, not learned
    freeze_phone_classifier: bool = False
    # semantic stage: the semantic branch hears a perturbed copy of the crop (pitch, formants, level, EQ)
    perturbation: PerturbationConfig = dataclasses.field(default_factory=PerturbationConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; expected one of {STAGES}")
        if self.freeze_phone_classifier:
            w = self.weights
            if self.codec_config().semantic_input.kind != "phones":
                raise ValueError("freeze_phone_classifier needs a phones semantic input "
                                 "(codec_overrides.semantic_input.kind: phones)")
            if w.phone_consistency > 0 or w.phone_recognition_clean > 0:
                raise ValueError("freeze_phone_classifier: weights.phone_consistency and phone_recognition_clean "
                                 "train the classifier; set them to 0")

    def codec_config(self) -> CodecConfig:
        return merge(preset(self.codec_preset), self.codec_overrides)
