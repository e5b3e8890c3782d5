#!/usr/bin/env bash
# The GPT-2 small report on a CPU machine: what .github/workflows/gpt2.yml runs on a GitHub
# runner (tests/test_gpt2_report.py runs it end to end on a local GPT-2-shaped model folder).
#
#   scripts/gpt2-report.sh [MODELS] [--commit]
#
# MODELS: comma-separated names or local folders (default gpt2-small,organism,organism-attn-only-1l).
# In the current folder: writes MODELS into report.yaml's `models:` (the published site renders
# the models report.yaml lists), runs `capcircuit build --device cpu` (only stale experiments
# run: a second run with unchanged code and weights computes nothing), checks that every result
# is fresh, and with --commit commits results/ and report.yaml (no commit when nothing changed).
# $CAPCIRCUIT is the command to run (default: capcircuit).
set -euo pipefail

models="${1:-gpt2-small,organism,organism-attn-only-1l}"
commit="${2:-}"
if [ -n "$commit" ] && [ "$commit" != "--commit" ]; then
  echo "gpt2-report.sh: unknown option '$commit'; allowed: --commit" >&2
  exit 2
fi
read -r -a capcircuit <<< "${CAPCIRCUIT:-capcircuit}"
[ -f report.yaml ] || { echo "gpt2-report.sh: no report.yaml in $(pwd); run it from the repository root" >&2; exit 1; }

# models: ["a", "b"] in place of the current entry, inline or a block list (comments and the
# rest of the file kept); written beside report.yaml and renamed over it
list=$(printf '%s' "$models" | awk -F, '{for (i = 1; i <= NF; i++) printf "%s\"%s\"", (i > 1 ? ", " : ""), $i}')
awk -v entry="models: [$list]" '
  skip && /^[[:space:]]*-/ { next }
  { skip = 0 }
  /^models:/ { print entry; skip = 1; done = 1; next }
  { print }
  END { if (!done) print entry }
' report.yaml > report.yaml.tmp
mv report.yaml.tmp report.yaml

start=$(date +%s)
"${capcircuit[@]}" build --config report.yaml --device cpu
echo "gpt2-report.sh: build took $(( $(date +%s) - start )) s"

stale=$("${capcircuit[@]}" status --config report.yaml | grep -v ' fresh$' || true)
if [ -n "$stale" ]; then
  echo "gpt2-report.sh: results not fresh after the build:" >&2
  echo "$stale" >&2
  exit 1
fi

if [ "$commit" = "--commit" ]; then
  git add results report.yaml
  if git diff --cached --quiet; then
    echo "gpt2-report.sh: results unchanged, nothing to commit"
  else
    git commit -q -m "Results for $models (scripts/gpt2-report.sh on a CPU runner)"
    echo "gpt2-report.sh: committed $(git rev-parse --short HEAD)"
  fi
fi
