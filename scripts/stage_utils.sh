#!/usr/bin/env bash
# Stage bookkeeping for recipes (source it after parse_options.sh).
#
# Expects the variables: stage, stop_stage, exp_dir, force (true/false).
#
#   run_stage N NAME FUNCTION [SIGNATURE]
#       Runs FUNCTION (a shell function) as stage N when stage <= N <= stop_stage.
#       * Done marker: $exp_dir/stages/<N>_<NAME>.done. If it exists and force is
#         false the stage is skipped (with a message). If SIGNATURE (a string with the
#         options the stage depends on) differs from the one stored in the marker, a
#         warning says so (re-run with --force true to redo).
#       * Log: $exp_dir/logs/stage<N>_<NAME>.log, also shown on the console (tee).
#       * When the stage runs, the done markers of all later stages are removed first:
#         their inputs are about to change, so they must run again.  A rows stage of one
#         table (NAME rows_<step>_<table>) removes only the later rows stages of that table:
#         the tables of one rows dir are separate runs (stage 15 of the leaderboard does not
#         undo the core table's stages 16-18).
#       * On failure the marker is not written and the script exits with the stage's status.
#   atomic_replace_dir TMP FINAL
#       Move the finished directory TMP to FINAL, replacing an old FINAL
#       (old one renamed aside first, so FINAL is never half-written).
#   log MESSAGE...      timestamped message on stderr.

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0")) $*" >&2; }

# the table of a rows stage name rows_<step>_<table> (nothing for any other name)
rows_table_of() { [[ "$1" == rows_*_* ]] || return 0; local t=${1#rows_}; echo "${t#*_}"; }

stage_selected() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

atomic_replace_dir() {
  local tmp=$1 final=$2 old
  if [ -e "$final" ]; then
    old="${final}.old.$$"
    rm -rf "$old"
    mv "$final" "$old"
  fi
  mv "$tmp" "$final"
  [ -z "${old:-}" ] || rm -rf "$old"
}

run_stage() {
  local n=$1 name=$2 fn=$3 sig=${4:-}
  stage_selected "$n" || return 0
  local marker="$exp_dir/stages/${n}_${name}.done"
  local logf="$exp_dir/logs/stage${n}_${name}.log"
  if [ -f "$marker" ] && [ "$force" != true ]; then
    log "stage $n ($name): already done ($marker); skipping. Use --force true to redo it."
    if [ -n "$sig" ] && [ "$(sed -n 's/^signature: //p' "$marker")" != "$sig" ]; then
      log "WARNING: stage $n ($name) was done with different options or input files:"
      log "  then: $(sed -n 's/^signature: //p' "$marker")"
      log "  now:  $sig"
      log "  re-run with --force true to redo it with the current options and inputs."
    fi
    return 0
  fi
  mkdir -p "$exp_dir/stages" "$exp_dir/logs"
  rm -f "$marker"
  local f m table other
  table=$(rows_table_of "$name")
  for f in "$exp_dir"/stages/*.done; do
    [ -e "$f" ] || continue
    m=$(basename "$f" .done); other=${m#*_}; m=${m%%_*}
    # a rows stage: only the later stages of its own table
    [ -z "$table" ] || [ "$(rows_table_of "$other")" = "$table" ] || continue
    if [[ "$m" =~ ^[0-9]+$ ]] && [ "$m" -gt "$n" ]; then
      log "stage $n re-runs: removing the done marker of a later stage: $f"
      rm -f "$f"
    fi
  done
  log "stage $n ($name): start (log: $logf)"
  local t0=$SECONDS rc
  set +e
  ( set -euo pipefail; "$fn" ) 2>&1 | tee "$logf"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    log "stage $n ($name): FAILED (exit $rc); see $logf"
    exit "$rc"
  fi
  { echo "stage: $n $name"; echo "finished: $(date -u '+%Y-%m-%dT%H:%M:%SZ')";
    echo "seconds: $((SECONDS - t0))"; echo "signature: $sig"; } > "$marker.tmp"
  mv "$marker.tmp" "$marker"
  log "stage $n ($name): done in $((SECONDS - t0)) s"
}
