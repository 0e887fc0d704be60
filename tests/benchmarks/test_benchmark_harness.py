"""The shared benchmark harness: interleaving, warm-up and the reported statistics."""

import argparse

import pytest
from harness import Timing, add_common_args, setup, time_interleaved


def test_runs_are_interleaved_and_warm_up_is_not_counted():
    calls = []
    methods = {name: (lambda n=name: calls.append(n) or n) for name in ('a', 'b', 'c')}
    timings = time_interleaved(methods, repeats=5, warmup=2, before_each=lambda: calls.append('-'))
    assert calls == ['-', 'a', '-', 'b', '-', 'c'] * 7
    assert [len(t.seconds) for t in timings.values()] == [5, 5, 5]
    assert [t.output for t in timings.values()] == ['a', 'b', 'c']


def test_median_and_spread():
    timing = Timing(seconds=[0.010, 0.030, 0.020, 0.012, 0.018])
    assert timing.median == pytest.approx(0.018)
    assert timing.spread == pytest.approx(0.020 / 0.018)
    assert timing.cell() == '18.0 (±56 %)'


def test_fewer_than_five_repeats_are_refused():
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    with pytest.raises(SystemExit, match='at least 5'):
        setup(parser.parse_args(['--repeats', '3', '--threads', '1']))
