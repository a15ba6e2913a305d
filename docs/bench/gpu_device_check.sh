#!/usr/bin/env bash
# The GPU figures on a lent GPU (JAX, no TensorFlow there): docs/PERFORMANCE.md, "The GPU path".
# Expects, in the repo root: .whl/ (wheels of keras, namex, optree, simplejpeg for Python 3.12) and
# .gpu_data/flowers5-128 (a copy of ../shared/data/flowers5-128); writes its figures under $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax FLORA_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
unset FLORA_TEST_BACKBONE
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep "Model name"; python3 --version
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"; } 2>&1 | tee $OUT/machine.txt
timeout 60 python3 -m core device 2>&1 | tail -20 | tee $OUT/device.txt
echo "== bench --gpu"; start=$(date +%s)
timeout 330 python3 -m core bench --gpu --markdown --dataset .gpu_data/flowers5-128 --output $OUT/gpu_bench.json --workdir /tmp/bw > $OUT/gpu_bench.md 2> $OUT/gpu_bench.err
echo "bench rc=$? in $(( $(date +%s) - start )) s"; cat $OUT/gpu_bench.md; tail -5 $OUT/gpu_bench.err
echo "== core train"; start=$(date +%s)
timeout 170 python3 -m core train .gpu_data/flowers5-128 --weights none --image-size 224 --batch-size 256 --epochs 3 \
  --fine-tune-epochs 2 --seed 1 --models-dir /tmp/m --data-dir /tmp/d --json > $OUT/train.json 2> $OUT/train.err
echo "train rc=$? in $(( $(date +%s) - start )) s"; tail -c 1500 $OUT/train.json; grep -v "HTTP Request" $OUT/train.err | tail -25
run=$(ls /tmp/m 2>/dev/null | grep -v "\." | head -1)
[ -n "$run" ] && cp /tmp/m/$run/metrics.jsonl $OUT/train_metrics.jsonl && cp /tmp/m/$run/status.json $OUT/train_status.json
ls $OUT
