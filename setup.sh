#!/usr/bin/env bash
# One-command set-up on Debian with Node 20: system packages (FluidSynth and the FluidR3 GM
# SoundFont; redis-server and PostgreSQL for the tests), npm packages from the lockfile, then the
# main job on the embedded default: the terminal bot (`npm start` with no chat tokens) composes a
# piece with the shipped model into ./out/<job-id>/.
# Set NOCTURNE_SKIP_DEMO=1 to install only.
# Set NOCTURNE_SKIP_TEST_SERVERS=1 not to install redis-server and PostgreSQL (the bot does not
# need them; without them `npm test` skips the scale-out and store tests).
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v fluidsynth >/dev/null 2>&1 || need_apt+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)  # the MusicXML schema test (issue 10)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)  # OGG, MP3 and Opus encoding and the loudness test (issue 10)
# The tests start their own redis-server (src/testing/redis.ts: from PATH) and Postgres
# (tests/support/postgres.ts: initdb and postgres from PATH or /usr/lib/postgresql/<ver>/bin, run
# as the `postgres` user under root) in temp folders on free ports; the Debian services are not used.
services=0
if [ "${NOCTURNE_SKIP_TEST_SERVERS:-0}" != "1" ]; then
  command -v redis-server >/dev/null 2>&1 || { need_apt+=(redis-server); services=1; }
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_apt+=(postgresql)
    services=1
  fi
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  # policy-rc.d exit 101 while apt runs: the packages' scripts may not start their services.
  if [ "$services" -eq 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    trap '"${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
  fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ "$(trap -p EXIT)" ]; then
    "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
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
