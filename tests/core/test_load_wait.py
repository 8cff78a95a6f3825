from kdumpd.load_wait import LoadWait


def test_looks_again_each_poll_until_the_longest_wait_then_gives_up_once() -> None:
    wait = LoadWait(poll_s=0.25, longest_s=1.0)
    assert not wait.waiting
    assert wait.next_look(10.0) == 10.25 and wait.waiting
    assert wait.next_look(10.75) == 11.0
    assert wait.next_look(11.0) is None and not wait.waiting
    assert wait.next_look(20.0) == 20.25  # a new wait starts afresh


def test_a_decision_without_waiting_ends_the_wait() -> None:
    wait = LoadWait(poll_s=0.25, longest_s=1.0)
    wait.next_look(0.0)
    wait.over()
    assert not wait.waiting and wait.next_look(5.0) == 5.25
