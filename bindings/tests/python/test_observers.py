"""Listeners through the bindings: an edit on another thread and each pulled page reach a
record listener exactly once per commit, with the ids that changed; sync state events;
filters; cancelling a subscription."""

import threading
import time

from harness import TOWNSHIP, VILLAGE, g, new_producer, offline_store, server, tmp_path


class Changes(g.RecordListener):
    """Keeps every RecordChanges it hears, and the threads it heard them on."""

    def __init__(self):
        self.events = []
        self.threads = set()
        self.lock = threading.Lock()

    def on_change(self, changes):
        with self.lock:
            self.events.append(changes)
            self.threads.add(threading.get_ident())

    def wait_for(self, n, timeout=10.0):
        """Waits until at least `n` events arrived, then a little longer for extra ones."""
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        with self.lock:
            return list(self.events)


class SyncStates(g.SyncStateListener):
    def __init__(self):
        self.events = []

    def on_sync_event(self, event):
        self.events.append(event)


def test_an_edit_on_another_thread_reaches_a_listener_once():
    store = offline_store(path=tmp_path("observe-local.db"))
    producers, everything = Changes(), Changes()
    sub = store.observe_records(g.RecordFilter(kind=g.RecordKind.PRODUCER, grid=TOWNSHIP), producers)
    sub_all = store.observe_records(g.RecordFilter(), everything)
    made = []
    t = threading.Thread(target=lambda: made.append(store.create_producer(new_producer(VILLAGE, serial=501))))
    t.start()
    t.join()
    events = producers.wait_for(1)
    assert len(events) == 1, events
    assert events[0].origin == g.ChangeOrigin.LOCAL
    assert [r.id for r in events[0].records] == [made[0].id]
    assert events[0].records[0].kind == g.RecordKind.PRODUCER and not events[0].records[0].removed
    assert events[0].records[0].grid == VILLAGE
    assert threading.get_ident() not in producers.threads and t.ident not in producers.threads

    # One listener for one record: an edit of another record does not reach it.
    one = Changes()
    sub_one = store.observe_records(g.RecordFilter(id=made[0].id), one)
    other = store.create_producer(new_producer(VILLAGE, serial=502, name="另一家"))
    p = store.producer(made[0].id)
    p.address = "嘎查西头"
    store.update_producer(p)
    events = one.wait_for(1)
    assert [[r.id for r in e.records] for e in events] == [[made[0].id]]
    assert len(producers.wait_for(3)) == 3  # create, other create, update: three commits

    # A cancelled subscription hears nothing more; the others still do.
    sub.cancel()
    store.create_producer(new_producer(VILLAGE, serial=503, name="第三家"))
    assert len(producers.wait_for(4, timeout=1.0)) == 3
    assert len(everything.wait_for(4)) == 4
    assert sub_all is not None and sub_one is not None and other.id


def test_each_pulled_page_reaches_a_listener_once():
    s = server()
    store = g.GridStore.open(tmp_path("observe-sync.db"))
    store.enroll(s.url, s.issue_code("supervisor"), "observer-phone")
    changes, states = Changes(), SyncStates()
    sub = store.observe_records(g.RecordFilter(), changes)
    sub_sync = store.observe_sync(states)

    class Pages(g.SyncListener):
        def __init__(self):
            self.pulled = []

        def on_progress(self, progress):
            self.pulled.append(progress.pulled)

    pages = Pages()
    report = store.sync(pages, None, g.SyncOptions(first_page_bytes=4096, max_page_bytes=4096, min_page_bytes=1024))
    # Pages that applied records: the cumulative `pulled` grew in that round trip.
    growing = sum(1 for a, b in zip([0] + pages.pulled, pages.pulled) if b > a)
    assert growing >= 3, f"small pages make several commits: {pages.pulled}"
    events = changes.wait_for(growing)
    assert all(e.origin == g.ChangeOrigin.SYNC for e in events)
    assert len(events) == growing, (len(events), pages.pulled)
    records = [r for e in events for r in e.records]
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)), "a bootstrap brings each record once"
    assert report.pulled == len(ids)
    counts = store.counts()
    kept = [r for r in records if r.kind != g.RecordKind.TEMPLATE]
    assert len(kept) == counts.producers + counts.visits, (len(kept), counts)

    phases = [e.phase for e in states.events]
    assert phases[0] == g.SyncPhase.STARTED and phases[-1] == g.SyncPhase.SUCCEEDED, phases
    assert phases.count(g.SyncPhase.PROGRESS) == report.round_trips, (phases, report.round_trips)
    assert states.events[-1].progress.pulled == report.pulled
    assert sub is not None and sub_sync is not None
