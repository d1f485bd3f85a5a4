//! `gridsync-test-server --data DIR --listen ADDR`: the sync server as its own process,
//! for tests that SIGKILL it (`tests/tests/crash.rs`). It runs exactly what
//! `gridsync-server serve` runs (SQLite storage in `DIR/gridsync.db`, the same router) and
//! prints the same `listening on http://IP:PORT` line once it accepts connections.

use std::io::Write;
use std::sync::Arc;

use gridsync_server::storage::sqlite::SqliteStorage;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let data =
        arg(&args, "--data").ok_or("usage: gridsync-test-server --data DIR --listen ADDR")?;
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    std::fs::create_dir_all(&data).map_err(|e| format!("{data}: {e}"))?;
    let storage = SqliteStorage::open(std::path::Path::new(&data).join("gridsync.db"))
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on http://{addr}");
        std::io::stdout().flush().ok();
        gridsync_server::serve(listener, Arc::new(storage), std::future::pending::<()>())
            .await
            .map_err(|e| e.to_string())
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
