"""The persistent queue against a Python list, and its persistence."""

import pickle

from hypothesis import given
from hypothesis import strategies as st

from funrec._queue import Queue

ops = st.lists(st.one_of(st.integers(0, 1000), st.just("pop")), max_size=80)


@given(ops)
def test_queue_behaves_like_a_list_and_keeps_every_version(program):
    queue, model = Queue(), []
    versions = []  # (queue, list) after each operation
    for op in program:
        if op == "pop":
            if not model:
                continue
            head, queue = queue.popleft()
            assert head == model.pop(0)
        else:
            queue, model = queue.append(op), [*model, op]
        versions.append((queue, list(model)))
    for version, expected in versions:  # no later operation changed an earlier version
        assert list(version) == expected and len(version) == len(expected)
    assert queue == Queue.of(model)
    assert pickle.loads(pickle.dumps(queue)) == queue


def test_popping_an_empty_queue_raises():
    try:
        Queue().popleft()
    except IndexError as err:
        assert "empty" in str(err)
    else:
        raise AssertionError("popleft() on an empty queue must raise")
