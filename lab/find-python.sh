#!/usr/bin/env bash
# Prints the path of the newest Python 3 interpreter whose version is
# between MIN and MAX (inclusive; MAX defaults to MIN's major version) and
# that can make a virtual environment with pip. It looks at python3 and
# python3.N on PATH, Debian's /usr/bin, and pyenv's ~/.pyenv/versions; each
# candidate is run, since a pyenv shim is on PATH even for versions it will
# not run. Fails naming what is needed when there is none.
#
# usage: lab/find-python.sh 3.12 [3.14]
set -euo pipefail
min=${1:?usage: find-python.sh MIN [MAX]}
max=${2:-${min%%.*}.99}
minor() { echo "${1#*.}"; }
candidates=(python3)
for n in $(seq 20 -1 "$(minor "$min")"); do candidates+=("python3.$n"); done
candidates+=(/usr/bin/python3 /usr/bin/python3.* /usr/local/bin/python3.* "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3.*)
best= best_minor=-1
for c in "${candidates[@]}"; do
  case $c in *-config | *.py | *m) continue ;; esac
  p=$(command -v "$c" 2>/dev/null) || continue
  # The version, if the interpreter runs and has venv and ensurepip (Debian
  # splits them into python3-venv).
  out=$("$p" -c 'import sys, venv, ensurepip; print("%d.%d %s" % (sys.version_info[:2] + (sys.executable,)))' 2>/dev/null) || continue
  v=${out%% *}
  [ "${v%%.*}" = 3 ] || continue
  m=$(minor "$v")
  [ "$m" -ge "$(minor "$min")" ] && [ "$m" -le "$(minor "$max")" ] && [ "$m" -gt "$best_minor" ] || continue
  best=${out#* } best_minor=$m
done
if [ -z "$best" ]; then
  echo "find-python: no Python $min..$max with venv found (looked at python3, python3.N on PATH, /usr/bin, ~/.pyenv/versions);" \
    "install one, e.g. \`pyenv install 3.12\` or your distribution's python3.12 and python3.12-venv" >&2
  exit 1
fi
echo "$best"
