#!/usr/bin/env bash
# Mini codec recipe: synthesise speech from every installed TTS voice with exact timings, add every real reader
# the Debian archive ships, split by speaker (recipes/speaker_splits.yaml), train the four codec stages on CPU,
# export the codec and score it (with its stage table) against Codec2 and Opus on the validation speakers.
#
#   ./run.sh                       # everything (many CPU-hours; every stage resumes from its last checkpoint)
#   ./run.sh --stage 8 --test true # score the exported codec once on the test speakers
#   ./run.sh --stage 3 --stop_stage 3
#   ./run.sh --tiny true           # CI-sized end-to-end check (≤ 3 min)
#   ./run.sh --exp ~/duet-runs/mini-codec1/exp --data ~/duet-runs/mini-codec1/data
#   ./run.sh --stage 3 --init_codec ../../../codec/assets/default_codec.safetensors --perturb true
#                                  # retrain only the semantic branch (and the fine-tune) of a trained codec
#   ./run.sh ... --perturb true --twins true   # ... with pitch twins from the TTS engines as well
#   ./run.sh ... --semantic_input phones       # ... hearing only a frame phone classifier's decisions
#   ./run.sh ... --semantic_input phones --phone_classifier CLS   # ... of a classifier trained apart, kept frozen
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

stage=0
stop_stage=8
tiny=false
nj=1                      # torchrun processes (gradients averaged over ranks); the same command scales to GPUs / nodes
data=data
exp=exp
train_utts=6000
eval_utts=240             # synthetic utterances in valid and in test each
real_max_per_speaker=0    # 0: every recording of every real reader
test=false                # score the test speakers (once per shipped codec) instead of the validation speakers
vocoder_parallel=false    # run the vocoder stage (independent of stages 3-4) in the background
finetune=true
score_max_utts=120
baselines=codec2_1200,codec2_3200,opus6k
results_md=""             # default $exp/RESULTS.md: a run never overwrites the curated RESULTS.md
init_codec=""             # an exported codec: keep its encoder/decoder/vocoder, seed the semantic stage from it
perturb=false             # the semantic stage hears pitch/formant/level/EQ-perturbed input (conf/perturb.yaml)
twins=false               # with --perturb: also the synthetic utterances spoken again at other pitches (recipes.codec.twins)
semantic_input=latent     # phones: the semantic branch hears a frame phone classifier's one-hot decisions
                          # (conf/semantic_phones.yaml)
phone_classifier=""       # with --init_codec and --semantic_input phones: a classifier trained apart (a PhoneInput
                          # state dict, ../dialogue1/local/aligned_phones.py), loaded into the branch and frozen
export_to=""              # also copy the final codec here (e.g. ../../../codec/assets/default_codec.safetensors)
cmdline="$0 $*"
recipe_args="$*"          # what the export's `recipe` metadata names: cd egs/mini/codec1 && ./run.sh <these>
. utils/parse_options.sh
results_md=${results_md:-$exp/RESULTS.md}
# One intra-op thread per training process: on a small CPU box oversubscribed OpenMP threads spin
# (half the time in the kernel) and run ~10x slower. Raise it when a process has cores to itself.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

extra=(); more_extra=()
if [ "$tiny" = true ]; then
  train_utts=12; eval_utts=8; real_max_per_speaker=2; score_max_utts=8; baselines=codec2_1200
  extra=(conf/tiny.yaml); more_extra=(conf/tiny_more.yaml); results_md="$exp/RESULTS.md"
fi
[ "$perturb" = true ] && extra+=(conf/perturb.yaml)
case "$semantic_input" in
  latent) ;;
  phones) extra+=(conf/semantic_phones.yaml) ;;
  *) echo "run.sh: --semantic_input is latent or phones, not '$semantic_input'" >&2; exit 1 ;;
esac
mkdir -p "$exp"
echo "$cmdline" >> "$exp/run_commands.txt"

. utils/codec_stages.sh
train_sets=("shard=$data/train.safetensors")
torchrun_opts="--standalone"
# validation speakers drive every choice; the test speakers are scored once per shipped codec (--test true)
score_sets="real_valid real_valid_en synth_valid"
[ "$test" = true ] && score_sets="real_test real_test_en synth_test"
score_name="duet (mini)"
score_opts="--stages"
title=egs/mini/codec1
export_desc="trained by egs/mini/codec1"
[ -n "$init_codec" ] && export_desc+=", semantic stage retrained from $init_codec"
[ "$perturb" = true ] && export_desc+=" (perturbed semantic input, conf/perturb.yaml)"
[ "$semantic_input" = phones ] && export_desc+=", semantic branch on a frame phone classifier's decisions"
if [ "$twins" = true ]; then
  [ "$perturb" = true ] || { echo "run.sh: --twins true needs --perturb true" >&2; exit 1; }
  train_sets+=("perturbation.twin_shard=$data/twins.safetensors")
  export_desc+=" with pitch twins"
fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "stage 0: system packages (TTS engines, codec2, opus-tools, Asterisk prompts)"
  bash ../../../recipes/install_system_deps.sh
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ] && [ ! -f "$data/.corpus.done" ]; then
  echo "stage 1: corpus"
  python local/make_corpus.py --data "$data" --train-utts $train_utts --eval-utts $eval_utts \
    --real-max-per-speaker $real_max_per_speaker
  touch "$data/.corpus.done"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ ! -f "$data/train.safetensors" ]; then
  echo "stage 2: training shard"
  python -m recipes.codec.prepare --data "$data/synth_train" "$data/real/train" --out "$data/train.safetensors" \
    --sample-rate 16000 --hop 256 --phones "$data/synth_train/phones.txt"
fi
if [ "$twins" = true ] && [ $stage -le 4 ] && [ $stop_stage -ge 2 ] && [ ! -f "$data/twins.safetensors" ]; then
  echo "stage 2: pitch twins of the training shard"
  python -m recipes.codec.twins --shard "$data/train.safetensors" --data "$data/synth_train" \
    --out "$data/twins.safetensors"
fi
if [ -n "$phone_classifier" ]; then
  { [ -n "$init_codec" ] && [ "$semantic_input" = phones ]; } || \
    { echo "run.sh: --phone_classifier needs --init_codec and --semantic_input phones" >&2; exit 1; }
  train_sets+=("freeze_phone_classifier=true")
  export_desc+=" (classifier $phone_classifier, frozen)"
fi
if [ "$semantic_input" = phones ]; then  # the classifier's classes: the shard's phone inventory (stage 1 writes it)
  train_sets+=("codec_overrides.semantic_input.n_units=$(grep -c . "$data/synth_train/phones.txt")")
fi

codec_stages 3
