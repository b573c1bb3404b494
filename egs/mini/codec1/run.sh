#!/usr/bin/env bash
# Mini codec recipe: synthesise a multi-voice corpus with exact timings, add real studio prompts,
# train the four codec stages on CPU, export the codec and score it against Codec2 and Opus.
#
#   ./run.sh                       # everything (≈ 1.5 h on 2 CPU cores)
#   ./run.sh --stage 3 --stop_stage 3
#   ./run.sh --tiny true           # CI-sized end-to-end check (≤ 3 min)
#   ./run.sh --exp ~/duet-runs/mini-codec1/exp --data ~/duet-runs/mini-codec1/data
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

stage=0
stop_stage=8
tiny=false
nj=1                      # torchrun processes (DDP); the same command scales to GPUs / nodes
data=data
exp=exp
train_utts=2400
heldout_utts=200
real_max_utts=0
vocoder_parallel=false    # run the vocoder stage (independent of stages 3-4) in the background
finetune=true
score_max_utts=120
baselines=codec2_1200,codec2_3200,opus6k
results_md=RESULTS.md
export_to=""              # also copy the final codec here (e.g. ../../../codec/assets/default_codec.safetensors)
cmdline="$0 $*"
. utils/parse_options.sh
# One intra-op thread per training process: on a small CPU box oversubscribed OpenMP threads spin
# (half the time in the kernel) and run ~10x slower. Raise it when a process has cores to itself.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

extra=()
if [ "$tiny" = true ]; then
  train_utts=12; heldout_utts=8; real_max_utts=16; score_max_utts=8; baselines=codec2_1200
  extra=(conf/tiny.yaml); results_md="$exp/RESULTS.md"
fi
mkdir -p "$exp"
echo "$cmdline" >> "$exp/run_commands.txt"

train_stage() {  # name conf [init]
  local name=$1 conf=$2 init=${3:-}
  local sets=("shard=$data/train.safetensors")
  [ -n "$init" ] && sets+=("init_from=$init")
  [ -f "$exp/$name/.done" ] && { echo "stage $name: done"; return; }
  torchrun --standalone --nproc_per_node="$nj" -m recipes.codec.train \
    --config "$conf" "${extra[@]}" --out "$exp/$name" --set "${sets[@]}"
  touch "$exp/$name/.done"
}
last() { ls -d "$exp/$1"/step-* | awk -F'step-' '{print $NF "\t" $0}' | sort -n | tail -1 | cut -f2; }

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "stage 0: system packages (TTS engines, codec2, opus-tools, Asterisk prompts)"
  bash ../../../recipes/install_system_deps.sh
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ] && [ ! -f "$data/.corpus.done" ]; then
  echo "stage 1: corpus"
  python local/make_corpus.py --data "$data" --train-utts $train_utts --heldout-utts $heldout_utts \
    --real-max-utts $real_max_utts
  touch "$data/.corpus.done"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ] && [ ! -f "$data/train.safetensors" ]; then
  echo "stage 2: training shard"
  python -m recipes.codec.prepare --data "$data/synth_train" "$data/real_train" --out "$data/train.safetensors" \
    --sample-rate 16000 --hop 256 --phones "$data/synth_train/phones.txt"
fi

voc_pid=""
if [ "$vocoder_parallel" = true ] && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  echo "stage 5 (background): vocoder"
  ( train_stage vocoder conf/stage3_vocoder.yaml > "$exp/vocoder.log" 2>&1 ) &
  voc_pid=$!
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: autoencoder"
  train_stage autoencoder conf/stage1_autoencoder.yaml
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "stage 4: semantic tokens + voice + text alignment"
  train_stage semantic conf/stage2_semantic.yaml "$(last autoencoder)"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  if [ -n "$voc_pid" ]; then wait "$voc_pid"; else echo "stage 5: vocoder"; train_stage vocoder conf/stage3_vocoder.yaml; fi
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ] && [ "$finetune" = true ]; then
  echo "stage 6: end-to-end fine-tune of connector + decoder + vocoder"
  python -m recipes.codec.assemble --semantic "$(last semantic)" --vocoder "$(last vocoder)" \
    --out "$exp/assembled/step-0"
  train_stage finetune conf/stage4_finetune.yaml "$exp/assembled/step-0"
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  echo "stage 7: export"
  final=$([ "$finetune" = true ] && last finetune || echo "")
  if [ -n "$final" ]; then
    python -m recipes.codec.export --checkpoint "$final" --config "$final/../config.yaml" --out "$exp/codec.safetensors"
  else
    python -m recipes.codec.export --checkpoint "$(last semantic)" --vocoder "$(last vocoder)" \
      --config "$exp/semantic/config.yaml" --out "$exp/codec.safetensors"
  fi
  [ -n "$export_to" ] && cp "$exp/codec.safetensors" "$export_to"
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  echo "stage 8: scoring"
  for set in synth_heldout real_heldout; do
    python -m recipes.score --data "$data/$set" --codec "$exp/codec.safetensors" --out "$exp/score/$set" \
      --baselines "$baselines" --max-utts $score_max_utts --name "duet (mini)" --quiet
  done
  python -m recipes.codec.results --scores "$exp/score" --out "$results_md" --exp "$exp"
  cat "$results_md"
fi
