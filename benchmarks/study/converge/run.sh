#!/bin/sh
# The studies at convergence (planned: about 120 CPU-hours at the step caps with the sequence
# kernel, see benchmarks/RESULTS-study.md). Run it once per session with the CPUs the session
# has; stop it at the session's end (Ctrl-C or kill). Every study resumes where it stopped:
# finished trials are kept, a running one continues from its last checkpoint, and trials go
# draw by draw, so a study cut short still compares every cell on the same draws.
#   sh benchmarks/study/converge/run.sh CPUS
set -e
cd "$(dirname "$0")/../../.."
CPUS=${1:-2}
GREFF=lstm-peephole,lstm,cifg,nfg,noaf,nig,nog,gru,mgu
C=benchmarks/study/converge
study() {  # NAME TASK CELLS CONFIG
    if [ -f "$C/$1/plan.json" ]; then
        gatelab study --out "$C/$1" --resume --cpus "$CPUS"
    else
        gatelab study "$2" --cells "$3" --trials 30 --config "$C/$4" --out "$C/$1" --cpus "$CPUS"
    fi
}
# 1. trainability (~10 CPU-h): every zoo cell x adding, copy at T = 200 x 3 seeds
if [ -f "$C/trainability/trainability.json" ]; then
    gatelab trainability --out "$C/trainability" --resume --cpus "$CPUS"
else
    gatelab trainability --cells zoo --seeds 3 --out "$C/trainability" --cpus "$CPUS"
fi
# 2. Greff at convergence (~60 CPU-h): JSB first (the 0.3-nats check), then stdlib, copy
study greff-jsb jsb "$GREFF" jsb.toml
study greff-stdlib stdlib "$GREFF" stdlib.toml
study greff-copy copy "$GREFF" copy.toml
# 3. Jozefowicz's forget-gate bias (~48 CPU-h): bias 0 and 1 on the same draws
for task in stdlib copy; do
    for b in 0 1; do
        study "jozefowicz-$task-bias$b" "$task" lstm,lstm-peephole,cifg,gru \
            "jozefowicz-$task-bias$b.toml"
    done
done
