#!/usr/bin/env bash
# The GPU checks, as one script (run on a lent GPU machine with the wheels the project needs
# in .whl/, see the device notes in the closing note): the experiments on the organism with
# --device auto (must pick CUDA), then the patching benchmark on CUDA.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformer_lens, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'tl', transformer_lens.__version__ if hasattr(transformer_lens,'__version__') else '?', 'transformers', transformers.__version__)"
mkdir -p /tmp/gpu
sed -e '/^paths:/d' report.yaml > /tmp/gpu/report.yaml
echo "paths: {templates: $PWD/templates, mkdocs: $PWD/mkdocs.yml}" >> /tmp/gpu/report.yaml
time python3 -m generator run --config /tmp/gpu/report.yaml --device auto 2>&1 | tail -20
cp -r /tmp/gpu/results "$OUT/results"
python3 - <<'PY'
import json, glob
for f in sorted(glob.glob("/tmp/gpu/results/organism/*.json")):
    if f.endswith(".timing.json"): continue
    r = json.load(open(f)); m = r["metrics"]
    print(f.split("/")[-1], r["provenance"]["device"], {k: m[k] for k in ("mean_logit_diff", "mean_logit_diff_corrupted", "clean_logit_diff", "total") if k in m})
PY
[ -n "${SKIP_BENCH:-}" ] || time python3 benchmarks/bench_patching.py --device cuda 2>&1 | tee "$OUT/bench-cuda.txt"
[ -n "${SKIP_BENCH:-}" ] || time python3 benchmarks/bench_circuit.py --device cuda --tl-prompts 2 2>&1 | tee "$OUT/bench-circuit-cuda.txt"
