//! Command-line arguments of `gridsync-field`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A field app on the command line: the same local store and sync a phone uses.
#[derive(Debug, Parser)]
#[command(name = "gridsync-field", version, about)]
pub struct Cli {
    /// The device's database file (created on first use).
    #[arg(
        long,
        global = true,
        env = "GRIDSYNC_DB",
        default_value = "gridsync-field.db"
    )]
    pub db: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sets up the device for offline use: who uses it and a minimal grid tree.
    Init(InitArgs),
    /// Producers in the directory.
    #[command(subcommand)]
    Producer(ProducerCmd),
    /// Patrol visits.
    #[command(subcommand)]
    Visit(VisitCmd),
    /// Producers due for a patrol.
    Due(DueArgs),
    /// Open rectifications.
    Rectifications(RectArgs),
    /// Sets the patrol interval for a producer type and risk grade.
    Interval(IntervalArgs),
    /// Counts, rejected edits and kept edits.
    Status,
    /// Enrols the device with a server using a one-time code.
    Enroll(EnrollArgs),
    /// Pushes local edits and pulls what changed, then uploads pending photos.
    Sync(SyncArgs),
    /// Photos and signatures on this device: pending (not yet uploaded), uploaded, cached
    /// (downloaded).
    Attachments,
    /// Checks the database: SQLite's integrity check, every record's document, and the
    /// query tables against the documents; repairs what it can.
    Doctor(DoctorArgs),
}

/// `sync` arguments.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Photo bytes to upload at most in this sync, after the records (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub budget_bytes: u64,
    /// Time to spend uploading photos at most, in milliseconds (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub budget_ms: u64,
}

/// `doctor` arguments.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only `quick_check` and a sample of rows (fast), instead of the full check.
    #[arg(long)]
    pub quick: bool,
    /// Report only: do not rebuild anything.
    #[arg(long, conflicts_with = "rebuild")]
    pub no_repair: bool,
    /// Rebuild the query tables from the documents even if the check finds nothing.
    #[arg(long)]
    pub rebuild: bool,
}

/// `init` arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Person id.
    #[arg(long)]
    pub person_id: String,
    /// Full name.
    #[arg(long)]
    pub name: String,
    /// Mobile phone.
    #[arg(long)]
    pub phone: String,
    /// liaison | supervisor | county_reviewer | admin.
    #[arg(long)]
    pub role: String,
    /// Assigned grid code (repeat for several).
    #[arg(long = "grid", required = true)]
    pub grids: Vec<String>,
    /// Name of the assigned grid(s), in order.
    #[arg(long = "grid-name")]
    pub grid_names: Vec<String>,
    /// Level of the assigned grid(s): village, township, banner… (default from the role).
    #[arg(long)]
    pub level: Option<String>,
    /// farming | pastoral | mixed.
    #[arg(long, default_value = "pastoral")]
    pub kind: String,
    /// Township above the assigned village(s) (default: from the division code).
    #[arg(long)]
    pub township: Option<String>,
    /// Township name.
    #[arg(long)]
    pub township_name: Option<String>,
    /// Banner (county) above (default: from the division code).
    #[arg(long)]
    pub banner: Option<String>,
    /// Banner name.
    #[arg(long)]
    pub banner_name: Option<String>,
}

/// Producer fields given on the command line; all optional so `edit` can change a few.
#[derive(Debug, Args, Default)]
pub struct ProducerFields {
    /// Name of the business or household.
    #[arg(long)]
    pub name: Option<String>,
    /// Type: enterprise, cooperative, family_farm, family_ranch, large_household,
    /// small_household, input_dealer, purchaser (or the Chinese name).
    #[arg(long = "type")]
    pub producer_type: Option<String>,
    /// Legal representative or owner.
    #[arg(long)]
    pub owner: Option<String>,
    /// Contact phone.
    #[arg(long)]
    pub phone: Option<String>,
    /// Grid code (default: your first assigned grid).
    #[arg(long)]
    pub grid: Option<String>,
    /// Unified social credit code.
    #[arg(long)]
    pub credit_code: Option<String>,
    /// Owner's resident ID number.
    #[arg(long)]
    pub id_number: Option<String>,
    /// Address.
    #[arg(long)]
    pub address: Option<String>,
    /// Latitude (WGS-84).
    #[arg(long, requires = "lon", allow_hyphen_values = true)]
    pub lat: Option<f64>,
    /// Longitude (WGS-84).
    #[arg(long, requires = "lat", allow_hyphen_values = true)]
    pub lon: Option<f64>,
    /// Main product (repeat; on edit, adds).
    #[arg(long = "product")]
    pub products: Vec<String>,
    /// Product to remove (edit).
    #[arg(long = "remove-product")]
    pub remove_products: Vec<String>,
    /// Crop area in mu.
    #[arg(long)]
    pub crop_area_mu: Option<f64>,
    /// Animals: SPECIES=ON_HAND[/SOLD_PER_YEAR], e.g. sheep_goat=300/150 (repeat).
    #[arg(long = "livestock")]
    pub livestock: Vec<String>,
    /// Certification: green, organic, geographical_indication, specialty_product (repeat).
    #[arg(long = "cert")]
    pub certifications: Vec<String>,
    /// Whether the producer issues compliance certificates: yes | no.
    #[arg(long)]
    pub issues_certificates: Option<String>,
    /// Date the responsibility letter was signed, YYYY-MM-DD.
    #[arg(long)]
    pub letter_signed: Option<String>,
    /// Risk grade: low | medium | high.
    #[arg(long)]
    pub risk: Option<String>,
}

/// `producer` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProducerCmd {
    /// Registers a producer. Likely duplicates on the device (same credit code, ID number
    /// or phone, a similar name nearby) are listed and nothing is saved (exit code 3)
    /// unless `--anyway` is given.
    Add {
        /// The producer's fields.
        #[command(flatten)]
        fields: ProducerFields,
        /// Save even when likely duplicates are found (checked: not the same producer).
        #[arg(long)]
        anyway: bool,
    },
    /// Edits a producer. Likely duplicates the edit brings up (not there before it) are
    /// listed and nothing is saved (exit code 3) unless `--anyway` is given.
    Edit {
        /// Producer id.
        id: String,
        /// Fields to change.
        #[command(flatten)]
        fields: ProducerFields,
        /// Save even when the edit brings up likely duplicates.
        #[arg(long)]
        anyway: bool,
        /// Marks the producer closed (停产/注销).
        #[arg(long, conflicts_with = "reopen")]
        close: bool,
        /// Marks a closed producer active again.
        #[arg(long)]
        reopen: bool,
    },
    /// Lists the producers of a grid and below.
    List {
        /// Grid code (default: your first assigned grid).
        #[arg(long)]
        grid: Option<String>,
        /// name | updated | last-visit.
        #[arg(long, default_value = "name")]
        sort: String,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Finds producers by name, owner or phone.
    Search {
        /// Text to look for.
        query: String,
        /// Most results.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Shows a producer with its conflicts, review history, changes and visits.
    Show {
        /// Producer id.
        id: String,
    },
    /// Takes a review step: submit, approve-township, approve-county, return.
    Review {
        /// Producer id.
        id: String,
        /// submit | approve-township | approve-county | return.
        action: String,
        /// Reason (required to return).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Confirms a producer for the year (年度确认): its fields were checked and it is still
    /// operating (an approval stays), or closed (`--closed`).
    Confirm {
        /// Producer id.
        id: String,
        /// Found closed (停产/注销): sets the status (an edit: an approved entry goes back
        /// to review).
        #[arg(long)]
        closed: bool,
        /// Year confirmed (default: this year in China time; last year is allowed).
        #[arg(long)]
        year: Option<i32>,
    },
    /// Lists the active producers of a grid and below not yet confirmed for the year.
    Unconfirmed {
        /// Grid code (default: your first assigned grid).
        #[arg(long)]
        grid: Option<String>,
        /// Year (default: this year in China time).
        #[arg(long)]
        year: Option<i32>,
    },
    /// Keeps the current value of a conflicting field.
    Resolve {
        /// Record id.
        id: String,
        /// Field path as shown by `show` (e.g. phone).
        path: String,
    },
}

/// `visit record` arguments.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Producer visited (for a new visit).
    #[arg(long, required_unless_present = "visit")]
    pub producer: Option<String>,
    /// Continue a draft visit instead of starting one.
    #[arg(long)]
    pub visit: Option<String>,
    /// Answer ITEM_ID=VALUE: yes | no | na, a number, text (repeat).
    #[arg(long = "answer")]
    pub answers: Vec<String>,
    /// Remark on an answer: ITEM_ID=TEXT (repeat).
    #[arg(long = "note")]
    pub notes: Vec<String>,
    /// A problem found (repeat).
    #[arg(long = "finding")]
    pub findings: Vec<String>,
    /// A photo file (JPEG, PNG, WebP or PDF) for the last finding given (repeat): stored
    /// on the device and uploaded at the next sync.
    #[arg(long = "photo", requires = "findings")]
    pub photos: Vec<PathBuf>,
    /// Severity of the findings given: minor | major | serious.
    #[arg(long, default_value = "minor")]
    pub severity: String,
    /// Rapid test: key=value list, e.g.
    /// sample=菠菜,item=有机磷,method=enzyme_inhibition,kit=XX,value=32,unit=%,verdict=pass.
    #[arg(long = "rapid-test")]
    pub rapid_tests: Vec<String>,
    /// Orders a rectification: DEADLINE (YYYY-MM-DD) and NOTICE number.
    #[arg(long, num_args = 2, value_names = ["DEADLINE", "NOTICE"])]
    pub rectify: Option<Vec<String>>,
    /// This visit follows up an earlier visit.
    #[arg(long)]
    pub follow_up_of: Option<String>,
    /// With --follow-up-of: the rectification was found done.
    #[arg(long, requires = "follow_up_of")]
    pub resolved: bool,
    /// Producer's acknowledgement: name of who signed.
    #[arg(long)]
    pub signed_by: Option<String>,
    /// Latitude of the visit.
    #[arg(long, requires = "lon", allow_hyphen_values = true)]
    pub lat: Option<f64>,
    /// Longitude of the visit.
    #[arg(long, requires = "lat", allow_hyphen_values = true)]
    pub lon: Option<f64>,
    /// Closes the visit (every required item must be answered).
    #[arg(long)]
    pub complete: bool,
}

/// `visit` subcommands.
#[derive(Debug, Subcommand)]
pub enum VisitCmd {
    /// Records (or continues) a visit against the default checklist.
    Record(Box<RecordArgs>),
    /// Shows a visit.
    Show {
        /// Visit id.
        id: String,
    },
    /// Closes a draft visit.
    Complete {
        /// Visit id.
        id: String,
    },
    /// Adds a supervisor's review comment.
    Review {
        /// Visit id.
        id: String,
        /// Comment.
        #[arg(long)]
        comment: String,
    },
    /// Lists a producer's visits.
    List {
        /// Producer id.
        #[arg(long)]
        producer: String,
    },
}

/// `due` arguments.
#[derive(Debug, Args)]
pub struct DueArgs {
    /// Grid code (default: your first assigned grid).
    #[arg(long)]
    pub grid: Option<String>,
    /// Look this many days ahead.
    #[arg(long, default_value_t = 0)]
    pub days_ahead: i64,
}

/// `rectifications` arguments.
#[derive(Debug, Args)]
pub struct RectArgs {
    /// Today's date, YYYY-MM-DD (default: today in China Standard Time).
    #[arg(long)]
    pub today: Option<String>,
}

/// `interval` arguments.
#[derive(Debug, Args)]
pub struct IntervalArgs {
    /// Producer type.
    #[arg(long = "type")]
    pub producer_type: String,
    /// Risk grade: low | medium | high.
    #[arg(long)]
    pub risk: String,
    /// Days between patrols.
    #[arg(long)]
    pub days: u32,
}

/// `enroll` arguments.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Server URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: String,
    /// One-time enrolment code.
    #[arg(long)]
    pub code: String,
    /// A name for this device.
    #[arg(long, default_value = "gridsync-field")]
    pub device_name: String,
}
