#!/usr/bin/env bash
# LibriTTS codec recipe (GPU): Kaldi data dirs from the corpus tree, a CTC forced aligner for
# character-level frame labels, a 22.05 kHz shard, the four codec stages (secousti_1k preset, or
# --preset secousti_027k), export, and scoring on test-clean and on held-out training speakers.
# Only what differs from egs/mini/codec1 is here; the stages are the shared recipes.* modules.
#
#   ./run.sh --corpus /corpora/LibriTTS --nj 8                     # everything on one 8-GPU node
#   ./run.sh --corpus /corpora/LibriTTS --stage 4 --stop_stage 7 --preset secousti_027k --exp exp_027k
#   ./run.sh --corpus tiny_tree --dry_run true --exp /tmp/x/exp --data /tmp/x/data   # seconds, on CPU
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

stage=0
stop_stage=9
corpus=/corpora/LibriTTS          # LibriTTS root: <corpus>/<subset>/<speaker>/<chapter>/*.wav
train_subsets="train-clean-100 train-clean-360"
test_subsets="dev-clean test-clean"
heldout_speakers=20               # training speakers kept out for the disentanglement probe
preset=secousti_1k                # codec preset: secousti_1k (1.09 kbps) | secousti_027k (273 bps)
shard_rate=22050                  # the preset's sample rate and mel hop (the training task checks them)
shard_hop=256
shard_max_hours=100               # the shard sits in memory once per GPU process; 0 = all of data/train
nj=8                              # torchrun processes (GPUs) per training stage
torchrun_opts="--standalone"      # e.g. "--nnodes 2 --node_rank 0 --rdzv_endpoint host:29400" for nodes
data=data
exp=exp
finetune=true
score_sets="test_clean heldout_spk"
score_max_utts=200
baselines=codec2_1200,codec2_3200,opus6k
score_opts=""                     # extra scorer flags, e.g. --no-asr
dry_run=false                     # tiny models, a few steps, 1 CPU process: checks the recipe in seconds
results_md=""             # default $exp/RESULTS.md: a run never overwrites the curated RESULTS.md
RUN_CMD="$0 $*"  # recorded in $exp/run_commands.txt (upper case: not an option)
. utils/parse_options.sh
results_md=${results_md:-$exp/RESULTS.md}

declare -a extra=() aligner_extra=()
if [ "$dry_run" = true ]; then
  nj=1; heldout_speakers=1; shard_max_hours=0; score_max_utts=4; baselines=""; score_opts="--no-asr"
  extra=(conf/dry_run.yaml); aligner_extra=(conf/aligner_dry_run.yaml); results_md="$exp/RESULTS.md"
fi
mkdir -p "$exp"
echo "$RUN_CMD" >> "$exp/run_commands.txt"

. utils/codec_stages.sh
train_sets=("shard=$data/train_shard.safetensors" "codec_preset=$preset")
vocoder_parallel=false
score_name="duet ($preset, LibriTTS)"
title=egs/libritts/codec1
export_desc="trained by egs/libritts/codec1 ($preset)"
export_to=""

declare -a subsets=($train_subsets $test_subsets)
declare -a aligned_sets=(train); [ "$heldout_speakers" -gt 0 ] && aligned_sets+=(heldout_spk)
for s in $test_subsets; do aligned_sets+=("${s//-/_}"); done

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ] && [ ! -f "$data/.prep.done" ]; then
  echo "stage 0: data dirs from $corpus"
  python local/prepare_libritts.py --root "$corpus" --data "$data" --subsets "${subsets[@]}" \
    --heldout-speakers "$heldout_speakers"
  touch "$data/.prep.done"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ] && [ ! -f "$exp/aligner/.done" ]; then
  echo "stage 1: CTC aligner"
  codec_launch recipes.align.train --config conf/aligner.yaml "${aligner_extra[@]}" --out "$exp/aligner" \
    --set "data=[$data/train]"
  touch "$exp/aligner/.done"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ ! -f "$data/.align.done" ]; then
  echo "stage 2: forced alignment → phones.ctm / words.ctm"
  python -m recipes.align.align --model "$exp/aligner/aligner.safetensors" --quiet \
    --data "${aligned_sets[@]/#/$data/}"
  touch "$data/.align.done"
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ] && [ ! -f "$data/train_shard.safetensors" ]; then
  echo "stage 3: training shard at $shard_rate Hz"
  python local/subset_hours.py --data "$data/train" --out "$data/train_shard" --max-hours "$shard_max_hours"
  python -m recipes.codec.prepare --data "$data/train_shard" --out "$data/train_shard.safetensors" \
    --sample-rate "$shard_rate" --hop "$shard_hop" --phones "$data/train_shard/phones.txt"
fi

codec_stages 4
