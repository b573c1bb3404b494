#!/usr/bin/env bash
# Kaldi-style option parsing: `--some-option value` (or --some_option) sets the shell variable
# some_option, which must already exist (a typo fails loudly). `--help` prints $help_message.
while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h) echo "${help_message:-no help}"; exit 0 ;;
    --*=*) echo "$0: use '--opt value', not '--opt=value': $1" >&2; exit 1 ;;
    --*) name=$(echo "$1" | sed 's/^--//; s/-/_/g')
      if ! declare -p "$name" >/dev/null 2>&1; then echo "$0: unknown option $1" >&2; exit 1; fi
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      printf -v "$name" '%s' "$2"; shift 2 ;;
    *) break ;;
  esac
done
