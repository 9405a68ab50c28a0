"""The benchmarks' GPU utilisation sampler, with a fake reader (no GPU needed)."""
import time

from conftest import load_benchmark

gpu_load = load_benchmark("gpu_load")
UtilisationSampler = gpu_load.UtilisationSampler


def test_mean_covers_only_the_window():
    values = iter(range(1000))
    with UtilisationSampler(interval=0.01, read=lambda: float(next(values))) as sampler:
        time.sleep(0.2)
    times = [when for when, _ in sampler.samples]
    assert len(times) >= 5
    middle = times[len(times) // 2]
    late = [v for when, v in sampler.samples if when >= middle]
    assert sampler.mean(middle, times[-1]) == sum(late) / len(late)
    assert sampler.mean(times[-1] + 1, times[-1] + 2) is None


def test_without_a_reader_there_are_no_samples():
    sampler = UtilisationSampler(interval=0.01, read=None)
    sampler.read = None  # as on a machine without NVML or a GPU
    with sampler:
        time.sleep(0.05)
    assert sampler.samples == [] and sampler.mean(0, time.time()) is None
