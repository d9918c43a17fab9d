"""File-backed data at scale: peak memory per rank, decode throughput, input vs step time.

    python benchmarks/data_scale.py [--sizes 20000 80000] [--root /tmp/fe_dist_data]
                                    [--out benchmarks/results] [--tiny]

1. ``generate``: random JPEG class folders (10 classes, 64-128 px RGB, smooth noise so they
   compress like photos), written by tf.data in parallel; the time it takes is reported.
2. ``memory``: a LenNet-style run (Resize to 32 first, Scale, LeNet) over each folder on 2
   ranks (horovodrun --gloo), one epoch; each rank reports its peak resident memory (VmHWM)
   before training (after the checks and compilation) and after each epoch.
3. ``decode``: images/s on one thread for decode + Resize at three sizes, with and without
   the DCT-downscaled JPEG decode.
4. ``step``: LeNet samples/s with real input (the folder) vs the same decoded images held in
   memory (the input costs nearly nothing there), one process.

Writes data_scale.json and data_scale.md to --out. ``--tiny`` runs a small version (tests).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Decode targets per stored size range: below 1/2, about 1/2 and above 1/2 of the stored size.
DECODE_SETS = {"small": {"px": (64, 128), "sizes": (24, 48, 96), "images": 20000},
               "large": {"px": (256, 512), "sizes": (64, 128, 224), "images": 1000},
               # Photo-like: the same sizes with little pixel noise (less entropy to decode).
               "large_smooth": {"px": (256, 512), "sizes": (64, 128, 224), "images": 1000,
                                "noise": 2.0}}


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB, from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def generate(root: Path, images: int, classes: int = 10, seed: int = 0,
             px: tuple[int, int] = (64, 128), noise: float = 12.0) -> dict:
    """Write ``images`` random JPEGs of ``px`` pixels a side into ``root/<class>/`` (skipped
    if already complete): smooth shapes plus uniform pixel noise of +-``noise`` levels (the
    noise sets how much of a JPEG's decode is entropy decoding, which DCT scaling keeps)."""
    import tensorflow as tf

    marker = root / f".complete-{images}"
    if marker.exists():
        return json.loads(marker.read_text())
    start = time.perf_counter()
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)

    def make(i: tf.Tensor) -> tf.Tensor:
        rng = tf.random.stateless_uniform
        s = tf.stack([tf.cast(seed, tf.int64), i])
        hw = rng([2], s, px[0], px[1] + 1, dtype=tf.int32)
        base = rng([1, 8, 8, 3], s + 1, 0, 255)
        image = tf.image.resize(base, hw)[0] + rng(tf.concat([hw, [3]], 0), s + 2, -noise, noise)
        image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
        name = tf.strings.join([str(root), "/class", tf.strings.as_string(
            i % classes, width=2, fill="0"), "/", tf.strings.as_string(i, width=7, fill="0"),
            ".jpg"])
        tf.io.write_file(name, tf.io.encode_jpeg(image, quality=90))
        return i

    ds = tf.data.Dataset.range(images).map(make, num_parallel_calls=os.cpu_count() or 1)
    for _ in ds:
        pass
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in root.rglob("*.jpg"))
    info = {"images": images, "generate_s": seconds, "disk_mb": size / 2**20}
    marker.write_text(json.dumps(info))
    return info


def _program(root: str, epochs: int, batch: int, channels: int = 3, in_memory: bool = False,
             model: str = "lenet", size: int = 32):
    """A LeNet (or the benchmark ResNet) run over the folder at ``size`` px (or over its
    images decoded and resized once into arrays)."""
    import numpy as np
    import tensorflow as tf

    import fe_dist as fe
    from fe_dist.architecture import LeNet
    from fe_dist.dataset import LabeledDirDataset
    from fe_dist.op.tensorop import Resize, Scale
    from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
    from fe_dist.op.tensorop.model import ModelOp

    source = LabeledDirDataset(root, channels=channels)
    ops = [Resize(inputs="x", size=(size, size), outputs="x"),
           Scale(inputs="x", scalar=1 / 255, outputs="x")]
    if in_memory:  # the same images, resized once, as arrays: a step's input costs a gather
        x = np.stack([tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(f), channels=channels),
                                      (size, size)).numpy() for f in source.files])
        source = {"x": x, "y": source.column("y")}
        ops = ops[1:]
    pipeline = fe.Pipeline(batch_size=batch, data={"train": source}, ops=ops)
    if model == "lenet":
        model_def = lambda: LeNet(input_shape=(size, size, channels))  # noqa: E731
    else:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from workloads import small_resnet
        model_def = lambda: small_resnet(channels)  # noqa: E731
    model = fe.build(model_def, model_name=model, optimizer="adam", loss_name="ce")
    network = fe.Network(ops=[ModelOp(inputs="x", model=model, outputs="p"),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, verbose=False)


def memory_worker(root: str, out: str, epochs: int, batch: int) -> None:
    """One rank of the memory run: peak RSS before training and after each epoch."""
    from fe_dist.distributed import get_context

    ctx = get_context()
    samples = []
    estimator = _program(root, epochs, batch)
    estimator.on_epoch_end = lambda record: samples.append(_rss_mb())
    before = _rss_mb()
    summary = estimator.fit()
    Path(out, f"rank{ctx.rank}.json").write_text(json.dumps({
        "before_fit_mb": before, "after_epoch_mb": samples,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "samples_per_sec": [r.samples_per_sec for r in summary.records],
        "seconds": [r.seconds for r in summary.records]}))


def memory(root: Path, out: Path, epochs: int, batch: int, np_: int = 2) -> list[dict]:
    """Run ``memory_worker`` on ``np_`` ranks; each rank's report."""
    out.mkdir(parents=True, exist_ok=True)
    horovodrun = Path(sys.executable).parent / "horovodrun"
    cmd = [str(horovodrun), "-np", str(np_), "-H", f"localhost:{np_}", "--gloo", sys.executable,
           __file__, "memory-worker", "--root", str(root), "--out", str(out), "--epochs",
           str(epochs), "--batch", str(batch)]
    env = {**os.environ, "FE_DIST_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("FE_DIST_BACKEND", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(np_)]


def decode(root: Path, batches: int, sizes: tuple[int, ...], batch: int = 64) -> list[dict]:
    """Images/s of decode + Resize on one thread, at each of ``sizes``, DCT on and off
    (alternating, best of 3, so file caching and noise favour neither)."""
    import fe_dist as fe
    from fe_dist.dataset import LabeledDirDataset
    from fe_dist.op.tensorop import Resize
    from types import SimpleNamespace

    ctx = SimpleNamespace(size=1, rank=0, threads=1)
    rows = []
    for size in sizes:
        row = {"size": size, "full": 0.0, "dct": 0.0}
        datasets = {}
        for dct in (False, True):
            pipeline = fe.Pipeline(batch_size=batch, data={"train": LabeledDirDataset(
                root, channels=3, dct_downscale=dct)},
                ops=[Resize(inputs="x", size=(size, size), outputs="x")])
            datasets[dct] = pipeline.get_train_dataset(0, batch, ctx).take(batches)
            for _ in datasets[dct].take(2):  # warm up (graph building)
                pass
        for _ in range(3):
            for dct, ds in datasets.items():
                start = time.perf_counter()
                n = sum(int(b["x"].shape[0]) for b in ds)
                key = "dct" if dct else "full"
                row[key] = max(row[key], n / (time.perf_counter() - start))
        row["speedup"] = row["dct"] / row["full"]
        rows.append(row)
    return rows


def step(root: Path, batch: int, model: str = "lenet", size: int = 32) -> dict:
    """Samples/s (second epoch) with the folder as input vs the images in memory."""
    result = {"model": model, "size": size, "batch": batch, "root": root.name}
    for name, in_memory in (("folder", False), ("in_memory", True)):
        summary = _program(str(root), 2, batch, in_memory=in_memory, model=model,
                           size=size).fit()
        result[name] = summary.records[-1].samples_per_sec
    result["ratio"] = result["folder"] / result["in_memory"]
    return result


def table(results: dict) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores; "
             "`python benchmarks/data_scale.py" + (" --tiny" if results["tiny"] else "") + "`.",
             "", "Peak resident memory per rank (2 ranks, horovodrun --gloo, LeNet at 32 px, "
             f"global batch {results['batch']}, one epoch):", "",
             "| images | on disk MB | generate s | peak RSS before training MB (r0/r1) | "
             "peak RSS after the epoch MB (r0/r1) | samples/s |", "|---|---|---|---|---|---|"]
    for row in results["memory"]:
        before = "/".join(f"{r['before_fit_mb'][1]:.0f}" for r in row["ranks"])
        after = "/".join(f"{r['after_epoch_mb'][-1][1]:.0f}" for r in row["ranks"])
        speed = f"{row['ranks'][0]['samples_per_sec'][-1]:.0f}"
        lines.append(f"| {row['images']:,} | {row['disk_mb']:.0f} | {row['generate_s']:.0f} | "
                     f"{before} | {after} | {speed} |")
    lines += ["", "Decode + Resize, images/s on one thread (random RGB JPEGs, quality 90; "
              "best of 3 alternating runs of 15 batches of 64):", "",
              "| stored px | target px | full decode | DCT-downscaled decode | speed-up |",
              "|---|---|---|---|---|"]
    for name, rows in results["decode"].items():
        px, noise = DECODE_SETS[name]["px"], DECODE_SETS[name].get("noise", 12.0)
        for row in rows:
            lines.append(f"| {px[0]}-{px[1]}, noise +-{noise:g} | {row['size']} | {row['full']:.0f} | "
                         f"{row['dct']:.0f} | {row['speedup']:.2f} |")
    lines += ["", "Input pipeline vs train step, one process, one thread: samples/s of the "
              "second epoch with the folder as input (decode + Resize in tf.data) and with the "
              "same images already decoded and resized in memory:", "",
              "| model | px | global batch | images | folder | in memory | folder / memory |",
              "|---|---|---|---|---|---|---|"]
    for s in results["step"]:
        lines.append(f"| {s['model']} | {s['size']} | {s['batch']} | {s['root']} | "
                     f"{s['folder']:.0f} | {s['in_memory']:.0f} | {s['ratio']:.2f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "memory-worker"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 80000])
    parser.add_argument("--root", default="/tmp/fe_dist_data")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    from fe_dist.distributed import get_context

    get_context()  # pin this process's threads before the first tensor
    if args.mode == "memory-worker":
        memory_worker(args.root, args.out, args.epochs, args.batch)
        return
    sizes = [400, 1600] if args.tiny else args.sizes
    results = {"tiny": args.tiny, "batch": args.batch, "memory": []}
    for n in sizes:
        root = Path(args.root) / f"jpeg_{n}"
        info = generate(root, n)
        print(f"{n} images: generated in {info['generate_s']:.0f} s, {info['disk_mb']:.0f} MB",
              flush=True)
        ranks = memory(root, Path(args.out) / f"memory_{n}", args.epochs, args.batch)
        results["memory"].append({**info, "ranks": ranks})
        print(f"  peak RSS per rank after the epoch: "
              f"{[round(r['after_epoch_mb'][-1][1]) for r in ranks]} MB", flush=True)
    smallest = Path(args.root) / f"jpeg_{sizes[0]}"
    results["decode"] = {}
    for name, spec in DECODE_SETS.items():
        images = min(spec["images"], sizes[0]) if args.tiny else spec["images"]
        root = smallest if name == "small" else Path(args.root) / f"jpeg_{name}_{images}"
        if name != "small":
            generate(root, images, px=spec["px"], noise=spec.get("noise", 12.0))
        results["decode"][name] = decode(root, 4 if args.tiny else 15, spec["sizes"])
    large = Path(args.root) / f"jpeg_large_smooth_{min(1000, sizes[0]) if args.tiny else 1000}"
    results["step"] = [step(smallest, args.batch if not args.tiny else 64),
                       step(large, 32, model="resnet", size=64)]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "data_scale.json").write_text(json.dumps(results, indent=2))
    Path(args.out, "data_scale.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
