//! `gridsync-bench`: grid sync side by side with its floor (the same records as plain JSON
//! in plain SQLite) and with Automerge's own per-document sync protocol, over real HTTP on
//! loopback, with medians over several runs and ratios against baselines measured in the
//! same run.
//!
//! `scripts/bench.sh` (full size) or `scripts/bench.sh --small` (CI size) builds and runs
//! `gridsync-bench run`. The other subcommands are the child processes `run` starts, so
//! that the peak memory of a phone and of the server can be read separately.

mod amsync;
mod dictionary;
mod external;
mod floor;
mod photos;
mod procs;
mod reads;
mod report;
mod setup;
mod shaper;
mod whatif;
mod workloads;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Errors of the benchmark: any error, with its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Results of the benchmark.
pub type R<T> = Result<T, Error>;

#[derive(Parser, Debug)]
#[command(
    name = "gridsync-bench",
    about = "gridsync sync benchmarks against their baselines"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs every workload and prints the table (Markdown).
    Run(workloads::RunArgs),
    /// Where a bootstrap's bytes go, for a server database (documents against JSON).
    Anatomy {
        /// The server's SQLite file.
        #[arg(long)]
        db: PathBuf,
    },
    /// Trains protocol v4's zstd dictionary on a township's records
    /// (`scripts/train-dictionary.sh`).
    TrainDictionary {
        /// Dataset seed (not the benchmark's, 7).
        #[arg(long)]
        seed: u64,
        /// Largest dictionary, bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        size: usize,
        /// Where to write the dictionary.
        #[arg(long)]
        out: PathBuf,
        /// Working directory for the township's server database.
        #[arg(long)]
        work: PathBuf,
    },
    /// Compresses a township's pages with gzip and zstd (with and without a dictionary) at
    /// several page sizes and levels; prints a Markdown table.
    Compression {
        /// Dataset seed.
        #[arg(long, default_value_t = workloads::BENCH_SEED)]
        seed: u64,
        /// The dictionary.
        #[arg(long)]
        dict: PathBuf,
        /// Working directory for the township's server database.
        #[arg(long)]
        work: PathBuf,
        /// zstd levels.
        #[arg(long, value_delimiter = ',', default_value = "3,9,15,19")]
        levels: Vec<i32>,
        /// Page budgets, bytes of records.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "8192,65536,1048576,4194304"
        )]
        budgets: Vec<usize>,
    },
    /// (child process) Serves a server database on 127.0.0.1 until stdin closes.
    Serve {
        /// The server's SQLite file.
        #[arg(long)]
        db: PathBuf,
    },
    /// (child process) Enrols an empty phone and bootstraps it; prints one JSON line.
    Client {
        /// Server URL.
        #[arg(long)]
        url: String,
        /// One-time enrolment code.
        #[arg(long)]
        code: String,
        /// The phone's SQLite file (must not exist yet).
        #[arg(long)]
        db: PathBuf,
        /// Device name.
        #[arg(long, default_value = "bench-phone")]
        name: String,
        /// Protocol version the phone speaks (3: gzip, as phones before protocol 4).
        #[arg(long, default_value_t = gridsync_core::sync::protocol::PROTOCOL_VERSION)]
        protocol: u16,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(args) => workloads::run(&args),
        Cmd::Anatomy { db } => whatif::anatomy(&db).map(|a| println!("{a:?}")),
        Cmd::TrainDictionary {
            seed,
            size,
            out,
            work,
        } => dictionary::train(seed, size, &out, &work),
        Cmd::Compression {
            seed,
            dict,
            work,
            levels,
            budgets,
        } => dictionary::compare(seed, &dict, &work, &levels, &budgets),
        Cmd::Serve { db } => procs::serve_main(&db),
        Cmd::Client {
            url,
            code,
            db,
            name,
            protocol,
        } => procs::client_main(&url, &code, &db, &name, protocol),
    };
    if let Err(e) = result {
        eprintln!("gridsync-bench: {e}");
        std::process::exit(1);
    }
}
