"""generator.engine.threads: independent runs side by side, in order, on one intra-op thread each."""

from __future__ import annotations

import threading
import time

import torch

from generator.engine.threads import side_by_side


def test_results_come_in_order_from_several_threads_and_the_thread_count_is_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    def work(x):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        time.sleep(0.05)  # both workers get an item
        return x * x

    try:
        assert side_by_side(work, [3, 1, 2, 5]) == [9, 1, 4, 25]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len({t for t, _ in seen}) == 2  # two workers
    assert threading.get_ident() not in {t for t, _ in seen}
    assert {n for _, n in seen} == {1}  # one intra-op thread each


def test_one_thread_or_one_item_or_another_device_runs_here():
    before = torch.get_num_threads()
    here = threading.get_ident()
    try:
        torch.set_num_threads(1)
        assert side_by_side(lambda x: (threading.get_ident(), x), [1, 2]) == [(here, 1), (here, 2)]
        torch.set_num_threads(2)
        assert side_by_side(lambda x: (threading.get_ident(), x), [7]) == [(here, 7)]
        assert side_by_side(lambda x: (threading.get_ident(), x), [1, 2], "meta") == [(here, 1), (here, 2)]
        assert side_by_side(lambda x: x, []) == []
    finally:
        torch.set_num_threads(before)


def test_an_error_in_a_worker_reaches_the_caller_and_the_thread_count_is_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)

    def work(x):
        if x == 2:
            raise ValueError("item 2")
        return x

    try:
        try:
            side_by_side(work, [1, 2, 3])
        except ValueError as e:
            assert str(e) == "item 2"
        else:
            raise AssertionError("the worker's error was lost")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
