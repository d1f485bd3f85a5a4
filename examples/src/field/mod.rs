//! `gridsync-field`: a command-line field app that behaves as a phone would, on the same
//! local store and sync engine. Works offline; `enroll` and `sync` talk to a server.

pub mod args;
mod device;
mod doctor;
pub mod parse;
mod producer;
pub mod render;
mod visit;

use std::io::Write;

use clap::Parser;
use gridsync_core::store::Store;
use gridsync_core::Error;

use args::{Cli, Command};

/// What went wrong, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// A command-line value could not be read (exit code 2).
    Input {
        /// The argument or field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An error from the core.
    Core(Error),
    /// Likely duplicates were found on the device and nothing was saved (exit code 3); the
    /// matches are on stdout.
    LikelyDuplicates {
        /// How many.
        count: usize,
    },
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Core(e)
    }
}

impl CliError {
    /// Exit code: 2 for bad input (invalid fields, unknown ids), 3 for likely duplicates
    /// (nothing saved), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::LikelyDuplicates { .. } => 3,
            CliError::Input { .. }
            | CliError::Core(Error::Invalid(_))
            | CliError::Core(Error::NotFound { .. }) => 2,
            CliError::Core(_) => 1,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Input { .. } | CliError::Core(Error::Invalid(_)) => "invalid",
            CliError::LikelyDuplicates { .. } => "likely_duplicates",
            CliError::Core(e) => match e {
                Error::Forbidden(_) => "forbidden",
                Error::Workflow(_) => "workflow",
                Error::NotFound { .. } => "not_found",
                Error::Corrupt { .. } => "corrupt",
                Error::Storage(_) | Error::SchemaTooNew { .. } | Error::Io { .. } => "storage",
                Error::Transport(_) => "transport",
                Error::Server { .. } => "server",
                Error::NotEnrolled(_) => "not_enrolled",
                Error::Cancelled => "cancelled",
                _ => "error",
            },
        }
    }

    /// The field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            CliError::Input { field, .. } => Some(field),
            CliError::Core(Error::Invalid(i)) => Some(&i.field),
            _ => None,
        }
    }

    /// The message for people: a Chinese lead-in and the detail.
    pub fn message(&self) -> String {
        match self {
            CliError::Input { field, problem } => invalid_message(field, problem),
            CliError::Core(Error::Invalid(i)) => invalid_message(&i.field, &i.problem),
            CliError::LikelyDuplicates { count } => format!(
                "发现 {count} 个可能重复的生产主体，未保存；核实不是同一主体后加 --anyway 保存"
            ),
            CliError::Core(e) => {
                let lead = match e {
                    Error::Forbidden(_) => "无权操作",
                    Error::Workflow(_) => "流程不允许",
                    Error::NotFound { .. } => "未找到",
                    Error::Corrupt { .. } => "记录已损坏",
                    Error::Transport(_) => "网络错误",
                    Error::Server { .. } => "服务器拒绝",
                    Error::NotEnrolled(_) => "设备未登记",
                    _ => "出错",
                };
                format!("{lead}: {e}")
            }
        }
    }
}

fn invalid_message(field: &str, problem: &str) -> String {
    let label = render::field_label(field);
    if label.is_empty() {
        format!("输入有误 [{field}]: {field}: {problem}")
    } else {
        format!("输入有误 [{field} {label}]: {field}: {problem}")
    }
}

/// Where results go: text for people or JSON for programs.
#[derive(Debug)]
pub(crate) struct Out {
    json: bool,
    buf: String,
}

impl Out {
    /// Whether JSON was asked for.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Adds a line of text (ignored in JSON mode).
    pub(crate) fn line(&mut self, s: impl AsRef<str>) {
        if !self.json {
            self.buf.push_str(s.as_ref());
            self.buf.push('\n');
        }
    }

    /// Sets the JSON result (ignored in text mode).
    pub(crate) fn value(&mut self, v: serde_json::Value) {
        if self.json {
            self.buf = serde_json::to_string_pretty(&v).unwrap_or_default();
            self.buf.push('\n');
        }
    }
}

/// Opens the store named on the command line.
pub(crate) fn open(cli: &Cli) -> Result<Store, CliError> {
    check_folder(cli)?;
    Ok(Store::open(&cli.db)?)
}

/// Refuses a database path whose folder does not exist (rather than creating a file there).
pub(crate) fn check_folder(cli: &Cli) -> Result<(), CliError> {
    if let Some(dir) = cli.db.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            return Err(CliError::Input {
                field: "db".into(),
                problem: format!("folder {} does not exist", dir.display()),
            });
        }
    }
    Ok(())
}

/// The first grid assigned to the device's person.
pub(crate) fn default_grid(store: &Store, given: Option<&str>) -> Result<String, CliError> {
    if let Some(g) = given {
        return Ok(g.to_string());
    }
    let p = store.profile()?.ok_or_else(|| {
        Error::NotEnrolled("run `init` (offline) or `enroll` (with a server) first".into())
    })?;
    p.grids.first().cloned().ok_or_else(|| CliError::Input {
        field: "grid".into(),
        problem: "no grid is assigned to you; give --grid".into(),
    })
}

fn dispatch(cli: &Cli, out: &mut Out) -> Result<(), CliError> {
    match &cli.command {
        Command::Init(a) => device::init(cli, a, out),
        Command::Producer(c) => producer::run(cli, c, out),
        Command::Visit(c) => visit::run(cli, c, out),
        Command::Due(a) => device::due(cli, a, out),
        Command::Rectifications(a) => device::rectifications(cli, a, out),
        Command::Interval(a) => device::interval(cli, a, out),
        Command::Status => device::status(cli, out),
        Command::Enroll(a) => device::enroll(cli, a, out),
        Command::Sync(a) => device::sync(cli, a, out),
        Command::Attachments => device::attachments(cli, out),
        Command::Doctor(a) => doctor::run(cli, a, out),
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let mut out = Out {
        json: cli.json,
        buf: String::new(),
    };
    match dispatch(&cli, &mut out) {
        Ok(()) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(out.buf.as_bytes()).is_err() || stdout.flush().is_err() {
                return 1;
            }
            0
        }
        Err(e) => {
            if let CliError::LikelyDuplicates { .. } = e {
                // The matches found, for the person to check.
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(out.buf.as_bytes());
                let _ = stdout.flush();
            }
            let mut stderr = std::io::stderr().lock();
            let text = if cli.json {
                serde_json::json!({
                    "error": e.code(),
                    "field": e.field(),
                    "message": e.message(),
                })
                .to_string()
            } else {
                format!("错误：{}", e.message())
            };
            let _ = writeln!(stderr, "{text}");
            e.exit_code()
        }
    }
}
