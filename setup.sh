#!/usr/bin/env bash
# One-command set-up on Debian with Node 20: system packages (FluidSynth and the FluidR3 GM
# SoundFont), npm packages from the lockfile, then the main job on the embedded default:
# the terminal bot (`npm start` with no chat tokens) composes a piece with the shipped model
# into ./out/<job-id>/.
# Set NOCTURNE_SKIP_DEMO=1 to install only.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v fluidsynth >/dev/null 2>&1 || need_apt+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)  # the MusicXML schema test (issue 10)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

echo "setup: installing npm packages (npm ci; sqlite3 builds from source, about 80 s)" >&2
npm ci --no-audit --no-fund --loglevel=error

if [ "${NOCTURNE_SKIP_DEMO:-0}" != "1" ]; then
  echo "setup: composing a piece with the shipped model: /compose chopin 250 into ./out/<job-id>/" >&2
  echo "/compose chopin 250" | npm start --silent
fi
