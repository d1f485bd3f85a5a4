//! W10: the field app's reads while a sync applies pages. A supervisor's empty phone
//! bootstraps the township; meanwhile a second thread reads what a screen reads, as fast
//! as a screen could ask (every 2 ms): the township's first page of 50 producers, and the
//! page of the first producer on it (the producer and its visits). Run twice in the same
//! run: with the store's read connections (WAL readers beside the writer) and with reads
//! on the writer connection (how the store worked before it had readers: every read
//! waits for the page's write transaction).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridsync_core::model::Person;
use gridsync_core::store::{ProducerSort, Store, StoreOptions};
use gridsync_core::sync::{enroll, CancelFlag, HttpTransport, SyncEngine};

use crate::setup;
use crate::R;

/// Read latencies during one bootstrap, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct ReadFigures {
    /// The grid's first page of 50 producers.
    pub list: Vec<f64>,
    /// A producer and its visits.
    pub producer: Vec<f64>,
    /// Wall time of the bootstrap.
    pub sync_secs: f64,
    /// Pull pages applied (round trips).
    pub round_trips: u32,
}

/// The `q` quantile (0..=1) of `v` (nearest rank).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// Bootstraps `person`'s grids onto a new phone with `readers` read connections while a
/// second thread reads `grid`'s screens.
pub fn during_bootstrap(
    server_db: &Path,
    url: &str,
    dir: &Path,
    person: &Person,
    grid: &str,
    readers: usize,
) -> R<ReadFigures> {
    let path = dir.join(format!("reads-{readers}.db"));
    let store = Arc::new(Store::open_with(
        &path,
        StoreOptions {
            readers,
            check_at_open: false,
        },
    )?);
    let transport = HttpTransport::new(url)?;
    let code = setup::issue_code(server_db, &person.id)?;
    enroll(&store, &transport, url, &code, "w10-phone")?;

    let done = Arc::new(AtomicBool::new(false));
    let screen = {
        let (store, done, grid) = (Arc::clone(&store), Arc::clone(&done), grid.to_string());
        std::thread::spawn(move || -> R<(Vec<f64>, Vec<f64>)> {
            let (mut list, mut producer) = (Vec::new(), Vec::new());
            while !done.load(Ordering::SeqCst) {
                let t = Instant::now();
                let page = store.producers_in_grid(&grid, ProducerSort::Name, 50, 0)?;
                list.push(t.elapsed().as_secs_f64() * 1e3);
                if let Some(first) = page.first() {
                    let t = Instant::now();
                    store.producer(&first.id)?;
                    store.visit_history(&first.id)?;
                    producer.push(t.elapsed().as_secs_f64() * 1e3);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok((list, producer))
        })
    };
    let t = Instant::now();
    let report = SyncEngine::new(&store, &transport).sync(&mut |_| {}, &CancelFlag::new());
    let sync_secs = t.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let (list, producer) = screen.join().map_err(|_| "the reading thread panicked")??;
    let report = report?;
    drop(store);
    let _ = std::fs::remove_file(&path);
    Ok(ReadFigures {
        list,
        producer,
        sync_secs,
        round_trips: report.round_trips,
    })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
