#!/usr/bin/env bash
# Submits a multi-process training job to Kubernetes (GKE): fills in launch/gke/amfi-train.yaml
# and pipes it to `kubectl apply`. Put --workdir under the mount of the shared volume.
#
#   launch/gke/submit.sh [--dry_run] --image=IMAGE --processes=N [--gpus_per_process=8]
#       [--name=amfi-train] [--pvc=amfi-workdir] [--mount=/workdir] [--repo_dir=/app]
#       [--port=1234] -- <amfi_jax.main flags>
#   launch/gke/submit.sh --image=us-docker.pkg.dev/p/r/amfi:latest --processes=4 -- \
#       --config=configs/fusion.py --workdir=/workdir/amfi
#
# --dry_run prints the manifest instead of applying it.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

dry_run=0; image=""; processes=""; gpus=8; name="amfi-train"; pvc="amfi-workdir"
mount="/workdir"; repo_dir="/app"; port=1234
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry_run) dry_run=1; shift ;;
    --image=*) image="${1#*=}"; shift ;;
    --processes=*) processes="${1#*=}"; shift ;;
    --gpus_per_process=*) gpus="${1#*=}"; shift ;;
    --name=*) name="${1#*=}"; shift ;;
    --pvc=*) pvc="${1#*=}"; shift ;;
    --mount=*) mount="${1#*=}"; shift ;;
    --repo_dir=*) repo_dir="${1#*=}"; shift ;;
    --port=*) port="${1#*=}"; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    *) echo "submit.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -n "$image" ]] || { echo "submit.sh: --image=IMAGE is required" >&2; exit 2; }
[[ "$processes" =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: --processes must be a positive integer, got '$processes'" >&2; exit 2; }
[[ "$gpus" =~ ^[0-9]+$ ]] || { echo "submit.sh: --gpus_per_process must be a number, got '$gpus'" >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] || { echo "submit.sh: --port must be a number, got '$port'" >&2; exit 2; }
[[ "$name" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || { echo "submit.sh: --name must be a DNS label (lower case, digits, '-'), got '$name'" >&2; exit 2; }
[[ $# -gt 0 ]] || { echo "submit.sh: give the amfi_jax.main flags after --" >&2; exit 2; }

# string.Template fills the fields; the flags become a JSON list, which is valid YAML whatever
# characters they hold.
manifest="$(NAME="$name" IMAGE="$image" NUM_PROCESSES="$processes" GPUS_PER_PROCESS="$gpus" \
  PVC="$pvc" WORKDIR_MOUNT="$mount" REPO_DIR="$repo_dir" PORT="$port" \
  "${PYTHON:-python3}" - "$(dirname "$0")/amfi-train.yaml" "$@" <<'PY'
import json, os, string, sys
fields = {k: os.environ[k] for k in ("NAME", "IMAGE", "NUM_PROCESSES", "GPUS_PER_PROCESS", "PVC",
                                     "WORKDIR_MOUNT", "REPO_DIR", "PORT")}
fields["ARGS"] = json.dumps(sys.argv[2:])
with open(sys.argv[1]) as f:
  print(string.Template(f.read()).substitute(fields), end="")
PY
)"
if [[ $dry_run == 1 ]]; then
  printf '%s\n' "$manifest"
  exit 0
fi
printf '%s\n' "$manifest" | kubectl apply -f -
