#!/usr/bin/env bash
# Runs a multi-process job on this machine: N processes of `python -m amfi_jax.main` on CPU,
# connected through a coordinator on 127.0.0.1. If any process fails, the others are stopped
# and the script exits with that process's status; SIGINT/SIGTERM are passed on to all of them
# (SIGTERM makes them save a checkpoint at the same step and stop).
#
#   launch/local.sh [--dry_run] [--devices_per_process=D] [--port=P] N -- <amfi_jax.main flags>
#   launch/local.sh 2 -- --config=configs/fusion.py:demo --workdir=/tmp/amfi_2p
#
# Output lines are prefixed with the process index. PYTHON (default: python3) selects the
# interpreter; GRACE_S (default 15) is how long the others get to stop after one failed.
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

dry_run=0
devices=1
port=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry_run) dry_run=1; shift ;;
    --devices_per_process=*) devices="${1#*=}"; shift ;;
    --port=*) port="${1#*=}"; shift ;;
    -h|--help) usage ;;
    --) break ;;
    -*) echo "local.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[[ $# -ge 2 && "$2" == "--" ]] || { echo "local.sh: expected N -- <main flags>" >&2; usage; }
num="$1"; shift 2
[[ "$num" =~ ^[1-9][0-9]*$ ]] || { echo "local.sh: N must be a positive integer, got '$num'" >&2; exit 2; }
[[ "$devices" =~ ^[1-9][0-9]*$ ]] || { echo "local.sh: --devices_per_process must be a positive integer, got '$devices'" >&2; exit 2; }
python="${PYTHON:-python3}"
if [[ -z "$port" ]]; then
  # A free port, chosen by the OS.
  port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
[[ "$port" =~ ^[0-9]+$ ]] || { echo "local.sh: --port must be a number, got '$port'" >&2; exit 2; }

command_for() {
  local cmd=(env JAX_PLATFORMS=cpu "$python" -m amfi_jax.main
             "--coordinator_address=127.0.0.1:$port" "--num_processes=$num" "--process_id=$1"
             "--cpu_devices=$devices" "${@:2}")
  printf '%q ' "${cmd[@]}"
}

if [[ $dry_run == 1 ]]; then
  for ((i = 0; i < num; i++)); do command_for "$i" "$@"; echo; done
  exit 0
fi

pids=()
stop_all() {
  local signal="$1"
  for pid in "${pids[@]}"; do kill "-$signal" "$pid" 2>/dev/null || true; done
}
trap 'stop_all TERM' TERM
trap 'stop_all INT' INT

for ((i = 0; i < num; i++)); do
  # exec: the recorded PID is python's own, so signals reach it directly.
  bash -c "exec $(command_for "$i" "$@")" > >(sed -u "s/^/[$i] /") 2>&1 &
  pids+=("$!")
done
echo "local.sh: started $num processes (${pids[*]}) with $devices CPU device(s) each, coordinator 127.0.0.1:$port" >&2

status=0
remaining=$num
while [[ $remaining -gt 0 ]]; do
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    [[ -n "$pid" ]] || continue
    if ! kill -0 "$pid" 2>/dev/null; then
      code=0; wait "$pid" || code=$?
      pids[$i]=""
      remaining=$((remaining - 1))
      if [[ $code -ne 0 && $status -eq 0 ]]; then
        status=$code
        echo "local.sh: process $i exited with status $code; stopping the other processes" >&2
        # A job with a dead process cannot make progress (its collectives would wait forever):
        # SIGTERM now, SIGKILL for what is left after the grace period.
        stop_all TERM
        ( sleep "${GRACE_S:-15}"; stop_all KILL ) > /dev/null 2>&1 &
        killer=$!
      fi
    fi
  done
  sleep 0.5
done
[[ -z "${killer:-}" ]] || kill "$killer" 2>/dev/null || true
exit "$status"
