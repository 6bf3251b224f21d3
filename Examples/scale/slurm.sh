#!/usr/bin/env bash
# One merge split across a Slurm job array on shared storage: each array task computes one
# partition of the output's shards (merge run --partition I/N), then one job assembles them.
#
#   jobid=$(sbatch --parsable --array=0-3 Examples/scale/slurm.sh)
#   sbatch --dependency=afterok:$jobid --wrap 'merge assemble merged'
#
# RECIPE, OUTPUT (a folder on storage every node sees) and MERGE may be set in the environment.
#SBATCH --job-name=merge
#SBATCH --cpus-per-task=16
#SBATCH --mem=64G
set -euo pipefail
: "${RECIPE:=recipe.yml}" "${OUTPUT:=merged}" "${MERGE:=merge}"
"$MERGE" run "$RECIPE" "$OUTPUT" --quiet \
  --partition "${SLURM_ARRAY_TASK_ID:?run as a job array: sbatch --array=0-3}/${SLURM_ARRAY_TASK_COUNT:?}"
