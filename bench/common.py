"""What every benchmark shares: progress lines, timing and the figures printed."""

import statistics
import time


def progress(label: str, done: int, total: int) -> None:
    print(f"\r  {label}: {done}/{total}", end="" if done < total else "\n", flush=True)


def timed(fn, n: int, label: str) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1000)
        if (i + 1) % max(1, n // 10) == 0:
            progress(label, i + 1, n)
    return samples


def report(label: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"  {label}: n={len(samples)} median={statistics.median(samples):.2f} ms p95={p95:.2f} ms")
