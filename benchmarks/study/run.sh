#!/bin/sh
# The reproduction of Greff et al. (2017) at this machine's scale: 9 cells x 20 draws on JSB
# Chorales and on the stdlib character model, each trial very short, one trial at a time per
# study (--cpus 1; the two studies ran side by side). Studies land in benchmarks/study/{jsb,stdlib};
# rerun with --resume to finish an interrupted one. Then: gatelab study --report DIR.
set -e
cd "$(dirname "$0")/../.."
CELLS=lstm-peephole,lstm,cifg,nfg,noaf,nig,nog,gru,mgu
gatelab study jsb --cells $CELLS --trials 20 --config benchmarks/study/jsb.toml \
    --out benchmarks/study/jsb --cpus 1 "$@" > benchmarks/study/jsb.log 2>&1 &
gatelab study stdlib --cells $CELLS --trials 20 --config benchmarks/study/stdlib.toml \
    --out benchmarks/study/stdlib --cpus 1 "$@" > benchmarks/study/stdlib.log 2>&1 &
wait
