#!/usr/bin/env bash
# The system packages the worker and its tests need, in one place (the Makefile calls this).
#   scripts/system-deps.sh install   apt-get install them (as root; CI runs this on a fresh machine)
#   scripts/system-deps.sh ensure    nothing when all are present; when some are missing, install them if
#                                    we are root and have apt-get, else stop at once with the command to run
# ffmpeg: whisperx decodes audio with it, torchcodec links its libraries; espeak-ng and sox make real
# speech for the timing tests; gcc builds cdifflib (nemo-text-processing needs it; source only); python3-venv (ensurepip) lets `make install` create the venv; fontconfig
# and fonts-dejavu-core: the subtitles' font, which libass finds and the line breaker measures.
set -euo pipefail

PACKAGES=(ffmpeg espeak-ng sox gcc)  # each installs a command of its name (gcc: pip builds cdifflib from source)
FONT_PACKAGES=(fontconfig fonts-dejavu-core)

missing() {
  local out=() pkg
  for pkg in "${PACKAGES[@]}"; do
    command -v "$pkg" >/dev/null 2>&1 || out+=("$pkg")
  done
  python3 -c 'import ensurepip' >/dev/null 2>&1 || out+=(python3-venv)
  if [[ "$(fc-match -f '%{file}' 'DejaVu Sans' 2>/dev/null)" != *DejaVuSans* ]]; then
    out+=("${FONT_PACKAGES[@]}")
  fi
  echo "${out[@]}"
}

install() {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

case "${1:-ensure}" in
  install)
    install "${PACKAGES[@]}" "${FONT_PACKAGES[@]}" python3-venv
    ;;
  ensure)
    todo=$(missing)
    [ -z "$todo" ] && exit 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing missing system packages: $todo" >&2
      # shellcheck disable=SC2086  # one word per package
      install $todo
      todo=$(missing)
      [ -z "$todo" ] && exit 0
      echo "still missing after apt-get install: $todo" >&2
      exit 1
    fi
    echo "missing system packages: $todo" >&2
    if command -v apt-get >/dev/null 2>&1; then
      echo "run: sudo make system-deps" >&2
    else
      echo "install them with your system's package manager (Debian/Ubuntu: sudo make system-deps)" >&2
    fi
    exit 1
    ;;
  *)
    echo "usage: $0 [ensure|install]" >&2
    exit 2
    ;;
esac
