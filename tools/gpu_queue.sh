#!/usr/bin/env bash
# The measurements still waiting for a GPU (README, "On the GPU machine"), run one sweep after another.
# Made for a lent GPU machine whose calls last at most 10 minutes: start it in the background in one call,
# then let later calls copy what has finished. Each sweep writes its records, Hydra folders and report under
# $WORK/<name>/ and is packed into $WORK/out/<NN>_<name>.tar.gz when it ends (then <NN>_<name>.done appears),
# so finished results can be fetched while the rest still run. A failing sweep is logged and the queue goes on.
#
#   MODEL=/tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf setsid nohup bash tools/gpu_queue.sh \
#       > /tmp/gpu-queue.log 2>&1 < /dev/null &
#
# READY=FILE: a sweep that names $MODEL waits for that file first (touch it once the model is whole: it may
# arrive in later calls), while the sweeps before it, which need no model, already run.
# QUEUE: replaces the list below, one sweep per line as "name|overrides" ($MODEL is expanded).
# PYTHON (default python, else python3) must import the harness: PYTHONPATH=$PWD:/tmp/site with the device kit.
# Order and size are set by a 30-minute device budget: the MFU sweep first (it needs no model file; its first
# 4 jobs took 2 min 33 s on the H100), then the bench without the baseline recipe (the H100 run of 6d20444
# measured the harness recipe at 3.8-3.95x it) with the compiled candidate, 9 jobs; then the Liger candidate (3
# jobs) and the MFU sweep's 4 jobs with Liger's kernels, apart, since a sweep is refused whole when one of its
# jobs cannot run (here: without the liger-kernel wheel in the kit, README); the ablation (which has a Liger
# row too) and the scale slice come after, if time is left. Regenerate one bench report from both bench
# folders' records (python -m harness report DIR with the records of both).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORK=${WORK:-/tmp/gpu-queue}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
MODEL=${MODEL:-/tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf}
DEFAULT_QUEUE='mfu|+sweeps=mfu
bench|+sweeps=bench model.path=$MODEL recipe=documents,harness,harness_compiled
bench_liger|+sweeps=bench model.path=$MODEL recipe=harness_liger
mfu_liger|+sweeps=mfu train.liger_kernel=true train.sync_free_steps=true
speedups|+sweeps=speedups method=lora model.path=$MODEL train.max_steps=30
scale|+sweeps=scale model=llama-3.2-1b,llama-2-7b method=full,lora,qlora'
QUEUE=${QUEUE:-$DEFAULT_QUEUE}

mkdir -p "$WORK/out"
n=0
while IFS='|' read -r name overrides; do
    [[ -z "$name" ]] && continue
    n=$((n + 1))
    if [[ -n "${READY:-}" && "$overrides" == *'$MODEL'* && ! -e "$READY" ]]; then
        echo "$(date -u +%H:%M:%S) $name waits for $READY"
        while [[ ! -e "$READY" ]]; do sleep 2; done
    fi
    tag=$(printf '%02d_%s' "$n" "$name")
    dir="$WORK/$name"
    echo "$(date -u +%H:%M:%S) start $tag: $overrides"
    start=$SECONDS
    eval "set -- $overrides"  # the overrides are words, $MODEL expanded
    mkdir -p "$dir"
    "$PYTHON" -m harness "$@" results_dir="$dir/results" report_dir="$dir/report" hydra.sweep.dir="$dir/hydra" \
        > "$dir/sweep.log" 2>&1
    rc=$?
    echo "$(date -u +%H:%M:%S) end $tag: exit $rc after $((SECONDS - start)) s"
    tar -czf "$WORK/out/$tag.tar.gz" --exclude='*.safetensors' -C "$WORK" "$name"
    echo "$rc $((SECONDS - start))" > "$WORK/out/$tag.done"
done <<< "$QUEUE"
echo "$(date -u +%H:%M:%S) queue done"
touch "$WORK/out/ALL.done"
