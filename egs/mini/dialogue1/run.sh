#!/usr/bin/env bash
# Mini full-duplex dialogue recipe, end to end on CPU:
#   0 codec   1 corpus   2 tokenizer   3 tokens   4 train   5 score   6 demo   7 bundle (opt-in)
# Usage: ./run.sh [--stage N] [--stop_stage N] [--tiny true] [--codec PATH] [--exp DIR] [--data DIR]
#                 [--ablation true|false]  (stages 4-5 also train and score the model without the user's
#                  voice input, in parallel: the style ablation; default: true unless --tiny)
#                 [--text-lead N]  (inner-monologue words N steps ahead of their audio)
#                 [--score-runs N]  (stage 5: free-running passes over the test set, pooled; default 3)
#                 [--arith true|false]  (stage 4's phases 3-7 on the arithmetic corpora; default true)
#                 [--adapt_from MODEL] [--adapt_steps N] [--mix_steps N]  (instead of the lineage: move a trained model to this run's codec, below)
#                 [--splits true] [--test true]  (the held-out splits, issue 34: train on many users and the train instances,
#                  score every row of the validation split into $exp/RESULTS_valid.md; --test true: the test split's
#                  rows into $exp/RESULTS.md, once per shipped model; with --adapt_from: that model moved onto this codec
#                  on data/train) [--train_conversations N] [--row_conversations N]  (the corpora's sizes)
# Long runs: --exp ~/duet-runs/dialogue1/exp --data ~/duet-runs/dialogue1/data (resumable: every stage
# leaves a .done marker, training resumes from its last checkpoint).
set -euo pipefail
RUN_CMD="egs/mini/dialogue1/run.sh $*"  # recorded in $exp/cmd.txt (upper case: not an option)
cd "$(dirname "$0")"

stage=0
stop_stage=6
tiny=false
codec=          # codec checkpoint; empty: the bundled default, else a random (untrained) codec
exp=exp
data=data
nproc=1         # torchrun processes (GPUs on a GPU node)
vocab=256
nj=2            # processes for corpus synthesis and token extraction
text_lead=2     # steps each inner-monologue word is placed ahead of its audio (prepare tokens --text-lead)
ablation=auto   # auto: true, false with --tiny
score_runs=3    # stage 5: passes over the test set with other sampling seeds (one pass of 120 is noisy)
arith=true      # phases 3-7 of stage 4: the arithmetic corpora (conf/corpus_arith.yaml, + corpus_long_counts.yaml, + corpus_excited.yaml), as the bundled model
bundle=false    # stage 7: copy the trained model into dialogue/assets/ (the demo's --bundled)
adapt_from=     # an exported dialogue model trained on another codec's tokens (e.g. the bundled one): stage 2 takes
                # its tokenizer, stage 4 fine-tunes it onto this run's codec (init_adapt=[codec]; the ablation model
                # drops its voice input too) with the seventh phase's settings on the pitch-only corpus
                # (conf/corpus_pitch_only.yaml), instead of training the lineage; stage 5 also scores the style
                # ablation on the pitch-only test (conf/corpus_pitch_test.yaml); then mix_steps from that model's
                # export on a mix of the pitch-only corpus and the seventh phase's rate-varied one (more_tokens): it
                # hears fast and slow users again
adapt_steps=1800
mix_steps=1200
splits=false    # the held-out splits (recipes/dialogue/heldout.py; conf/splits/): data/train of many users and the train
                # instances, data/{valid,test}_<row> per row; phases 1-5 on data/train; stage 5 scores the rows
test=false      # with --splits true: stage 5 also scores the test split's rows (once per shipped model)
train_conversations=   # --splits true: conversations in data/train (empty: conf/corpus.yaml's 6000)
row_conversations=     # --splits true: conversations per validation/test row (empty: conf/splits/heldout.yaml's 120)
max_real=       # real readers' prompts per reader (recipes.real_speech --max-per-speaker; empty: all of them)
. ./path.sh
. utils/parse_options.sh

corpus_conf=(conf/corpus.yaml); arith_corpus_conf=(conf/corpus.yaml conf/corpus_arith.yaml); counts_corpus_conf=(conf/corpus_long_counts.yaml); excited_corpus_conf=(conf/corpus_excited.yaml); test_conf=(conf/corpus.yaml conf/corpus_test.yaml); train_conf=(conf/train.yaml)
# stage 4's later phases: each resumes the one before from its last checkpoint, its config a delta on theirs
finetune_conf=(conf/finetune_epad.yaml); arith_conf=(conf/finetune_arith.yaml); arith_long_conf=(conf/finetune_arith_long.yaml)
sampled_conf=(conf/finetune_sampled.yaml); export_conf=(conf/finetune_from_export.yaml)
pitch_corpus_conf=(conf/corpus.yaml conf/corpus_arith.yaml conf/corpus_long_counts.yaml conf/corpus_pitch_only.yaml)
pitch_test_conf=(conf/corpus.yaml conf/corpus_test.yaml conf/corpus_pitch_test.yaml)
if [ "$tiny" = true ]; then
  corpus_conf+=(conf/tiny/corpus.yaml); test_conf+=(conf/tiny/corpus_test.yaml); train_conf+=(conf/tiny/train.yaml)
  arith_corpus_conf+=(conf/tiny/corpus.yaml); finetune_conf+=(conf/tiny/finetune.yaml)
  arith_conf+=(conf/tiny/finetune_arith.yaml); arith_long_conf+=(conf/tiny/finetune_arith_long.yaml)
  sampled_conf+=(conf/tiny/finetune_sampled.yaml); export_conf+=(conf/tiny/finetune_from_export.yaml)
  pitch_corpus_conf+=(conf/tiny/corpus.yaml); pitch_test_conf+=(conf/tiny/corpus_test.yaml)
  vocab=128; score_runs=2; adapt_steps=3; mix_steps=2; max_real=3
fi
held_rows=(seen unseen_voice unseen_phrasing unseen_instance unknown real)  # --splits true: a corpus per row and split
row_sets() {  # row_sets ROW SPLIT: what the row holds out (synth --set), for the validation or test split
  case $1 in
    seen) echo voices=train instances=train phrasings=train recordings=$2;;
    unseen_voice) echo voices=$2 instances=train phrasings=train recordings=$2;;
    unseen_phrasing) echo voices=$2 instances=train phrasings=$2 recordings=$2;;
    unseen_instance) echo voices=$2 instances=$2 phrasings=train recordings=$2 "tasks=[arithmetic,counting,spelling]";;
    unknown) echo voices=$2 instances=$2 phrasings=train recordings=$2 p_unknown=1.0;;
    real) echo 'voices="" instances="" phrasings="" recordings=""' p_reading=1.0 real_data=$data/real/$2;;
  esac
}
if [ "$splits" = true ]; then
  corpus_conf+=(conf/splits/train.yaml)
  [ "$tiny" = true ] && corpus_conf+=(conf/tiny/corpus.yaml)
  score_runs=3  # the demo's sampling over 3 seeds, tiny or not
fi
demo_data=$data/test; [ "$splits" = true ] && demo_data=$data/valid_unseen_voice  # stages 6-7: with --splits, a voice never trained on
[ "$ablation" = auto ] && { [ "$tiny" = true ] && ablation=false || ablation=true; }
models=(dialogue); [ "$ablation" = true ] && models+=(dialogue_no_voice)
model_opts() { case $1 in dialogue_no_voice*) echo model.user_voice=false;; esac; }  # and its later phases' directories
# the model stages 5-7 use: phases 6 and 7 (arithmetic) fine-tune the exported model before them, each in a directory of its own
final() { if [ -n "$adapt_from" ] && [ "$splits" = true ]; then echo "$1_adapted"; elif [ -n "$adapt_from" ]; then echo "$1_mixed"; elif [ "$splits" = true ] || [ "$arith" != true ]; then echo "$1"; else echo "$1_excited"; fi; }
mkdir -p "$exp"
log() { echo "$(date +%H:%M:%S) [dialogue1] $*"; }
run_stage() {  # run_stage N name: true when stage N should run now (in range, not yet done)
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  if [ -f "$exp/.done.$1.$2" ]; then log "stage $1 ($2): done already ($exp/.done.$1.$2)"; return 1; fi
  log "stage $1: $2"
}
done_stage() { touch "$exp/.done.$1.$2"; }
echo "$RUN_CMD" >> "$exp/cmd.txt"

if run_stage 0 codec; then
  bundled=$(python -c "from codec.api import default_checkpoint as d; print(d())")
  if [ -n "$codec" ]; then cp "$codec" "$exp/codec.safetensors"
  elif [ "$tiny" != true ] && [ -f "$bundled" ]; then cp "$bundled" "$exp/codec.safetensors"
  else log "no codec given: a randomly initialised (untrained) one"; python local/make_random_codec.py "$exp/codec.safetensors"
  fi
  done_stage 0 codec
fi

if [ "$splits" = true ] && run_stage 1 corpus; then  # the held-out splits: many users, held-out rows
  real_opt=(); [ -n "$max_real" ] && real_opt=(--max-per-speaker "$max_real")
  python -m recipes.real_speech --out "$data/real" "${real_opt[@]}"  # every installed reader, split by speaker
  train_size=(); [ -n "$train_conversations" ] && train_size=(num_conversations="$train_conversations")
  python -m recipes.dialogue.synth --config "${corpus_conf[@]}" --out "$data/train" --nj "$nj" --no-progress \
    --set real_data="$data/real/train" "${train_size[@]}"
  seed=100
  for split in valid test; do
    for row in "${held_rows[@]}"; do
      seed=$((seed + 1))
      [ "$row" = real ] && [ ! -f "$data/real/$split/wav.scp" ] && { log "no real readers of $split: row real left out"; continue; }
      row_conf=(conf/corpus.yaml conf/splits/train.yaml conf/splits/heldout.yaml)
      [ "$tiny" = true ] && row_conf+=(conf/tiny/corpus.yaml conf/tiny/corpus_test.yaml)
      python -m recipes.dialogue.synth --config "${row_conf[@]}" --out "$data/${split}_$row" --nj "$nj" --no-progress \
        --set seed=$seed $(row_sets "$row" "$split") ${row_conversations:+num_conversations=$row_conversations}
    done
  done
  done_stage 1 corpus
fi

if [ "$splits" != true ] && run_stage 1 corpus; then
  [ -n "$adapt_from" ] || python -m recipes.dialogue.synth --config "${corpus_conf[@]}" --out "$data/train" --nj "$nj"
  python -m recipes.dialogue.synth --config "${test_conf[@]}" --out "$data/test" --nj "$nj"
  if [ -n "$adapt_from" ]; then
    python -m recipes.dialogue.synth --config "${pitch_corpus_conf[@]}" --out "$data/train_pitch" --nj "$nj"
    python -m recipes.dialogue.synth --config "${pitch_test_conf[@]}" --out "$data/test_pitch" --nj "$nj"
  fi
  if [ -n "$adapt_from" ] || [ "$arith" = true ]; then  # the seventh phase's corpus: half the users excited
    python -m recipes.dialogue.synth --config "${arith_corpus_conf[@]}" "${counts_corpus_conf[@]}" "${excited_corpus_conf[@]}" \
      --out "$data/train_arith_excited" --nj "$nj"
  fi
  if [ -z "$adapt_from" ] && [ "$arith" = true ]; then
    python -m recipes.dialogue.synth --config "${arith_corpus_conf[@]}" --out "$data/train_arith" --nj "$nj"
    python -m recipes.dialogue.synth --config "${arith_corpus_conf[@]}" "${counts_corpus_conf[@]}" \
      --out "$data/train_arith_long_counts" --nj "$nj"
  fi
  done_stage 1 corpus
fi

if run_stage 2 tokenizer; then
  if [ -n "$adapt_from" ]; then python -m recipes.dialogue.prepare tokenizer --from-model "$adapt_from" --out "$exp/tokenizer.model"
  else python -m recipes.dialogue.prepare tokenizer --data "$data/train" --out "$exp/tokenizer.model" --vocab "$vocab"; fi
  done_stage 2 tokenizer
fi

if run_stage 3 tokens; then
  parts=(train test); [ "$arith" = true ] && parts+=(train_arith train_arith_long_counts train_arith_excited)
  [ -n "$adapt_from" ] && parts=(train_pitch test_pitch test train_arith_excited)
  [ "$splits" = true ] && parts=(train valid_unseen_voice)
  for part in "${parts[@]}"; do  # a part already written (atomically) is kept: an interrupted stage resumes
    [ -f "$exp/tokens/$part.safetensors" ] && { log "tokens/$part: made already"; continue; }
    python -m recipes.dialogue.prepare tokens --data "$data/$part" --codec "$exp/codec.safetensors" \
      --tokenizer "$exp/tokenizer.model" --out "$exp/tokens/$part.safetensors" --nj "$nj" --text-lead "$text_lead"
  done
  done_stage 3 tokens
fi

train_phase() {  # train_phase MODEL PART CONFIG... [-- KEY=VALUE...]: train (or resume) exp/MODEL on tokens/PART
  local m=$1 part=$2 confs=() sets=(); shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do confs+=("$1"); shift; done
  [ $# -gt 0 ] && shift && sets=("$@")
  torchrun --standalone --nproc_per_node "$nproc" -m recipes.dialogue.train --config "${confs[@]}" \
    --out "$exp/$m" --no-progress --set tokens="$exp/tokens/$part.safetensors" \
    tokenizer="$exp/tokenizer.model" $(model_opts "$m") "${sets[@]}" >> "$exp/train_$m.log" 2>&1
}

if run_stage 4 train; then
  pids=()
  phases() {  # the bundled model's lineage: 4000 steps, EPAD to 5600, arithmetic to 7200, stretched to 14000,
              # own audio sampled to 16000; then 1200 steps of counts of 3-10 numbers from its exported model, and
              # 1200 on fresh conversations (half excited) from that one's (init_from: fresh optimizer state)
    train_phase "$1" train "${train_conf[@]}" && train_phase "$1" train "${train_conf[@]}" "${finetune_conf[@]}" || return 1
    [ "$arith" = true ] || return 0
    if [ "$splits" = true ]; then  # the held-out corpus has the arithmetic weight and long counts: phases 3-5 on it
      train_phase "$1" train "${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" &&
        train_phase "$1" train "${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" "${arith_long_conf[@]}" &&
        train_phase "$1" train "${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" "${arith_long_conf[@]}" \
          "${sampled_conf[@]}"
      return
    fi
    local from_export=("${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" "${arith_long_conf[@]}" \
      "${sampled_conf[@]}" "${export_conf[@]}")  # phases 6-7: the fifth phase's settings, 1200 steps of their own
    train_phase "$1" train_arith "${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" &&
      train_phase "$1" train_arith "${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" "${arith_long_conf[@]}" &&
      train_phase "$1" train_arith "${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" "${arith_long_conf[@]}" \
        "${sampled_conf[@]}" &&
      train_phase "$1_counts" train_arith_long_counts "${from_export[@]}" -- init_from="$exp/$1/model.safetensors" &&
      train_phase "$1_excited" train_arith_excited "${from_export[@]}" -- init_from="$exp/$1_counts/model.safetensors"
  }
  adapt() {  # the model adapt_from onto this codec: the seventh phase's settings, adapt_steps of their own on the
             # pitch-only corpus; then mix_steps from that export on it pooled with the rate-varied one
    local what="[codec]" confs=("${train_conf[@]}" "${finetune_conf[@]}" "${arith_conf[@]}" "${arith_long_conf[@]}" \
      "${sampled_conf[@]}" "${export_conf[@]}") threads=$(( ${#models[@]} > 1 ? 1 : 2 ))  # side by side: a core each
    [ "$(model_opts "$1")" ] && what="[codec,user_voice]"
    local part=train_pitch; [ "$splits" = true ] && part=train  # the held-out splits' many users: no mix phase
    train_phase "$1_adapted" $part "${confs[@]}" -- init_from="$adapt_from" "init_adapt=$what" \
      trainer.max_steps="$adapt_steps" trainer.num_threads=$threads || return 1
    [ "$splits" = true ] ||
    train_phase "$1_mixed" train_pitch "${confs[@]}" -- init_from="$exp/$1_adapted/model.safetensors" \
      "more_tokens=[$exp/tokens/train_arith_excited.safetensors]" trainer.max_steps="$mix_steps" trainer.num_threads=$threads
  }
  for m in "${models[@]}"; do  # in parallel: one process (OMP_NUM_THREADS=1) per model, its phases in turn
    if [ -n "$adapt_from" ]; then adapt "$m" & else phases "$m" & fi
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { log "training failed, see $exp/train_*.log"; exit 1; }; done
  done_stage 4 train
fi

score_rows() {  # score_rows SPLIT RESULTS TITLE: every row of the split, one table (recipes.dialogue.score_splits)
  local split=$1 results=$2 title=$3 n=0 rows m; [ "$tiny" = true ] && n=2
  rows=(); for row in "${held_rows[@]}"; do [ -d "$data/${split}_$row" ] && rows+=(--split "$row=$data/${split}_$row"); done
  for m in "${models[@]}"; do
    local out=$results; [ "$m" = dialogue ] || out=${results%.md}_$m.md
    python -m recipes.dialogue.score_splits --model "$exp/$(final "$m")/model.safetensors" --codec "$exp/codec.safetensors" \
      "${rows[@]}" --out "$exp/$(final "$m")/score_$split" --results "$out" --title "$title" --runs "$score_runs" \
      --max-conversations $n --asr || return 1
  done
}

score_valid() {  # the validation split: every choice is made on it
  score_rows valid "$exp/RESULTS_valid.md" "validation split" || return 1
  for m in "${models[@]}"; do
    python -m recipes.dialogue.evaluate --model "$exp/$(final "$m")/model.safetensors" --max-conversations 200 \
      --tokens "$exp/tokens/valid_unseen_voice.safetensors" "$exp/tokens/train.safetensors" \
      --out "$exp/$(final "$m")/score_valid/teacher_forced.json" || return 1
  done
  log "validation table: $exp/RESULTS_valid.md"
  done_stage 5 score
}
score_test() {  # once per shipped model
  score_rows test "$exp/RESULTS.md" "test split" || return 1
  log "test table: $exp/RESULTS.md"
  done_stage 5 score_test
}
if [ "$splits" = true ]; then  # with --test true both splits side by side (a core each)
  pids=()
  if run_stage 5 score; then score_valid & pids+=($!); fi
  if [ "$test" = true ] && run_stage 5 score_test; then score_test & pids+=($!); fi
  for pid in "${pids[@]}"; do wait "$pid" || { log "scoring failed"; exit 1; }; done
fi

if [ "$splits" != true ] && run_stage 5 score; then
  n=0; asr_opt=--asr; [ "$tiny" = true ] && n=2 && asr_opt=
  train=train; probe_test=test; [ -n "$adapt_from" ] && train=train_pitch && probe_test=test_pitch
  # is the user's style in the tokens or in the voice vector? (bounds what the style ablation can show)
  python -m recipes.dialogue.style_probe --tokens "$exp/tokens/$train.safetensors" --codec "$exp/codec.safetensors" \
    --out "$exp/style_probe.json"
  # ... and read by a sequence model (the pooled probe misses what a dialogue model reads in order; minutes)
  [ "$tiny" = true ] || python -m recipes.dialogue.sequence_probe --train "$exp/tokens/$train.safetensors" \
    --test "$exp/tokens/$probe_test.safetensors" --out "$exp/sequence_probe.json" --no-progress
  for m in "${models[@]}"; do
    python -m recipes.dialogue.score --data "$data/test" --model "$exp/$(final "$m")/model.safetensors" \
      --codec "$exp/codec.safetensors" --out "$exp/$(final "$m")/score" --max-conversations $n --runs "$score_runs" \
      --token-vad "$exp/tokens/$train.safetensors" --text-trace $asr_opt
    python -m recipes.dialogue.evaluate --model "$exp/$(final "$m")/model.safetensors" --max-conversations 200 \
      --tokens "$exp/tokens/test.safetensors" "$exp/tokens/$train.safetensors" --out "$exp/$(final "$m")/score/teacher_forced.json"
    if [ -n "$adapt_from" ]; then  # the style ablation: pitch-only styles, and another style's user audio (a third on)
      third=$(( $(grep -c . "$data/test_pitch/wav.scp") / 3 ))
      python -m recipes.dialogue.evaluate --model "$exp/$(final "$m")/model.safetensors" \
        --tokens "$exp/tokens/test_pitch.safetensors" --swap-audio user --swap-offset $(( third > 0 ? third : 1 )) \
        --out "$exp/$(final "$m")/score/teacher_forced_pitch.json"
    fi
  done
  log "score tables: $exp/<model>/score/RESULTS.md (copy the figures into RESULTS.md with the commands)"
  done_stage 5 score
fi

if run_stage 6 demo; then
  first=$(head -n 1 "$demo_data/wav.scp" | awk '{print $2}')
  python -m dialogue.demo --user "$demo_data/$first" --model "$exp/$(final dialogue)/model.safetensors" \
    --codec "$exp/codec.safetensors" --out "$exp/demo"
  done_stage 6 demo
fi

if [ "$bundle" = true ] && [ "$stop_stage" -ge 7 ]; then
  log "stage 7: bundle the trained model and a test conversation into dialogue/assets/"
  python local/bundle.py "$exp" "$demo_data" "$DUET_ROOT/dialogue/assets" --model "$exp/$(final dialogue)/model.safetensors"
fi
log "finished stages $stage..$stop_stage in $exp"
