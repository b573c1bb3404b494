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
results_md=RESULTS.md
RUN_CMD="$0 $*"  # recorded in $exp/run_commands.txt (upper case: not an option)
. utils/parse_options.sh

declare -a extra=() aligner_extra=()
if [ "$dry_run" = true ]; then
  nj=1; heldout_speakers=1; shard_max_hours=0; score_max_utts=4; baselines=""; score_opts="--no-asr"
  extra=(conf/dry_run.yaml); aligner_extra=(conf/aligner_dry_run.yaml); results_md="$exp/RESULTS.md"
fi
mkdir -p "$exp"
echo "$RUN_CMD" >> "$exp/run_commands.txt"

launch() {  # module args...: one process needs no launcher (the trainer treats both alike)
  if [ "$nj" -eq 1 ] && [ "$torchrun_opts" = "--standalone" ]; then python -m "$@"
  else torchrun $torchrun_opts --nproc_per_node="$nj" -m "$@"; fi
}
train_stage() {  # name conf [init]
  local name=$1 conf=$2 init=${3:-}
  local sets=("shard=$data/train_shard.safetensors" "codec_preset=$preset")
  [ -n "$init" ] && sets+=("init_from=$init")
  [ -f "$exp/$name/.done" ] && { echo "stage $name: done"; return; }
  launch recipes.codec.train --config "$conf" "${extra[@]}" --out "$exp/$name" --set "${sets[@]}"
  touch "$exp/$name/.done"
}
last() {  # newest step-N of a training dir (numeric N), or nothing
  for d in "$exp/$1"/step-*; do if [ -d "$d" ]; then echo "${d##*step-} $d"; fi; done | sort -n | tail -1 | cut -d' ' -f2-
}
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
  launch recipes.align.train --config conf/aligner.yaml "${aligner_extra[@]}" --out "$exp/aligner" \
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

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "stage 4: autoencoder"
  train_stage autoencoder conf/stage1_autoencoder.yaml
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "stage 5: semantic tokens + voice + text alignment"
  train_stage semantic conf/stage2_semantic.yaml "$(last autoencoder)"
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "stage 6: vocoder"
  train_stage vocoder conf/stage3_vocoder.yaml
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ] && [ "$finetune" = true ]; then
  echo "stage 7: end-to-end fine-tune of connector + decoder + vocoder"
  python -m recipes.codec.assemble --semantic "$(last semantic)" --vocoder "$(last vocoder)" \
    --out "$exp/assembled/step-0"
  train_stage finetune conf/stage4_finetune.yaml "$exp/assembled/step-0"
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  echo "stage 8: export"
  desc="trained by egs/libritts/codec1 ($preset)"
  if [ "$finetune" = true ] && [ -n "$(last finetune)" ]; then
    ckpt=$(last finetune); voc=()
  elif [ -n "$(last semantic)" ]; then
    ckpt=$(last semantic); voc=(); [ -n "$(last vocoder)" ] && voc=(--vocoder "$(last vocoder)")
  else  # only the autoencoder is trained (a partial run): its semantic path and vocoder are untrained
    ckpt=$(last autoencoder); voc=()
    [ -z "$ckpt" ] && { echo "stage 8: no trained stage in $exp" >&2; exit 1; }
    echo "stage 8: warning: exporting the autoencoder stage only ($ckpt)" >&2
  fi
  python -m recipes.codec.export --checkpoint "$ckpt" --config "$ckpt/../config.yaml" "${voc[@]}" \
    --out "$exp/codec.safetensors" --description "$desc"
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  echo "stage 9: scoring"
  for set in $score_sets; do
    [ -d "$data/$set" ] || { echo "stage 9: no $data/$set, skipped"; continue; }
    python -m recipes.score --data "$data/$set" --codec "$exp/codec.safetensors" --out "$exp/score/$set" \
      --baselines "$baselines" --max-utts "$score_max_utts" --name "duet ($preset, LibriTTS)" --quiet $score_opts
  done
  python -m recipes.codec.results --scores "$exp/score" --out "$results_md" --exp "$exp" --title egs/libritts/codec1
  cat "$results_md"
fi
