"""Which LiteRT CPU kernels run an exported model, and how fast: XNNPACK against the builtin ones.

LiteRT applies its XNNPACK delegate by default (float32 and, in recent builds,
int8); `BUILTIN_WITHOUT_DEFAULT_DELEGATES` runs the same file on the builtin
kernels only. Comparing the two tells whether a quantized model's speed comes
from XNNPACK's int8 kernels or from the fallback, and so whether an int8 model
slower than float32 is a missing delegate or the CPU (int8 gains need VNNI /
dot-product instructions). Calls are interleaved so both settings see the same
machine load.

    python benchmarks/litert_kernels.py float32.tflite int8.tflite [--calls 150] [--threads 1]

`benchmarks/optimization.py` writes such files into its `--models-dir`.
"""

import argparse
import os
import statistics
import time

import numpy as np
from ai_edge_litert import interpreter as litert

RESOLVERS = {
    "xnnpack (default)": litert.OpResolverType.AUTO,
    "builtin only": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
}


def interpreter(path, resolver, threads):
    runner = litert.Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    sample = np.random.default_rng(0).integers(0, 255, detail["shape"]).astype(detail["dtype"])
    runner.set_tensor(detail["index"], sample)
    for _ in range(10):  # warm-up: first calls allocate and pack weights
        runner.invoke()
    return runner


def measure(paths, calls, threads):
    runners = {
        (path, name): interpreter(path, resolver, threads) for path in paths for name, resolver in RESOLVERS.items()
    }
    times = {key: [] for key in runners}
    for _ in range(calls):
        for key, runner in runners.items():
            start = time.perf_counter()
            runner.invoke()
            times[key].append(time.perf_counter() - start)
    return {key: 1000 * statistics.median(values) for key, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help=".tflite files")
    parser.add_argument("--calls", type=int, default=150, help="timed calls per model and setting")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    missing = [path for path in args.models if not os.path.isfile(path)]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    medians = measure(args.models, args.calls, args.threads)
    print(f"median ms per call, batch 1, {args.threads} thread(s), {args.calls} interleaved calls")
    print(f"| model | {' | '.join(RESOLVERS)} | builtin / xnnpack |")
    print("|---|" + "---|" * (len(RESOLVERS) + 1))
    for path in args.models:
        row = [medians[(path, name)] for name in RESOLVERS]
        print(f"| {os.path.basename(path)} | {' | '.join(f'{ms:.2f}' for ms in row)} | {row[1] / row[0]:.2f} |")


if __name__ == "__main__":
    main()
