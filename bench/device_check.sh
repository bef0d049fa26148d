#!/usr/bin/env bash
# On a machine with a GPU: the accuracy table with every derivative computed on the GPU (CUDA's
# kernels are not CPU's), and Taylor mode on the GPU against the CPU. Needs torch with CUDA,
# sympy and mpmath; not polars (the library path below the CLI does not read files).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
DIFFCLI_TEST_DEVICE=cuda python3 tests/test_accuracy.py
python3 - <<'PY'
import time, torch
from diffcli.language import parse
from diffcli.taylor import expand
for text, names, order in [("tanh(x)", ["x"], 30), ("exp(sin(x))", ["x"], 50), ("x**2*sin(y) + atan2(y, x)", ["x", "y"], 8)]:
    results = {}
    for device in ("cpu", "cuda"):
        values = {n: torch.linspace(0.1, 3.0, 100_000, dtype=torch.float64, device=device) for n in names}
        like = values[names[0]]
        expand(parse(text).expr, names, order, values, like)  # warm
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        series = expand(parse(text).expr, names, order, values, like)
        if device == "cuda":
            torch.cuda.synchronize()
        results[device] = (time.perf_counter() - start, torch.cat([p.flatten().cpu() for p in series.parts]))
    (tc, c), (tg, g) = results["cpu"], results["cuda"]
    scale = c.abs().clamp(min=1e-300)
    print(f"{text} order {order}, 100,000 points: cpu {tc:.3f} s, cuda {tg:.3f} s, max rel diff {((c - g).abs() / scale).max():.1e}")
PY
