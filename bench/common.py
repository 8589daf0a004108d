"""What every benchmark shares: progress lines, timing and the figures printed."""

import os
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


def queries_and_profile(call, n: int) -> None:
    """Print the queries one `call(0)` makes and, with BENCH_PROFILE=1, a pyinstrument profile
    of `call(i)` for i in range(n)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call(0)
    print(f"  queries per request: {len(captured.captured_queries)}")
    if os.environ.get("BENCH_PROFILE"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        with profiler:
            for i in range(n):
                call(i)
        print(profiler.output_text(unicode=True, color=False, show_all=False))
