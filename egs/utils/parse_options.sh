#!/usr/bin/env bash
# Kaldi-style option parsing: every `--name value` on the command line sets the shell variable
# `name` (dashes become underscores) if the script defined it before sourcing this file.
# `--help` prints the variables that can be set. Usage (in run.sh): `. utils/parse_options.sh`.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      echo "Options (current values):"
      grep -E '^[a-z_]+=' "$0" | sed 's/^/  --/; s/=/ /'
      exit 0 ;;
    --*=*)
      name="${1%%=*}"; name="${name#--}"; name="${name//-/_}"; value="${1#*=}"; shift ;;
    --*)
      name="${1#--}"; name="${name//-/_}"
      if [ $# -lt 2 ]; then echo "$0: option --$name needs a value" >&2; exit 1; fi
      value="$2"; shift 2 ;;
    *) break ;;
  esac
  if ! declare -p "$name" >/dev/null 2>&1; then
    echo "$0: unknown option --$name (see --help)" >&2; exit 1
  fi
  printf -v "$name" '%s' "$value"
done
