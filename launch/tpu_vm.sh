#!/usr/bin/env bash
# Runs training on every worker of a Cloud TPU VM slice (e.g. v4-32: 4 hosts) at once, over
# `gcloud compute tpus tpu-vm ssh --worker=all`. JAX finds the slice's coordinator and process ids
# from the TPU metadata; `--distributed=on` makes their absence an error.
#
#   launch/tpu_vm.sh [--dry_run] --tpu=NAME --zone=ZONE [--project=P] [--repo_dir=DIR] \
#       -- <amfi_jax.main flags>
#   launch/tpu_vm.sh --tpu=amfi-v4-32 --zone=us-central2-b -- \
#       --config=configs/fusion.py --workdir=/mnt/shared/amfi
#
# Every worker needs the repository at --repo_dir (default ~/amfi_jax) with the package
# installed (`pip install -e .` there), and --workdir must be a filesystem all workers mount
# (NFS/Filestore, or a bucket through gcsfuse). Re-running the same command resumes from the last
# checkpoint.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

dry_run=0; tpu=""; zone=""; project=""; repo_dir="~/amfi_jax"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry_run) dry_run=1; shift ;;
    --tpu=*) tpu="${1#*=}"; shift ;;
    --zone=*) zone="${1#*=}"; shift ;;
    --project=*) project="${1#*=}"; shift ;;
    --repo_dir=*) repo_dir="${1#*=}"; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    *) echo "tpu_vm.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -n "$tpu" ]] || { echo "tpu_vm.sh: --tpu=NAME is required" >&2; exit 2; }
[[ -n "$zone" ]] || { echo "tpu_vm.sh: --zone=ZONE is required" >&2; exit 2; }
[[ $# -gt 0 ]] || { echo "tpu_vm.sh: give the amfi_jax.main flags after --" >&2; exit 2; }

# The remote command: `cd` keeps `~` unquoted so the remote shell expands it.
remote="cd $repo_dir && python3 -m amfi_jax.main --distributed=on$(printf ' %q' "$@")"
cmd=(gcloud compute tpus tpu-vm ssh "$tpu" "--zone=$zone" --worker=all "--command=$remote")
[[ -z "$project" ]] || cmd+=("--project=$project")
if [[ $dry_run == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
