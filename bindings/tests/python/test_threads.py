"""Several Python threads sharing stores (the calls release the GIL and run in Rust)."""

import threading

from harness import TOWNSHIP, VILLAGE, g, new_producer, offline_store, tmp_path

WRITERS, PER_WRITER = 8, 10


def test_threads_write_and_read_one_store_concurrently():
    path = tmp_path("threads.db")
    store = offline_store(path=path)
    second = g.GridStore.open(path)  # a second connection to the same file
    errors, created, seen = [], [], []
    done = threading.Event()

    def writer(n):
        target = store if n % 2 == 0 else second
        try:
            for i in range(PER_WRITER):
                serial = 1000 + n * PER_WRITER + i
                p = target.create_producer(new_producer(VILLAGE, name=f"牧户{n:02d}-{i:02d}", serial=serial))
                created.append(p.id)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    def reader():
        try:
            while not done.is_set():
                seen.append(store.counts().producers)
                store.producers_in_grid(TOWNSHIP, g.ProducerSort.NAME, 50, 0)
                store.search_producers("牧户", 20)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()

    assert errors == [], errors
    assert len(created) == len(set(created)) == WRITERS * PER_WRITER
    assert store.counts().producers == WRITERS * PER_WRITER
    assert second.counts().producers == WRITERS * PER_WRITER
    assert seen and all(0 <= n <= WRITERS * PER_WRITER for n in seen)
    ids = {p.id for p in store.producers_in_grid(TOWNSHIP, g.ProducerSort.NAME, 1000, 0)}
    assert ids == set(created)
