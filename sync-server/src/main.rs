//! `gridsync-server`: serve the sync API, or administer the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use gridsync_core::model::{Person, Role};
use gridsync_server::storage::{sqlite::SqliteStorage, AuditFilter, Storage};
use gridsync_server::{admin, demo};

#[derive(Parser, Debug)]
#[command(name = "gridsync-server", version, about = "gridsync sync server")]
struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "GRIDSYNC_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the sync API.
    Serve {
        /// Data directory (created on first run).
        #[arg(long, env = "GRIDSYNC_DATA")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "GRIDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Seed a demo banner and print enrolment codes.
        #[arg(long)]
        demo: bool,
    },
    /// Administer a data directory (works while the server runs).
    Admin {
        /// Data directory.
        #[arg(long, env = "GRIDSYNC_DATA")]
        data: PathBuf,
        #[command(subcommand)]
        cmd: AdminCmd,
    },
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
    /// Write a consistent backup; a server started on it takes a new epoch.
    Backup { to: PathBuf },
    /// Give the server a new epoch (after restoring data by other means).
    RotateEpoch,
    /// Show counts.
    Status,
}

fn open(data: &Path) -> Result<Arc<SqliteStorage>, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    SqliteStorage::open(data.join("gridsync.db")).map(Arc::new).map_err(|e| format!("cannot open the database: {e}"))
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDSYNC_LOG").unwrap_or_else(|_| "info,tower_http=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let result = match cli.cmd {
        Cmd::Serve { data, listen, demo } => serve(&data, &listen, demo),
        Cmd::Admin { data, cmd } => run_admin(&data, cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn serve(data: &Path, listen: &str, with_demo: bool) -> Result<(), String> {
    let storage = open(data)?;
    if with_demo {
        let codes = demo::seed_demo(storage.as_ref()).map_err(|e| format!("demo: {e}"))?;
        for c in codes {
            println!("enrolment code for {} {} ({}): {}", c.role.as_str(), c.person_id, c.name, c.code);
        }
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on http://{addr}");
        std::io::stdout().flush().ok();
        tracing::info!(%addr, data = %data.display(), "gridsync-server started");
        gridsync_server::serve(listener, storage, shutdown_signal()).await.map_err(|e| e.to_string())?;
        tracing::info!("gridsync-server stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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

fn run_admin(data: &Path, cmd: AdminCmd) -> Result<(), String> {
    let storage = open(data)?;
    let s: &dyn Storage = storage.as_ref();
    match cmd {
        AdminCmd::ImportGrids { file } => {
            let n = admin::import_grids_csv(s, &file).map_err(|e| e.to_string())?;
            println!("imported {n} grid nodes");
        }
        AdminCmd::AddPerson { id, name, phone, role, grids } => {
            let role = Role::parse(&role).ok_or_else(|| format!("role '{role}' is not one of liaison, supervisor, county_reviewer, admin"))?;
            admin::add_person(s, &Person { id: id.clone(), name, phone, role, grids }).map_err(|e| e.to_string())?;
            println!("person {id} saved");
        }
        AdminCmd::AssignGrids { person, grids } => {
            let mut p = s.person(&person).map_err(|e| e.to_string())?.ok_or_else(|| format!("no person {person}"))?;
            p.grids = grids;
            admin::add_person(s, &p).map_err(|e| e.to_string())?;
            println!("grids of {person}: {}", p.grids.join(", "));
        }
        AdminCmd::IssueCode { person, ttl_hours, qr, json } => {
            let issued = admin::issue_code(s, &person, "admin-cli", ttl_hours).map_err(|e| e.to_string())?;
            if let Some(path) = qr {
                std::fs::write(&path, &issued.qr_svg).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::json!({"code": issued.code, "expires_at_ms": issued.expires_at_ms}));
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
            s.revoke_device(&device, &reason, gridsync_core::now_ms()).map_err(|e| e.to_string())?;
            s.audit(&gridsync_server::storage::AuditEntry {
                at_ms: gridsync_core::now_ms(),
                person_id: "admin-cli".into(),
                device_id: Some(device.clone()),
                record_id: None,
                kind: None,
                grid: None,
                action: "revoke".into(),
                detail: reason,
            })
            .map_err(|e| e.to_string())?;
            println!("device {device} revoked");
        }
        AdminCmd::Audit { record, person, grid, limit, json } => {
            let filter = match (record, person, grid) {
                (Some(r), None, None) => AuditFilter::Record(r),
                (None, Some(p), None) => AuditFilter::Person(p),
                (None, None, Some(g)) => AuditFilter::Grid(g),
                (None, None, None) => AuditFilter::All,
                _ => return Err("give at most one of --record, --person, --grid".into()),
            };
            let entries = s.audit_list(&filter, limit).map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string(&entries).map_err(|e| e.to_string())?);
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
            storage.backup_to(&to).map_err(|e| e.to_string())?;
            println!("backup written to {}", to.display());
        }
        AdminCmd::RotateEpoch => {
            let e = s.rotate_epoch().map_err(|e| e.to_string())?;
            println!("new epoch {e}: devices will re-send what this server may have lost");
        }
        AdminCmd::Status => {
            println!("epoch {}", s.epoch().map_err(|e| e.to_string())?);
            for (k, n) in s.record_counts().map_err(|e| e.to_string())? {
                println!("{k}: {n}");
            }
            println!("devices: {}", s.devices().map_err(|e| e.to_string())?.len());
        }
    }
    Ok(())
}
