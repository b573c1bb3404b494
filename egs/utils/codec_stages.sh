# Codec training, export and scoring stages shared by every codec recipe (ESPnet's shared-stage
# pattern): a recipe's run.sh prepares its data and training shard, sets the variables below, sources
# this file and calls `codec_stages FIRST`, which runs
#   FIRST autoencoder · +1 semantic · +2 vocoder · +3 fine-tune · +4 export · +5 scoring
# (the semantic and vocoder stages each with a second phase, conf/stage{2_semantic,3_vocoder}_more.yaml, where the
# recipe has one)
# within --stage/--stop_stage. Every training stage resumes from its newest step-N/ checkpoint and
# leaves exp/<name>/.done.
#
# Variables the recipe sets: stage stop_stage exp data extra (config deltas, array) more_extra (deltas after
# those, for the second phases, array) train_sets
# (--set overrides for every training stage, array: shard=... etc.) nj torchrun_opts finetune
# vocoder_parallel export_desc export_to score_sets score_max_utts score_name score_opts baselines
# results_md title, and optionally init_codec: an exported codec whose encoder, mel decoder and vocoder
# are kept (the autoencoder and vocoder stages are skipped) and whose weights seed the semantic stage, and
# phone_classifier: a frame phone classifier trained apart, put into that seed (`assemble --phone-classifier`).

codec_launch() {  # module args...: one process needs no launcher (the trainer treats both alike)
  if [ "$nj" -eq 1 ] && [ "$torchrun_opts" = "--standalone" ]; then python -m "$@"
  else torchrun $torchrun_opts --nproc_per_node="$nj" -m "$@"; fi
}

codec_last() {  # newest step-N of a training dir (numeric N), or nothing
  for d in "$exp/$1"/step-*; do if [ -d "$d" ]; then echo "${d##*step-} $d"; fi; done | sort -n | tail -1 | cut -d' ' -f2-
}

codec_train() {  # name conf [init checkpoint]
  local name=$1 conf=$2 init=${3:-}
  local sets=("${train_sets[@]}")
  [ -n "$init" ] && sets+=("init_from=$init")
  [ -f "$exp/$name/.done" ] && { echo "stage $name: done"; return; }
  codec_launch recipes.codec.train --config "$conf" "${extra[@]}" --out "$exp/$name" --set "${sets[@]}"
  touch "$exp/$name/.done"
}

codec_from() {  # autoencoder|vocoder: the checkpoint that stage's weights come from
  if [ -n "${init_codec:-}" ]; then echo "$exp/init_codec/step-0"
  else codec_last "$1"; fi
}

codec_more() {  # name conf [init]: the stage's second phase (conf/<stage>_more.yaml, where the recipe has one),
                # resumed in the same directory from its last checkpoint with a schedule of its own (.done.more)
  local name=$1 conf=$2 init=${3:-} more=${2%.yaml}_more.yaml
  [ -f "$more" ] && [ ! -f "$exp/$name/.done.more" ] || return 0
  local sets=("${train_sets[@]}")
  [ -n "$init" ] && sets+=("init_from=$init")
  codec_launch recipes.codec.train --config "$conf" "$more" "${extra[@]}" "${more_extra[@]}" --out "$exp/$name" \
    --set "${sets[@]}"
  touch "$exp/$name/.done.more"
}

codec_semantic() {
  codec_train semantic conf/stage2_semantic.yaml "$(codec_from autoencoder)"
  codec_more semantic conf/stage2_semantic.yaml "$(codec_from autoencoder)"
}

codec_vocoder() {
  codec_train vocoder conf/stage3_vocoder.yaml
  codec_more vocoder conf/stage3_vocoder.yaml
}

codec_stages() {  # FIRST: the stage number of the autoencoder
  local s=$1 voc_pid=""
  run() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
  if [ -n "${init_codec:-}" ]; then
    [ -f "$exp/init_codec/step-0/model.safetensors" ] || \
      python -m recipes.codec.assemble --from-codec "$init_codec" --out "$exp/init_codec/step-0" \
        ${phone_classifier:+--phone-classifier "$phone_classifier"}
    echo "stages $s and $((s + 2)): encoder, mel decoder and vocoder kept from $init_codec"
  elif [ "$vocoder_parallel" = true ] && run $((s + 2)); then  # independent of the autoencoder/semantic stages
    echo "stage $((s + 2)) (background): vocoder"
    ( codec_vocoder > "$exp/vocoder.log" 2>&1 ) &
    voc_pid=$!
  fi
  if run $s && [ -z "${init_codec:-}" ]; then
    echo "stage $s: autoencoder"
    codec_train autoencoder conf/stage1_autoencoder.yaml
  fi
  if run $((s + 1)); then
    echo "stage $((s + 1)): semantic tokens + voice + text alignment"
    codec_semantic
  fi
  if run $((s + 2)) && [ -z "${init_codec:-}" ]; then
    if [ -n "$voc_pid" ]; then wait "$voc_pid" || { echo "vocoder failed, see $exp/vocoder.log" >&2; return 1; }
    else echo "stage $((s + 2)): vocoder"; codec_vocoder; fi
  fi
  if run $((s + 3)) && [ "$finetune" = true ]; then
    echo "stage $((s + 3)): end-to-end fine-tune of connector + decoder + vocoder"
    python -m recipes.codec.assemble --semantic "$(codec_last semantic)" --vocoder "$(codec_from vocoder)" \
      --out "$exp/assembled/step-0"
    codec_train finetune conf/stage4_finetune.yaml "$exp/assembled/step-0"
  fi
  if run $((s + 4)); then
    echo "stage $((s + 4)): export"
    local ckpt voc=()
    if [ "$finetune" = true ] && [ -n "$(codec_last finetune)" ]; then
      ckpt=$(codec_last finetune)
    elif [ -n "$(codec_last semantic)" ]; then
      ckpt=$(codec_last semantic); [ -n "$(codec_from vocoder)" ] && voc=(--vocoder "$(codec_from vocoder)")
    else  # only the autoencoder is trained (a partial run): its semantic path and vocoder are untrained
      ckpt=$(codec_last autoencoder)
      [ -z "$ckpt" ] && { echo "stage $((s + 4)): no trained stage in $exp" >&2; return 1; }
      echo "stage $((s + 4)): warning: exporting the autoencoder stage only ($ckpt)" >&2
    fi
    python -m recipes.codec.export --checkpoint "$ckpt" --config "$ckpt/../config.yaml" "${voc[@]}" \
      --out "$exp/codec.safetensors" --description "$export_desc" --recipe "cd $title && ./run.sh ${recipe_args:-}"
    if [ -n "$export_to" ]; then cp "$exp/codec.safetensors" "$export_to"; fi
  fi
  if run $((s + 5)); then
    echo "stage $((s + 5)): scoring"
    for set in $score_sets; do
      [ -d "$data/$set" ] || { echo "stage $((s + 5)): no $data/$set, skipped"; continue; }
      python -m recipes.score --data "$data/$set" --codec "$exp/codec.safetensors" --out "$exp/score/$set" \
        --baselines "$baselines" --max-utts "$score_max_utts" --name "$score_name" --quiet $score_opts
    done
    python -m recipes.codec.results --scores "$exp/score" --out "$results_md" --exp "$exp" --title "$title"
    cat "$results_md"
  fi
}
