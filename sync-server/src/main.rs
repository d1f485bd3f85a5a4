//! `gridsync-server`: serve the sync API, or administer the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use gridsync_core::model::{Person, Role};
use gridsync_server::storage::{open_storage, AuditFilter, Storage, StorageConfig};
use gridsync_server::{admin, demo};

#[derive(Parser, Debug)]
#[command(name = "gridsync-server", version, about = "gridsync sync server")]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        env = "GRIDSYNC_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the sync API.
    Serve {
        /// Data directory (created on first run) for the embedded SQLite database.
        #[arg(long, env = "GRIDSYNC_DATA")]
        data: Option<PathBuf>,
        /// PostgreSQL instead of SQLite: `postgres://user@host:port/db` (several instances
        /// may serve one database).
        #[arg(long, env = "GRIDSYNC_DATABASE")]
        database: Option<String>,
        /// Address to listen on.
        #[arg(long, env = "GRIDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Seed a demo banner and print enrolment codes.
        #[arg(long)]
        demo: bool,
        /// Address of a reverse proxy whose `X-Forwarded-For` names the client, so that
        /// the enrolment limit counts phones rather than the proxy (repeat the flag, or
        /// separate addresses with commas in the environment variable).
        #[arg(
            long = "trusted-proxy",
            env = "GRIDSYNC_TRUSTED_PROXIES",
            value_delimiter = ','
        )]
        trusted_proxies: Vec<std::net::IpAddr>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        desk: DeskArgs,
    },
    /// Administer a data directory (works while the server runs).
    Admin {
        /// Data directory (embedded SQLite).
        #[arg(long, env = "GRIDSYNC_DATA")]
        data: Option<PathBuf>,
        /// PostgreSQL instead of SQLite: `postgres://user@host:port/db`.
        #[arg(long, env = "GRIDSYNC_DATABASE")]
        database: Option<String>,
        #[command(subcommand)]
        cmd: AdminCmd,
    },
}

/// Limits of `serve` (docs/limits.md lists each with its answer).
#[derive(clap::Args, Debug)]
struct LimitArgs {
    /// Open connections at most; further ones are closed at once (503).
    #[arg(long, env = "GRIDSYNC_MAX_CONNECTIONS", default_value_t = gridsync_server::conn::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Open connections per client address at most; further ones are closed at once (429).
    /// Trusted proxies are exempt.
    #[arg(long, env = "GRIDSYNC_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = gridsync_server::conn::MAX_CONNECTIONS_PER_ADDRESS)]
    max_connections_per_address: usize,
    /// Seconds a connection may take to send a request head (also the idle time of a
    /// kept-alive connection) before it is closed.
    #[arg(long, env = "GRIDSYNC_HEADER_READ_TIMEOUT_SECS", default_value_t = 15)]
    header_read_timeout_secs: u64,
    /// Seconds a whole request may take (408); a push still being judged then is rolled back.
    #[arg(long, env = "GRIDSYNC_REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    request_timeout_secs: u64,
    /// Requests a second per device, sustained (429 rate_limited beyond).
    #[arg(long, env = "GRIDSYNC_DEVICE_RATE", default_value_t = gridsync_server::limits::DEVICE_RATE_PER_SEC)]
    device_rate: f64,
    /// Requests a device may make at once before the sustained rate applies.
    #[arg(long, env = "GRIDSYNC_DEVICE_BURST", default_value_t = gridsync_server::limits::DEVICE_BURST)]
    device_burst: u32,
    /// Enrolment attempts a minute per client address (429 enrol_rate_limited beyond).
    #[arg(long, env = "GRIDSYNC_ENROL_PER_ADDRESS", default_value_t = gridsync_server::limits::ENROL_PER_ADDRESS_PER_MIN)]
    enrol_per_address: u32,
    /// Enrolment attempts a minute per address range, IPv4 /24 or IPv6 /48 (429
    /// enrol_range_limited beyond).
    #[arg(long, env = "GRIDSYNC_ENROL_PER_RANGE", default_value_t = gridsync_server::limits::ENROL_PER_RANGE_PER_MIN)]
    enrol_per_range: u32,
    /// Address or ADDRESS/PREFIX besides loopback that may read /metrics (repeat the flag,
    /// or separate with commas in the environment variable).
    #[arg(
        long = "metrics-allow",
        env = "GRIDSYNC_METRICS_ALLOW",
        value_delimiter = ','
    )]
    metrics_allow: Vec<gridsync_server::limits::AddrRange>,
    /// Bytes of attachments (complete or partial) one device may upload (507 beyond).
    #[arg(long, env = "GRIDSYNC_ATTACHMENT_QUOTA_BYTES", default_value_t = gridsync_server::storage::DEFAULT_ATTACHMENT_QUOTA)]
    attachment_quota_bytes: u64,
    /// Largest attachment in bytes (413 beyond).
    #[arg(long, env = "GRIDSYNC_ATTACHMENT_MAX_BYTES", default_value_t = gridsync_core::attachment::DEFAULT_MAX_BYTES)]
    attachment_max_bytes: u64,
}

/// Desk sign-in lifetimes and limits of `serve` (docs/limits.md).
#[derive(clap::Args, Debug)]
struct DeskArgs {
    /// Minutes without a request after which a desk session ends.
    #[arg(long, env = "GRIDSYNC_DESK_IDLE_MINUTES", default_value_t = 480)]
    desk_idle_minutes: u64,
    /// Hours after sign-in after which a desk session ends, however active.
    #[arg(long, env = "GRIDSYNC_DESK_SESSION_HOURS", default_value_t = 168)]
    desk_session_hours: u64,
    /// Failed desk sign-ins of one account that lock it.
    #[arg(long, env = "GRIDSYNC_DESK_MAX_FAILURES", default_value_t = 5)]
    desk_max_failures: u32,
    /// Minutes a locked desk account stays locked.
    #[arg(long, env = "GRIDSYNC_DESK_LOCK_MINUTES", default_value_t = 15)]
    desk_lock_minutes: u64,
    /// Desk sign-in attempts a minute per client address.
    #[arg(long, env = "GRIDSYNC_DESK_ATTEMPTS_PER_ADDRESS", default_value_t = 30)]
    desk_attempts_per_address: u32,
    /// Mark desk cookies Secure on every request (the server itself is behind TLS that no
    /// trusted proxy reports).
    #[arg(long, env = "GRIDSYNC_DESK_ALWAYS_SECURE")]
    desk_always_secure: bool,
    /// First year of the township compliance programme (达标验收): the desk's targets are
    /// 30 % of townships compliant by the end of it, 80 % the next year, 100 % after.
    #[arg(long, env = "GRIDSYNC_PROGRAMME_START_YEAR", default_value_t = gridsync_server::reports::compliance::DEFAULT_PROGRAMME_START_YEAR)]
    programme_start_year: i32,
}

impl DeskArgs {
    fn config(&self) -> Result<gridsync_server::desk::DeskConfig, String> {
        use std::time::Duration;
        if self.desk_idle_minutes == 0
            || self.desk_session_hours == 0
            || self.desk_max_failures == 0
            || self.desk_lock_minutes == 0
            || self.desk_attempts_per_address == 0
        {
            return Err("desk lifetimes and limits must be at least 1".into());
        }
        Ok(gridsync_server::desk::DeskConfig {
            idle: Duration::from_secs(self.desk_idle_minutes.saturating_mul(60)),
            absolute: Duration::from_secs(self.desk_session_hours.saturating_mul(3600)),
            max_failures: i64::from(self.desk_max_failures),
            lock_for: Duration::from_secs(self.desk_lock_minutes.saturating_mul(60)),
            attempts_per_address_per_minute: self.desk_attempts_per_address,
            always_secure: self.desk_always_secure,
            programme_start_year: self.programme_start_year,
        })
    }
}

impl LimitArgs {
    fn apply(self, state: &mut gridsync_server::api::AppState) -> Result<(), String> {
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return Err("connection limits must be at least 1".into());
        }
        if !self.device_rate.is_finite() || self.device_rate <= 0.0 || self.device_burst == 0 {
            return Err("--device-rate and --device-burst must be more than 0".into());
        }
        if self.header_read_timeout_secs == 0 || self.request_timeout_secs == 0 {
            return Err("timeouts must be at least 1 second".into());
        }
        state.connections = gridsync_server::conn::ConnLimits {
            max_total: self.max_connections,
            max_per_address: self.max_connections_per_address,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
        };
        state.request_timeout = std::time::Duration::from_secs(self.request_timeout_secs);
        state.device_limiter = gridsync_server::limits::RateLimiter::new(
            self.device_rate,
            self.device_burst,
            gridsync_server::limits::MAX_KEYS,
        );
        state.limiter =
            gridsync_server::auth::EnrolLimiter::new(self.enrol_per_address, self.enrol_per_range);
        state.metrics_allow = self.metrics_allow;
        if self.attachment_max_bytes == 0 {
            return Err("--attachment-max-bytes must be more than 0".into());
        }
        state.attachment_limits = gridsync_server::storage::AttachmentLimits {
            max_bytes: self.attachment_max_bytes,
            quota_bytes: self.attachment_quota_bytes,
        };
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
enum AdminCmd {
    /// Import grid nodes from a CSV file (code,name,level,parent,kind): all rows or none.
    ImportGrids { file: PathBuf },
    /// Add or update a person.
    AddPerson {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: String,
        /// liaison, supervisor, county_reviewer or admin.
        #[arg(long)]
        role: String,
        /// Assigned grid codes.
        #[arg(long = "grid")]
        grids: Vec<String>,
    },
    /// Replace the grids assigned to a person.
    AssignGrids {
        #[arg(long)]
        person: String,
        #[arg(long = "grid")]
        grids: Vec<String>,
    },
    /// Issue a one-time enrolment code for a person.
    IssueCode {
        #[arg(long)]
        person: String,
        #[arg(long, default_value_t = 72)]
        ttl_hours: u32,
        /// Also write the code as a QR code (SVG) to this file.
        #[arg(long)]
        qr: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List enrolled devices.
    ListDevices {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device at once.
    RevokeDevice {
        #[arg(long)]
        device: String,
        #[arg(long)]
        reason: String,
    },
    /// Deactivate a person who left: their devices stop syncing and their desk sessions end;
    /// their records stay.
    DeactivatePerson {
        /// The person's id.
        id: String,
    },
    /// List the audit trail of a record, a person or a grid.
    Audit {
        #[arg(long)]
        record: Option<String>,
        #[arg(long)]
        person: Option<String>,
        #[arg(long)]
        grid: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent backup as a SQLite file; a server started on it takes a new epoch.
    Backup { to: PathBuf },
    /// Copy everything from the SQLite database in --data into an empty PostgreSQL database.
    CopyTo {
        /// Target: `postgres://user@host:port/db`.
        #[arg(long = "database")]
        target: String,
    },
    /// Copy everything from a PostgreSQL database into the empty SQLite database in --data.
    CopyFrom {
        /// Source: `postgres://user@host:port/db`.
        #[arg(long = "database")]
        source: String,
    },
    /// Delete attachments no record refers to, and partial uploads not written to for
    /// longer than --older-than-days.
    GcAttachments {
        /// Age in days after which a partial upload is deleted.
        #[arg(long, default_value_t = 7)]
        older_than_days: u32,
    },
    /// Give the server a new epoch (after restoring data by other means).
    RotateEpoch,
    /// Rebuild the query tables (the console's producers, reviews, visits) from the stored
    /// documents, in batches; safe while the server runs, and to repeat.
    RebuildQueryTables,
    /// Set a desk person's username and password for the web console. The password is read
    /// from standard input (one line), never from the command line.
    SetPassword {
        #[arg(long)]
        person: String,
        #[arg(long)]
        username: String,
    },
    /// Print a one-time link (valid 24 hours) with which a desk person sets their own
    /// password.
    DeskLink {
        #[arg(long)]
        person: String,
        /// The console's address as people reach it.
        #[arg(
            long,
            env = "GRIDSYNC_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        base_url: String,
    },
    /// Export as XLSX or CSV: directory, visits, tests (rapid tests), rectifications or
    /// activity (per person), of a grid and the grids below it (every grid without --grid).
    Export {
        /// directory, visits, tests, rectifications or activity.
        kind: String,
        /// xlsx or csv.
        #[arg(long, default_value = "xlsx")]
        format: String,
        #[arg(long)]
        grid: Option<String>,
        /// First day (YYYY-MM-DD, China Standard Time).
        #[arg(long)]
        from: Option<String>,
        /// Last day, included.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Set the supervising body a township's grid chart (公示牌) shows; its villages'
    /// charts show the same.
    SetGridChart {
        /// The township's grid code.
        #[arg(long)]
        grid: String,
        /// Name of the supervising body (监管单位).
        #[arg(long)]
        agency: String,
        #[arg(long)]
        agency_phone: String,
        #[arg(long, default_value = "")]
        address: String,
        /// Complaint line, e.g. 12316.
        #[arg(long, default_value = "")]
        complaint_phone: String,
    },
    /// Set the duties a supervisor's or liaison's grid chart entry shows (empty: the role's
    /// standard duties).
    SetDuties {
        #[arg(long)]
        person: String,
        #[arg(long)]
        duties: String,
    },
    /// Set a league's livestock scale thresholds (规模养殖场标准) from a JSON or CSV file of
    /// changes to the national MARA table (species,measure,head; empty head: no threshold;
    /// an empty file: the national table), and recompute its producers' scale flags.
    SetScaleThresholds {
        /// The league's grid code.
        #[arg(long)]
        league: String,
        file: PathBuf,
    },
    /// Show the livestock scale thresholds in force in a league.
    ScaleThresholds {
        /// The league's grid code.
        #[arg(long)]
        league: String,
    },
    /// Import producers from a CSV or XLSX file with Chinese headers (docs/import.md): all
    /// rows or none; bad rows and likely duplicates are reported by line and column.
    ImportProducers {
        file: PathBuf,
        /// Header of the column that holds the grid code (default 网格编码).
        #[arg(long)]
        grid_column: Option<String>,
        /// Import rows that look like duplicates anyway (after reading the report).
        #[arg(long)]
        allow_duplicates: bool,
        /// Check the file and report, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The administrator the records are created by (default: the only one).
        #[arg(long = "as")]
        as_person: Option<String>,
    },
    /// Import people from a CSV or XLSX file (姓名, 手机号, 角色, 网格编码, 编号): all rows
    /// or none, checked as add-person checks them.
    ImportPeople {
        file: PathBuf,
        /// Check the file and report, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Grids staffed outside the plan: townships without or with more than 2 supervisors,
    /// villages without or with more than 2 liaisons.
    Staffing {
        /// Only this grid and the grids below it.
        #[arg(long)]
        grid: Option<String>,
        /// Every township and village, not only those out of plan.
        #[arg(long)]
        all: bool,
    },
    /// Show counts.
    Status,
}

/// PostgreSQL when a database URL is given, else the embedded SQLite in the data directory.
fn config(data: Option<&Path>, database: Option<&str>) -> Result<StorageConfig, String> {
    match (database.filter(|d| !d.trim().is_empty()), data) {
        (None, None) => Err(
            "give --data DIR (embedded SQLite) or --database postgres://... (PostgreSQL)".into(),
        ),
        (url, dir) => Ok(StorageConfig::from_options(
            dir.unwrap_or(Path::new(".")),
            url,
        )),
    }
}

fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>, String> {
    open_storage(config).map_err(|e| match config {
        StorageConfig::Sqlite { path } => {
            format!("cannot open the database {}: {e}", path.display())
        }
        StorageConfig::Postgres { .. } => format!("cannot open the PostgreSQL database: {e}"),
    })
}

fn describe(config: &StorageConfig) -> String {
    match config {
        StorageConfig::Sqlite { path } => format!("sqlite in {}", path.display()),
        StorageConfig::Postgres { .. } => "postgres".into(),
    }
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDSYNC_LOG")
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let result = match cli.cmd {
        Cmd::Serve {
            data,
            database,
            listen,
            demo,
            trusted_proxies,
            limits,
            desk,
        } => serve(
            data.as_deref(),
            database.as_deref(),
            &listen,
            demo,
            trusted_proxies,
            limits,
            desk,
        ),
        Cmd::Admin {
            data,
            database,
            cmd,
        } => run_admin(data.as_deref(), database.as_deref(), cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn serve(
    data: Option<&Path>,
    database: Option<&str>,
    listen: &str,
    with_demo: bool,
    trusted_proxies: Vec<std::net::IpAddr>,
    limits: LimitArgs,
    desk: DeskArgs,
) -> Result<(), String> {
    let desk = desk.config()?;
    let config = config(data, database)?;
    let where_ = describe(&config);
    let storage = open(&config)?;
    if with_demo {
        let (codes, desks) = demo::seed_demo(storage.as_ref()).map_err(|e| format!("demo: {e}"))?;
        for d in desks {
            println!(
                "desk sign-in for {} {} ({}): username {} password {}",
                d.role.as_str(),
                d.person_id,
                d.name,
                d.username,
                d.password
            );
        }
        for c in codes {
            println!(
                "enrolment code for {} {} ({}): {}",
                c.role.as_str(),
                c.person_id,
                c.name,
                c.code
            );
        }
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("desk console on http://{addr}/desk/");
        println!("listening on http://{addr}");
        std::io::stdout().flush().ok();
        tracing::info!(%addr, storage = %where_, "gridsync-server started");
        let mut state = gridsync_server::api::AppState::new(storage);
        state.trusted_proxies = trusted_proxies;
        limits.apply(&mut state)?;
        gridsync_server::serve_with_desk(
            listener,
            std::sync::Arc::new(state),
            desk,
            shutdown_signal(),
        )
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!("gridsync-server stopped");
        Ok(())
    })
}

/// Listens on `addr` with a long accept queue (4,096, or the kernel's `somaxconn` if lower),
/// so that a burst of connections does not drop phones' connection attempts.
fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::other("the address resolves to nothing");
    for a in addr.to_socket_addrs()? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|_| socket.listen(4096)) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Reads one line from standard input: the password of `admin set-password`. On a
/// terminal it asks for it and turns echo off while it is typed.
fn read_password() -> Result<String, String> {
    use std::io::IsTerminal;
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let quiet = tty && stty("-echo");
    if tty {
        eprint!("password (not shown): ");
    }
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if quiet {
        stty("echo");
    }
    if tty {
        eprintln!();
    }
    read.map_err(|e| format!("reading the password from standard input: {e}"))?;
    Ok(line)
}

fn run_admin(data: Option<&Path>, database: Option<&str>, cmd: AdminCmd) -> Result<(), String> {
    // The copy commands open both sides themselves.
    match &cmd {
        AdminCmd::CopyTo { target } => {
            let dir =
                data.ok_or("copy-to copies from the SQLite database in --data DIR: give --data")?;
            let from = open(&StorageConfig::from_options(dir, None))?;
            let to = open(&StorageConfig::from_options(dir, Some(target)))?;
            return copy(
                from.as_ref(),
                to.as_ref(),
                &format!("{} -> postgres", dir.display()),
            );
        }
        AdminCmd::CopyFrom { source } => {
            let dir =
                data.ok_or("copy-from copies into the SQLite database in --data DIR: give --data")?;
            let from = open(&StorageConfig::from_options(dir, Some(source)))?;
            let to = open(&StorageConfig::from_options(dir, None))?;
            return copy(
                from.as_ref(),
                to.as_ref(),
                &format!("postgres -> {}", dir.display()),
            );
        }
        _ => {}
    }
    let storage = open(&config(data, database)?)?;
    let s: &dyn Storage = storage.as_ref();
    match cmd {
        AdminCmd::ImportGrids { file } => {
            let n = admin::import_grids_csv(s, &file).map_err(|e| e.to_string())?;
            println!("imported {n} grid nodes");
        }
        AdminCmd::AddPerson {
            id,
            name,
            phone,
            role,
            grids,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                format!("role '{role}' is not one of liaison, supervisor, county_reviewer, admin")
            })?;
            admin::add_person(
                s,
                &Person {
                    id: id.clone(),
                    name,
                    phone,
                    role,
                    grids,
                },
            )
            .map_err(|e| e.to_string())?;
            println!("person {id} saved");
        }
        AdminCmd::AssignGrids { person, grids } => {
            let mut p = s
                .person(&person)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no person {person}"))?;
            p.grids = grids;
            admin::add_person(s, &p).map_err(|e| e.to_string())?;
            println!("grids of {person}: {}", p.grids.join(", "));
        }
        AdminCmd::IssueCode {
            person,
            ttl_hours,
            qr,
            json,
        } => {
            let issued =
                admin::issue_code(s, &person, "admin-cli", ttl_hours).map_err(|e| e.to_string())?;
            if let Some(path) = qr {
                std::fs::write(&path, &issued.qr_svg)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"code": issued.code, "expires_at_ms": issued.expires_at_ms})
                );
            } else {
                println!("one-time enrolment code for {person} (expires in {ttl_hours} h):");
                println!("{}", issued.code);
            }
        }
        AdminCmd::ListDevices { json } => {
            let devices = s.devices().map_err(|e| e.to_string())?;
            if json {
                let v: Vec<_> = devices
                    .iter()
                    .map(|d| serde_json::json!({"id": d.id, "person_id": d.person_id, "name": d.name, "created_at_ms": d.created_at_ms, "last_seen_ms": d.last_seen_ms, "revoked_at_ms": d.revoked_at_ms, "revoked_reason": d.revoked_reason}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for d in devices {
                    let state = match d.revoked_at_ms {
                        Some(_) => format!("revoked: {}", d.revoked_reason.unwrap_or_default()),
                        None => "active".into(),
                    };
                    println!("{}  {}  {}  {}", d.id, d.person_id, d.name, state);
                }
            }
        }
        AdminCmd::RevokeDevice { device, reason } => {
            admin::revoke_device(s, &device, &reason, "admin-cli").map_err(|e| e.to_string())?;
            println!("device {device} revoked");
        }
        AdminCmd::DeactivatePerson { id } => {
            let d = admin::deactivate_person(s, &id, "admin-cli").map_err(|e| e.to_string())?;
            println!(
                "person {id} ({}) deactivated: {} devices stop syncing, desk sessions ended; their records stay",
                d.person.name, d.devices
            );
        }
        AdminCmd::Audit {
            record,
            person,
            grid,
            limit,
            json,
        } => {
            let filter = match (record, person, grid) {
                (Some(r), None, None) => AuditFilter::Record(r),
                (None, Some(p), None) => AuditFilter::Person(p),
                (None, None, Some(g)) => AuditFilter::Grid(g),
                (None, None, None) => AuditFilter::All,
                _ => return Err("give at most one of --record, --person, --grid".into()),
            };
            let entries = s.audit_list(&filter, limit).map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&entries).map_err(|e| e.to_string())?
                );
            } else {
                for e in entries {
                    println!(
                        "{}  {:<10} person={} device={} record={} grid={}  {}",
                        e.at_ms,
                        e.action,
                        e.person_id,
                        e.device_id.unwrap_or_default(),
                        e.record_id.unwrap_or_default(),
                        e.grid.unwrap_or_default(),
                        e.detail
                    );
                }
            }
        }
        AdminCmd::Backup { to } => {
            s.backup_to(&to).map_err(|e| e.to_string())?;
            println!("backup written to {}", to.display());
        }
        AdminCmd::CopyTo { .. } | AdminCmd::CopyFrom { .. } => {}
        AdminCmd::GcAttachments { older_than_days } => {
            let cutoff = gridsync_core::now_ms() - i64::from(older_than_days) * 86_400_000;
            let gone = s.gc_attachments(cutoff).map_err(|e| e.to_string())?;
            for g in &gone {
                let why = match g.reason {
                    gridsync_server::storage::GcReason::Unreferenced => "no record refers to it",
                    gridsync_server::storage::GcReason::StalePartial => "partial upload, stale",
                };
                println!(
                    "{}  {} of {} bytes  {why}",
                    g.meta.sha256, g.meta.held, g.meta.size
                );
            }
            let bytes: u64 = gone.iter().map(|g| g.meta.held).sum();
            println!("deleted {} attachments ({bytes} bytes)", gone.len());
        }
        AdminCmd::RebuildQueryTables => {
            let started = std::time::Instant::now();
            let r = s.rebuild_query_tables().map_err(|e| e.to_string())?;
            println!(
                "query tables rebuilt from {} records in {:.1} s: {} producers, {} review steps, {} visits; {} stale rows deleted",
                r.records,
                started.elapsed().as_secs_f64(),
                r.producers,
                r.reviews,
                r.visits,
                r.orphans
            );
            if r.unreadable_count > 0 {
                println!(
                    "{} records have documents that do not read (no query rows):",
                    r.unreadable_count
                );
                for (id, why) in &r.unreadable {
                    println!("  {id}: {why}");
                }
            }
        }
        AdminCmd::SetPassword { person, username } => {
            let line = read_password()?;
            let password = line.trim_end_matches(['\n', '\r']);
            admin::set_desk_password(s, &person, &username, password, "admin-cli")
                .map_err(|e| e.to_string())?;
            println!("desk password of {person} set (username {username}); their sessions ended");
        }
        AdminCmd::DeskLink { person, base_url } => {
            let link =
                admin::issue_desk_link(s, &person, "admin-cli").map_err(|e| e.to_string())?;
            println!(
                "{}/desk/set-password/{}",
                base_url.trim_end_matches('/'),
                link.token
            );
            println!("valid until {} ms (24 hours), once", link.expires_at_ms);
        }
        AdminCmd::RotateEpoch => {
            let e = s.rotate_epoch().map_err(|e| e.to_string())?;
            println!("new epoch {e}: devices will re-send what this server may have lost");
        }
        AdminCmd::Export {
            kind,
            format,
            grid,
            from,
            to,
            out,
        } => {
            let started = std::time::Instant::now();
            let done = gridsync_server::reports::export::export_to_file(
                s,
                &kind,
                &format,
                grid.as_deref(),
                from.as_deref(),
                to.as_deref(),
                &out,
            )?;
            println!(
                "exported {} rows to {} in {:.1} s",
                done.rows,
                out.display(),
                started.elapsed().as_secs_f64()
            );
        }
        AdminCmd::SetGridChart {
            grid,
            agency,
            agency_phone,
            address,
            complaint_phone,
        } => {
            let input = gridsync_server::reports::chart::AgencyInput {
                agency,
                address,
                phone: agency_phone,
                complaint_phone,
            };
            let info = gridsync_server::reports::chart::set_agency(s, "admin-cli", &grid, &input)
                .map_err(|e| e.to_string())?;
            println!(
                "grid chart of {grid}: {} ({})",
                info.agency, info.agency_phone
            );
        }
        AdminCmd::SetDuties { person, duties } => {
            match gridsync_server::reports::chart::set_duties(s, "admin-cli", &person, &duties)
                .map_err(|e| e.to_string())?
            {
                Some(_) => println!("duties of {person} saved"),
                None => println!("duties of {person}: the role's standard duties"),
            }
        }
        AdminCmd::SetScaleThresholds { league, file } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let r = gridsync_server::scale::set_league_thresholds(s, "admin-cli", &league, &text)
                .map_err(|e| e.to_string())?;
            println!(
                "scale thresholds of league {league} set; scale flags of {} producers recomputed",
                r.producers
            );
        }
        AdminCmd::ScaleThresholds { league } => {
            let text = gridsync_server::scale::show_league_thresholds(s, &league)
                .map_err(|e| e.to_string())?;
            print!("{text}");
        }
        AdminCmd::ImportProducers {
            file,
            grid_column,
            allow_duplicates,
            dry_run,
            as_person,
        } => import_producers(
            s,
            &file,
            gridsync_server::import::ProducerOptions {
                grid_column,
                allow_duplicates,
                dry_run,
            },
            as_person.as_deref(),
        )?,
        AdminCmd::ImportPeople { file, dry_run } => {
            let started = std::time::Instant::now();
            let mut bar = ProgressBar::default();
            let n = gridsync_server::import::import_people(s, &file, dry_run, &mut |st, d, t| {
                bar.show(st, d, t)
            });
            bar.finish();
            let n = n.map_err(|e| e.to_string())?;
            if dry_run {
                println!(
                    "{}: every row is good; nothing written (dry run)",
                    file.display()
                );
            } else {
                println!(
                    "imported {n} people in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                let r = gridsync_server::reports::staffing::staffing(s, &[])
                    .map_err(|e| e.to_string())?;
                let off = r.off_plan().count();
                if off > 0 {
                    println!("{off} grids are staffed outside the plan: see `admin staffing`");
                }
            }
        }
        AdminCmd::Staffing { grid, all } => staffing(s, grid, all)?,
        AdminCmd::Status => {
            println!("epoch {}", s.epoch().map_err(|e| e.to_string())?);
            for (k, n) in s.record_counts().map_err(|e| e.to_string())? {
                println!("{k}: {n}");
            }
            println!("grids: {}", s.grids().map_err(|e| e.to_string())?.len());
            println!("people: {}", s.people().map_err(|e| e.to_string())?.len());
            println!("devices: {}", s.devices().map_err(|e| e.to_string())?.len());
        }
    }
    Ok(())
}

/// A progress line on standard error, rewritten in place (`\r`) at most every percent.
#[derive(Debug, Default)]
struct ProgressBar {
    shown: Option<(gridsync_server::import::Stage, usize)>,
    dirty: bool,
}

impl ProgressBar {
    fn show(&mut self, stage: gridsync_server::import::Stage, done: usize, total: usize) {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if self.shown == Some((stage, pct)) {
            return;
        }
        if self.shown.is_some_and(|(s, _)| s != stage) {
            eprintln!();
        }
        self.shown = Some((stage, pct));
        let width = 30;
        let filled = pct * width / 100;
        eprint!(
            "\r{:<10} [{}{}] {pct:>3}% {done}/{total}",
            stage.label(),
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        std::io::stderr().flush().ok();
        self.dirty = true;
    }

    fn finish(&mut self) {
        if self.dirty {
            eprintln!();
            self.dirty = false;
        }
    }
}

fn import_producers(
    s: &dyn Storage,
    file: &Path,
    options: gridsync_server::import::ProducerOptions,
    as_person: Option<&str>,
) -> Result<(), String> {
    let admins: Vec<Person> = s
        .people()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|p| p.role == Role::Admin)
        .collect();
    let by = match as_person {
        Some(id) => admins
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| format!("'{id}' is not an active administrator"))?,
        None => match admins.len() {
            1 => admins.into_iter().next().ok_or("no administrator")?,
            0 => return Err("records are imported as an administrator's: add one with `admin add-person --role admin`".into()),
            _ => return Err(format!(
                "several administrators ({}): name one with --as",
                admins.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
            )),
        },
    };
    let started = std::time::Instant::now();
    let mut bar = ProgressBar::default();
    let done =
        gridsync_server::import::import_producers(s, &by, file, &options, &mut |st, d, t| {
            bar.show(st, d, t)
        });
    bar.finish();
    let done = done.map_err(|e| e.to_string())?;
    if !done.duplicates.is_empty() {
        println!(
            "{} rows look like producers already in the directory or earlier in the file (imported anyway, --allow-duplicates):",
            done.duplicates.len()
        );
        for d in &done.duplicates {
            println!("  {d}");
        }
    }
    if options.dry_run {
        println!(
            "{}: all {} rows are good; nothing written (dry run)",
            file.display(),
            done.rows
        );
    } else {
        println!(
            "imported {} producers from {} rows in {:.1} s (created by {})",
            done.imported,
            done.rows,
            started.elapsed().as_secs_f64(),
            by.id
        );
    }
    Ok(())
}

fn staffing(s: &dyn Storage, grid: Option<String>, all: bool) -> Result<(), String> {
    use gridsync_server::reports::staffing;
    let roots: Vec<String> = grid.into_iter().collect();
    if let Some(g) = roots.first() {
        if !s
            .grids()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|n| &n.code == g)
        {
            return Err(format!("'{g}' is not a grid"));
        }
    }
    let r = staffing::staffing(s, &roots).map_err(|e| e.to_string())?;
    for g in r.grids.iter().filter(|g| all || g.issue.is_some()) {
        let who = g
            .people
            .iter()
            .map(|(id, name)| format!("{name} ({id})"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{}  {}  {} {}: {} of {}–{}{}  {}",
            g.code,
            g.name,
            g.level.as_str(),
            g.role.as_str(),
            g.people.len(),
            g.min,
            g.max,
            g.issue
                .map(|i| format!("  {} {}", i.as_str(), i.label_zh()))
                .unwrap_or_default(),
            who
        );
    }
    let m = r.summary;
    println!(
        "townships: {} of {} within plan ({} without a supervisor, {} with more than planned)",
        m.townships_ok, m.townships, m.townships_without_supervisor, m.townships_over
    );
    println!(
        "villages: {} of {} within plan ({} without a liaison, {} with more than planned)",
        m.villages_ok, m.villages, m.villages_without_liaison, m.villages_over
    );
    Ok(())
}

fn copy(from: &dyn Storage, to: &dyn Storage, what: &str) -> Result<(), String> {
    let counts =
        gridsync_server::storage::copy_all(from, to).map_err(|e| format!("copy {what}: {e}"))?;
    println!("copied {what}:");
    for (table, n) in &counts {
        println!("  {table}: {n}");
    }
    println!(
        "epoch {} kept: devices keep syncing against the copy",
        to.epoch().map_err(|e| e.to_string())?
    );
    Ok(())
}
