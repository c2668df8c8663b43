# Shared by the study scripts (sourced, not run): resumable train_lm runs and the plotting
# interpreter. A script sets OUT (its results folder) before calling setup.
#
#   run_train NAME [train_lm flags...]
#       Runs train_lm --json with the flags unless OUT/NAME.json exists (done) or another instance
#       holds OUT/.lock.NAME (running). Writes OUT/NAME.json (the --json line) and OUT/NAME.log
#       (the progress lines), the data path replaced by its file name. A killed run leaves no
#       .json, so the next invocation runs it again (a lock left by a killed process is taken
#       over).
# Environment: DATA (the corpus, required unless the script says otherwise), BUILD (default
# build/release), NICE (default 10), SMOKE=1 (the script's tiny configuration, results under
# build/experiments/smoke/ instead of docs/results/).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build/release}
SMOKE=${SMOKE:-0}
PYTHON=$("$ROOT/scripts/pquant_python.sh")
CURLOCK=
PRIVATE_BINS=()

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# setup TOOL...: checks DATA and the tools, makes OUT, copies each tool to a private file (a
# rebuild during a long study does not change its runs) as $TRAIN_LM, $ANALYZE.
setup() {
  [[ -n "${DATA:-}" && -r "${DATA:-}" ]] || die "set DATA to a readable text file (e.g. tinyshakespeare.txt)"
  mkdir -p "$OUT"
  trap 'rm -f "${PRIVATE_BINS[@]}"; [[ -n $CURLOCK ]] && rm -rf "$CURLOCK"; true' EXIT
  trap 'exit 143' TERM INT
  local tool bin copy
  for tool in "$@"; do
    bin=$BUILD/examples/$tool/$tool
    [[ -x $bin ]] || die "build $tool first: cmake --build $BUILD --target $tool"
    copy=$(mktemp "${TMPDIR:-/tmp}/$tool.XXXXXX")
    cp "$bin" "$copy"
    chmod +x "$copy"
    PRIVATE_BINS+=("$copy")
    case $tool in
      train_lm) TRAIN_LM=$copy ;;
      analyze_sensitivity) ANALYZE=$copy ;;
    esac
  done
}

run_train() {
  local name=$1
  shift
  local json=$OUT/$name.json lock=$OUT/.lock.$name
  [[ -e $json ]] && { echo "skip $name (done)"; return 0; }
  if ! mkdir "$lock" 2>/dev/null; then
    # A lock whose owner is gone (killed with SIGKILL, machine restarted) is stale: take it over.
    local owner
    owner=$(cat "$lock/pid" 2>/dev/null || true)
    if [[ -n $owner ]] && kill -0 "$owner" 2>/dev/null; then
      echo "skip $name (running elsewhere, process $owner)"
      return 0
    fi
    rm -rf "$lock"
    mkdir "$lock" 2>/dev/null || { echo "skip $name (running elsewhere)"; return 0; }
  fi
  echo $$ >"$lock/pid"
  CURLOCK=$lock
  echo "run  $name: train_lm $*"
  local t0=$SECONDS base
  base=$(basename "$DATA")
  if nice -n "${NICE:-10}" "$TRAIN_LM" --data "$DATA" --json "$@" >"$OUT/$name.log.tmp" 2>&1; then
    tail -n 1 "$OUT/$name.log.tmp" | sed "s|$DATA|$base|g" |
      sed "s|^{|{\"run\":\"$name\",${LABEL:+\"label\":\"$LABEL\",}|" >"$json.tmp"
    sed '$d' "$OUT/$name.log.tmp" | sed "s|$DATA|$base|g" >"$OUT/$name.log"
    echo "wall_seconds $((SECONDS - t0))" >>"$OUT/$name.log"
    rm -f "$OUT/$name.log.tmp"
    mv "$json.tmp" "$json"
    echo "done $name in $((SECONDS - t0)) s: $(grep -o '"val_loss":[0-9.]*' "$json")"
  else
    echo "FAILED $name (see $OUT/$name.log.tmp)" >&2
  fi
  rm -rf "$lock"
  CURLOCK=
}

# A number from a one-line JSON file: json_field FILE KEY
json_field() { grep -o "\"$2\":[-0-9.e+]*" "$1" | head -n 1 | cut -d: -f2; }
