#!/usr/bin/env bash
# Issue 41's benchmarks on a lent GPU machine (JAX, no TensorFlow there): the cost of a 20-label run against a
# single-label one, then core train's peak memory at 1,000 labels x 100k photos. Wheels in .whl, photos in .gpu_data.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax FLORA_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
unset FLORA_TEST_BACKBONE
{ date; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; lscpu | grep "Model name"; nproc; } 2>&1 | tee $OUT/machine.txt
start=$(date +%s)
timeout 230 python3 -m core bench --only multilabel --markdown --dataset .gpu_data/flowers5-128 --output $OUT/ml_cost.json --workdir /tmp/mlc > $OUT/ml_cost.md 2> $OUT/ml_cost.err
echo "cost rc=$? in $(( $(date +%s) - start )) s"; cat $OUT/ml_cost.md; grep "multilabel:" $OUT/ml_cost.err | tail -6; grep -i "error\|Traceback" $OUT/ml_cost.err | tail -5
start=$(date +%s)
timeout 330 python3 -m core bench --only multilabel_memory --markdown --output $OUT/ml_memory.json --workdir /tmp/mlm > $OUT/ml_memory.md 2> $OUT/ml_memory.err
echo "memory rc=$? in $(( $(date +%s) - start )) s"; cat $OUT/ml_memory.md; grep "multilabel:\|scale:" $OUT/ml_memory.err | tail -6; grep -i "error\|Traceback" $OUT/ml_memory.err | tail -8

# The memory figure again with JAX on the CPU (no CUDA runtime in the RSS), as the scale bench measures:
JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES= timeout 320 python3 -m core bench --only multilabel_memory --markdown --output $OUT/ml_memory_cpu.json --workdir /tmp/mlm2 > $OUT/ml_memory_cpu.md 2> $OUT/ml_memory_cpu.err
echo "memory (CPU) rc=$?"; cat $OUT/ml_memory_cpu.md
