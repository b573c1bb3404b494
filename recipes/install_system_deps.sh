#!/usr/bin/env bash
# Debian/Ubuntu packages used by Duet's recipes and scorer: TTS engines with exact timings
# (espeak-ng, flite, festival + voices), classical codec baselines (codec2, opus-tools),
# real speech prompts (asterisk-core-sounds-*), sentence text (fortunes), ffmpeg and sox, and
# PortAudio for the live duplex demo (sounddevice).
# Installs only what is missing; exits non-zero with a message when it cannot.
#
#   bash recipes/install_system_deps.sh            # install what is missing (needs root or sudo)
#   bash recipes/install_system_deps.sh --check    # only report, exit 1 if something is missing
set -u

PACKAGES=(
  espeak-ng libespeak-ng-dev
  flite
  festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  codec2 opus-tools
  asterisk-core-sounds-en asterisk-core-sounds-en-wav asterisk-core-sounds-en-g722  # -en, -es, ...: the prompt texts (only Recommended by the sound packages)
  asterisk-core-sounds-es asterisk-core-sounds-fr asterisk-core-sounds-ru
  asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-ru-wav
  # the other real readers (recipes/real_speech.py, split by recipes/speaker_splits.yaml); never
  # asterisk-core-sounds-it-*: reserved for independent evaluation. asterisk-prompt-es-co and -fr-armelle are
  # not installed: they write into sounds/es and sounds/fr, which the core packages make alternatives symlinks
  # to Allison's and June's folders (installing both loses one or the other); they are unpacked apart below.
  asterisk-prompt-it-menardi-wav klettres-data
  fortunes fortune-mod
  ffmpeg
  libportaudio2
  chromium  # headless browser for the dialogue.serve page test (tests/test_serve_browser.py)
)

# unpacked, not installed (see above), into recipes/audio_corpus.py's PROMPTS_ROOT
UNPACKED=(asterisk-prompt-es-co asterisk-prompt-fr-armelle)
PROMPTS_ROOT=${DUET_PROMPTS_ROOT:-/usr/local/share/duet/prompts}

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

unpack_prompts() {  # apt-get download + dpkg-deb -x: the files, none of the package's alternatives
  local p tmp
  for p in "${UNPACKED[@]}"; do
    [ -d "$PROMPTS_ROOT/$p/usr" ] && continue
    if [ $check_only -eq 1 ]; then echo "install_system_deps: not unpacked: $p (in $PROMPTS_ROOT)"; return 1; fi
    tmp=$(mktemp -d) && chmod 777 "$tmp"
    if ! (cd "$tmp" && apt-get download "$p" >/dev/null 2>&1 && mkdir -p "$PROMPTS_ROOT/$p" && \
          dpkg-deb -x "$tmp"/"$p"_*.deb "$PROMPTS_ROOT/$p"); then
      echo "install_system_deps: could not download and unpack $p into $PROMPTS_ROOT" >&2; rm -rf "$tmp"; return 6
    fi
    rm -rf "$tmp"; echo "install_system_deps: unpacked $p into $PROMPTS_ROOT/$p"
  done
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: no apt-get/dpkg here (not Debian/Ubuntu). Install by other means:" >&2
  echo "  ${PACKAGES[*]}" >&2
  exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing+=("$p") ;;
  esac
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_system_deps: all ${#PACKAGES[@]} packages are installed"
  unpack_prompts; exit $?
fi
echo "install_system_deps: missing: ${missing[*]}"
if [ $check_only -eq 1 ]; then
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo)
else
  echo "install_system_deps: need root to install packages; run as root or with sudo:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 3
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update; then
  echo "install_system_deps: apt-get update failed (no network or broken sources?)" >&2
  exit 4
fi
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
  echo "install_system_deps: apt-get install failed for: ${missing[*]}" >&2
  echo "  (the asterisk-core-sounds-* and festvox-* packages are in Debian 'main'; fortunes is in 'main')" >&2
  exit 5
fi
echo "install_system_deps: installed ${missing[*]}"
unpack_prompts
