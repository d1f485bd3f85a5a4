#![allow(clippy::unwrap_used)]
use gridsync_core::model::{ReviewAction, Role};
use gridsync_tests::*;

#[test]
fn scratch_restore() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let server = TestServer::start(&data_dir);
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let sup = person_in(&data, Role::Supervisor, "DEMO-T01");
    let l = Phone::enrol(&server, &server.url(), dir.path(), "l", &liaison.id);
    let s = Phone::enrol(&server, &server.url(), dir.path(), "s", &sup.id);
    l.sync().unwrap();
    s.sync().unwrap();
    server
        .storage
        .backup_to(&dir.path().join("backup.db"))
        .unwrap();
    let p = l
        .store
        .create_producer(new_producer("恢复测试牧场", &liaison.grids[0], &liaison.id))
        .unwrap();
    l.store
        .review_producer(&p.id, ReviewAction::Submit)
        .unwrap();
    l.sync().unwrap();
    s.sync().unwrap();
    s.store
        .review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    s.sync().unwrap();
    l.sync().unwrap();
    let addr = server.addr;
    server.stop();
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(data_dir.join(format!("gridsync.db{ext}")));
    }
    std::fs::copy(dir.path().join("backup.db"), data_dir.join("gridsync.db")).unwrap();
    let server = TestServer::start_on(&data_dir, &addr.to_string());
    let r = l.sync().unwrap();
    println!("liaison after restore: {r:?}");
    println!(
        "server has P: {}",
        gridsync_server::storage::Storage::record(server.storage.as_ref(), &p.id)
            .unwrap()
            .is_some()
    );
    let r = s.sync().unwrap();
    println!("supervisor after restore: {r:?}");
    println!(
        "server has P: {}",
        gridsync_server::storage::Storage::record(server.storage.as_ref(), &p.id)
            .unwrap()
            .is_some()
    );
    let r = l.sync().unwrap();
    println!(
        "liaison again: {r:?} rejected now: {:?}",
        l.store.rejected_edits().unwrap()
    );
}
