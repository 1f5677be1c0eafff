#!/usr/bin/env bash
# One prepared run for a lent GPU machine (about 15 minutes of device time in all): the CUDA tests in
# float32 and bf16, GPU throughput beside the peer architectures, and bf16 pretraining of the larger
# `medium` backbone (27.9 M parameters) with checkpoints, exported as float16 weights split into
# parts small enough to bring back.
#
#   bash scripts/gpu_session.sh prepare          # here, on the CPU machine: data subset + wheels (git-ignored)
#   bash scripts/gpu_session.sh run OUT          # there, from the repository root: everything, results in OUT
#   bash scripts/gpu_session.sh join OUT FOLDER  # here again: reassemble the model folder from OUT's parts
#
# The GPU machine has torch but neither pysam nor pyBigWig: `prepare` downloads their wheels into
# .whl/ and copies the pretraining subset into .device-data/ (both git-ignored, carried with the
# call). The subset is everything in ../shared/data/pretrain except the three large Arabidopsis
# relatives (it must travel in 64 MiB with the working tree): TAIR10 chr1, 21 bacteria, six
# Drosophila chr4, three yeast chrI, the human pieces; the default held-out sequences (D. melanogaster
# chr4, H. pylori Puno120) are in it, so validation is the same as `mxdna-small`'s.
#
# Dry run on a CPU (tiny preset, a few steps, same code path):
#   MXDNA_GPU_DRY=1 bash scripts/gpu_session.sh run /tmp/gpu-out
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
mode=${1:?usage: gpu_session.sh prepare | run OUT | join OUT FOLDER}

if [ "$mode" = prepare ]; then
    shared=../shared/data/pretrain
    rm -rf .device-data && mkdir -p .device-data/pretrain
    for folder in bacteria drosophila human yeast; do cp -r "$shared/$folder" .device-data/pretrain/; done
    mkdir -p .device-data/pretrain/arabidopsis
    cp "$shared"/arabidopsis/AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz .device-data/pretrain/arabidopsis/
    rm -rf .whl && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl pysam==0.24.1 pyBigWig==0.3.29
    du -sh .device-data .whl
    echo "carry: .device-data .whl; move weights/promoter-* aside first (the tree must stay under 64 MiB)"
    exit 0
fi

if [ "$mode" = join ]; then
    out=${2:?OUT}; folder=${3:?FOLDER}
    mkdir -p "$folder"
    cat "$out"/medium.safetensors.part-* > "$folder/model.safetensors"
    cp "$out/model.json" "$folder/model.json"
    python3 -c "import hashlib,json,sys; f=sys.argv[1]; card=json.load(open(f+'/model.json')); \
digest=hashlib.sha256(open(f+'/model.safetensors','rb').read()).hexdigest(); \
print('sha256', 'ok' if digest == card.get('sha256', digest) else 'MISMATCH', digest)" "$folder"
    exit 0
fi

out=${2:?OUT}
mkdir -p "$out" /tmp/gpu-logs
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=$here:/tmp/site
else
    export PYTHONPATH=$here
fi
mxdna() { python3 -m mxdna_cli "$@"; }
started=$(date +%s)
if [ -n "${MXDNA_GPU_DRY:-}" ]; then  # CPU dry run: tiny and short
    preset=tiny; device=cpu; batch=4; train_seconds=20; data=tests/data/pretrain_small.fa; window=256
else
    preset=medium; device=cuda; batch=64; train_seconds=${MXDNA_GPU_TRAIN_SECONDS:-330}; data=.device-data/pretrain; window=510
fi
logs=/tmp/gpu-logs
{ nvidia-smi -L || true; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
    > $logs/env.txt 2>&1

# 1. The CUDA tests, float32 and bf16 (each parametrised test runs both).
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests > $logs/gpu_tests.txt 2>&1 || true

# 2. Throughput: the measured matmul peak and every model's share of it, beside the peers.
bench_parts=(peak models); [ -n "${MXDNA_GPU_DRY:-}" ] && bench_parts=(peak)
timeout 150 python3 benchmarks/run.py --quick --device "$device" --only "${bench_parts[@]}" > $logs/bench.txt 2>&1 || true

# 3. Pretraining, sized to the time left: a 20-step probe gives the step rate, then one full cosine
#    schedule that ends inside the budget (an annealed model, not a snapshot at the peak rate).
common=(--preset "$preset" --window "$window" --batch-size "$batch" --device "$device" --precision bfloat16
        --eval-windows 64 --checkpoint-minutes 1 -q)
probe=$(mktemp -d)/probe
mxdna pretrain "$data" -o "$probe" "${common[@]}" --steps 20 --warmup 5 --eval-every 20 > $logs/probe.txt 2>&1
seconds_per_step=$(python3 -c "import csv,sys; rows=[r for r in csv.DictReader(open(sys.argv[1]), delimiter='\t') if r['kind']=='train']; \
print((float(rows[-1]['seconds'])-float(rows[4]['seconds']))/(int(rows[-1]['step'])-int(rows[4]['step'])))" "$probe/log.tsv")
steps=$(python3 -c "import sys; print(max(20, int(float(sys.argv[1]) / (float(sys.argv[2]) * 1.15))))" "$train_seconds" "$seconds_per_step")
echo "probe: $seconds_per_step s/step -> $steps steps in ${train_seconds}s" | tee -a $logs/env.txt
run=/tmp/run-$preset
mxdna pretrain "$data" -o "$run" "${common[@]}" --steps "$steps" --lr 1e-3 --warmup $((steps / 20 + 1)) \
    --eval-every $((steps / 8 + 1)) --export /tmp/export-$preset > $logs/pretrain.txt 2>&1 || true
cp "$run/log.tsv" $logs/pretrain_log.tsv 2>/dev/null || true

# 4. Bring back: the card, the float16 weights in parts under 16 MiB, the logs in one archive.
if [ -f /tmp/export-$preset/model.safetensors ]; then
    split -b 15M -d /tmp/export-$preset/model.safetensors "$out/medium.safetensors.part-"
    cp /tmp/export-$preset/model.json "$out/model.json"
fi
echo "elapsed $(( $(date +%s) - started )) s" >> $logs/env.txt
tar -czf "$out/logs.tar.gz" -C /tmp gpu-logs
ls -la "$out"
