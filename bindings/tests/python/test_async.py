"""The async API under asyncio against a real gridsync-server on loopback: awaitable
enrol, sync, rotation and attachment download; cancelling the awaiting task cancels the
sync between round trips and loses nothing."""

import asyncio
import threading
import time

from harness import expect_error, g, server, tmp_path

# Pages of about 1 KiB: a supervisor's bootstrap of the demo township takes many round
# trips, so a cancel after the first one lands in the middle of the sync.
SMALL_PAGES = g.SyncOptions(first_page_bytes=1024, max_page_bytes=1024, min_page_bytes=1024)


# Records a whole bootstrap of the supervisor pulls (set by the first test).
FULL_PULLED = [0]


class Progress(g.SyncListener):
    """Keeps every progress report (called on the library's sync thread) and tells the
    event loop about the first one that applied records."""

    def __init__(self, loop=None):
        self.reports = []
        self.threads = set()
        self.loop = loop
        self.first = asyncio.Event() if loop else None
        self.told = False

    def on_progress(self, progress):
        self.reports.append(progress)
        self.threads.add(threading.get_ident())
        if self.loop is not None and progress.pulled > 0 and not self.told:
            self.told = True
            self.loop.call_soon_threadsafe(self.first.set)


async def enroll_fresh(s, role, name):
    """A new store enrolled through `enroll_async` as the demo person of `role`, waiting
    out the server's enrolment rate limit (10 a minute per address) if a run hits it."""
    store = g.GridStore.open(tmp_path(f"{name}.db"))
    deadline = time.monotonic() + 90
    while True:
        try:
            me = await store.enroll_async(s.url, s.issue_code(role), name)
            break
        except g.ApiError.Server as e:
            if e.status != 429 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(5)
    assert me.id == s.people[role], me
    assert store.is_enrolled() and store.server_url() == s.url
    return store


def wait_for_sync_thread(store):
    """Returns once no sync of `store` runs: syncs of one store run one after the other,
    so a sync with a cancelled handle starts after the last one ended and stops at once."""
    handle = g.SyncHandle()
    handle.cancel()
    expect_error(g.ApiError.Cancelled, store.sync, None, handle)


def snapshot(store):
    """What a device holds: its producers and visits by id."""
    grids = [n.code for n in store.grids()]
    producers = {}
    for grid in grids:
        for p in store.producers_in_grid(grid, g.ProducerSort.NAME, 10_000, 0):
            producers[p.id] = store.producer(p.id)
    visits = {v.id for p in producers.values() for v in store.visit_history(p.id)}
    return producers, visits


def test_sync_async_pulls_what_a_blocking_sync_pulls():
    s = server()

    async def main():
        # An unenrolled store fails the same way awaited as blocking.
        lone = g.GridStore.open(tmp_path("async-lone.db"))
        try:
            await lone.sync_async()
            raise AssertionError("sync_async of an unenrolled store did not fail")
        except g.ApiError.NotEnrolled:
            pass

        a = await enroll_fresh(s, "supervisor", "async-a")
        progress = Progress()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        tick = asyncio.create_task(ticker())
        report = await a.sync_async(progress, None, SMALL_PAGES)
        tick.cancel()
        return a, report, progress, ticks

    a, report, progress, ticks = asyncio.run(main())
    assert report.pulled > 0 and report.round_trips >= 5, report
    assert len(progress.reports) == report.round_trips and progress.reports[-1].more is False
    assert threading.get_ident() not in progress.threads, "the listener runs on the sync thread"
    assert ticks > 0, "the event loop ran other work while the sync was awaited"

    # A device of the same person synced by blocking calls holds the same records.
    b = s.device("supervisor", "supervisor")
    assert a.counts() == b.counts(), (a.counts(), b.counts())
    pa, va = snapshot(a)
    pb, vb = snapshot(b)
    assert pa and pa == pb and va == vb
    s.devices["async-a"] = a
    FULL_PULLED[0] = report.pulled


def test_cancelling_the_task_cancels_the_sync_and_loses_nothing():
    s = server()
    full = s.devices.get("async-a")
    assert full is not None, "test_sync_async_pulls_what_a_blocking_sync_pulls runs first"
    full_pulled = FULL_PULLED[0]

    async def main():
        store = await enroll_fresh(s, "supervisor", "async-cancel")
        progress = Progress(asyncio.get_running_loop())
        task = asyncio.create_task(store.sync_async(progress, None, SMALL_PAGES))
        await asyncio.wait_for(progress.first.wait(), 60)
        task.cancel()
        cancelled_at = time.monotonic()
        try:
            await task
            raise AssertionError("the cancelled sync completed")
        except asyncio.CancelledError:
            pass
        return store, progress, time.monotonic() - cancelled_at

    store, progress, took = asyncio.run(main())
    assert took < 5, f"the task ended {took:.1f} s after cancel (it must not wait for the sync)"
    wait_for_sync_thread(store)
    # The sync stopped between round trips: some pages were applied, not all of them.
    last = progress.reports[-1]
    assert last.more, f"stopped while more pages waited: {last}"
    assert 0 < last.pulled < full_pulled, (last.round_trips, last.pulled, full_pulled)
    counts, full_counts = store.counts(), full.counts()
    assert counts.producers + counts.visits < full_counts.producers + full_counts.visits, counts

    # Nothing was lost, nothing came twice: the next sync brings the rest, and the device
    # holds what a full bootstrap gives.
    rest = asyncio.run(store.sync_async())
    print(f"    cancelled after {len(progress.reports)} of the bootstrap's round trips: "
          f"{last.pulled} + {rest.pulled} of {full_pulled} records")
    assert last.pulled + rest.pulled == full_pulled, (last, rest, full_pulled)
    assert store.counts() == full_counts, (store.counts(), full_counts)
    assert snapshot(store) == snapshot(full)
    s.devices["async-cancel"] = store


def test_a_handle_cancels_an_awaited_sync():
    # What a Swift app does (its tasks do not pass cancellation to Rust): cancel the
    # handle; the awaited call raises ApiError.Cancelled.
    s = server()
    store = s.devices.get("async-cancel")
    assert store is not None, "test_cancelling_the_task_cancels_the_sync_and_loses_nothing runs first"
    producer = store.producers_in_grid(store.profile().grids[0], g.ProducerSort.NAME, 1, 0)
    assert producer, "the supervisor's grid has producers"
    edited = store.producer(producer[0].id)
    edited.address = edited.address + " (async)"
    store.update_producer(edited)
    handle = g.SyncHandle()
    handle.cancel()

    async def main():
        try:
            await store.sync_async(None, handle)
            raise AssertionError("a cancelled handle did not stop the awaited sync")
        except g.ApiError.Cancelled:
            pass
        return await store.sync_async()

    report = asyncio.run(main())
    assert report.pushed == 1 and report.rejected == [], report
    assert store.counts().unsynced == 0


def test_rotate_and_attachment_downloads_async():
    from test_local import jpeg
    s = server()
    a, b = s.devices.get("async-a"), s.devices.get("async-cancel")
    assert a and b, "the tests above run first"
    photo, other = jpeg(300_000, 3), jpeg(200_000, 4)

    async def main():
        await a.rotate_credential_async()
        # The new secret works: a visit with a photo goes up from phone A.
        ref, ref2 = a.add_attachment(photo), a.add_attachment(other)
        grid_producer = a.producers_in_grid(a.profile().grids[0], g.ProducerSort.NAME, 1, 0)[0]
        a.create_visit(g.NewVisit(
            producer_id=grid_producer.id,
            answers={},
            findings=[g.NewFinding(description="饲料间无通风", severity=g.Severity.MINOR, photos=[ref, ref2])],
        ))
        up = await a.sync_async()
        assert up.pushed == 1 and up.attachments_completed == 2, up
        # Phone B (the same supervisor) hears of the visit and downloads the photo awaited.
        down = await b.sync_async()
        assert down.pulled >= 1, down
        sha = ref.split(":")[1]
        expect_error(g.ApiError.NotFound, b.attachment, sha)
        assert await b.fetch_attachment_async(ref) == photo
        assert [x.state for x in b.attachments()] == [g.AttachmentState.CACHED]
        assert b.counts().unsynced == 0
        # Prefetch downloads the other photo of the visit.
        prefetched = await b.prefetch_attachments_async(0)
        lone = g.GridStore.open(tmp_path("async-unenrolled-prefetch.db"))
        try:
            await lone.prefetch_attachments_async(0)
            raise AssertionError("prefetch of an unenrolled store did not fail")
        except g.ApiError.NotEnrolled:
            pass
        return prefetched, ref2

    prefetched, ref2 = asyncio.run(main())
    # (and those of other tests' visits in the township, when such tests ran first)
    assert prefetched.fetched >= 1 and prefetched.bytes_down >= 200_000, prefetched
    assert b.attachment(ref2) == other
