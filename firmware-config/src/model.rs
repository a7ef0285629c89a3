//! The validated, typed configuration. Everything here has passed validation:
//! names are unique, references resolve, addresses and spans fit, serial
//! settings are possible. Consumers (drivers, edge node) never re-check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Current schema version written in `schema_version = …`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    pub node: NodeIdentity,
    /// Serial lines, keyed by line name. Several RTU devices share one line.
    pub serial_lines: BTreeMap<String, SerialLine>,
    pub devices: Vec<Device>,
    pub tags: Vec<Tag>,
    /// Named poll groups and their intervals; a tag in a group is polled at
    /// the group's interval instead of its device's.
    pub poll_groups: BTreeMap<String, Duration>,
    pub storage: Storage,
    /// Edge → hub sync; `None` when the file has no `[sync]` (local only).
    pub sync: Option<Sync>,
    /// The operator HMI; `None` when the file has no `[hmi]`.
    pub hmi: Option<Hmi>,
    pub forecast: Option<Forecast>,
    /// The KPI engine; `None` when the files define no `[[kpi]]`.
    pub kpi: Option<KpiSetup>,
    /// `[[alarm]]`s, in file order, then one write-back alarm per
    /// `[[setpoint]]` (`writeback.<tag>`).
    pub alarms: Vec<AlarmDef>,
    /// `[setpoints]` and its `[[setpoint]]`s; `None`: this edge writes
    /// nothing the hub recommends.
    pub write_back: Option<WriteBack>,
    /// Files this config was assembled from (the main file first), for
    /// hot-reload watching.
    pub sources: Vec<PathBuf>,
}

impl EdgeConfig {
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// Tags of one device, in config order.
    pub fn tags_of<'a>(&'a self, device: &'a str) -> impl Iterator<Item = &'a Tag> + 'a {
        self.tags.iter().filter(move |t| t.device == device)
    }

    /// The interval at which `tag` is polled.
    pub fn poll_interval_of(&self, tag: &Tag) -> Duration {
        if let Some(g) = tag
            .poll_group
            .as_ref()
            .and_then(|g| self.poll_groups.get(g))
        {
            return *g;
        }
        self.device(&tag.device)
            .map(|d| d.poll_interval)
            .unwrap_or(Duration::from_secs(1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub site_id: String,
    pub node_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    pub poll_interval: Duration,
    /// Per-request response timeout.
    pub timeout: Duration,
    pub backoff: Backoff,
    pub transport: Transport,
    pub limits: RequestLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    ModbusTcp {
        host: String,
        port: u16,
        unit_id: u8,
        connect_timeout: Duration,
    },
    ModbusRtu {
        /// Name of the `[[serial_line]]` this unit hangs on.
        line: String,
        unit_id: u8,
    },
    /// An OPC UA server.
    OpcUa(OpcUaEndpoint),
}

impl Transport {
    /// The Modbus unit id; `None` for other protocols.
    pub fn unit_id(&self) -> Option<u8> {
        match self {
            Transport::ModbusTcp { unit_id, .. } | Transport::ModbusRtu { unit_id, .. } => {
                Some(*unit_id)
            }
            Transport::OpcUa(_) => None,
        }
    }

    pub fn is_opcua(&self) -> bool {
        matches!(self, Transport::OpcUa(_))
    }
}

/// An OPC UA server and how to talk to it securely.
#[derive(Debug, Clone, PartialEq)]
pub struct OpcUaEndpoint {
    /// `opc.tcp://host:port[/path]`.
    pub endpoint_url: String,
    pub security_policy: SecurityPolicy,
    pub security_mode: SecurityMode,
    pub identity: Identity,
    /// Client certificate (`own/`, `private/`), `trusted/` and `rejected/`
    /// server certificates. Created on first start.
    pub pki_dir: PathBuf,
    pub session_timeout: Duration,
    pub keep_alive: Duration,
    /// Default publishing interval of the subscription (and default
    /// sampling interval of its items).
    pub publishing_interval: Duration,
    /// A source (or server) timestamp more than this ahead of the edge's
    /// clock is replaced by the server's timestamp or the receive time,
    /// and the sample is marked uncertain.
    pub clock_tolerance: Duration,
}

/// OPC UA security policies (Part 7 profiles) the client supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityPolicy {
    None,
    Basic256Sha256,
    Aes128Sha256RsaOaep,
    Aes256Sha256RsaPss,
}

impl SecurityPolicy {
    /// The name used in configuration files and by OPC UA tools.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic256Sha256 => "Basic256Sha256",
            SecurityPolicy::Aes128Sha256RsaOaep => "Aes128_Sha256_RsaOaep",
            SecurityPolicy::Aes256Sha256RsaPss => "Aes256_Sha256_RsaPss",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

/// Where a secret comes from; the secret itself never sits in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// How the client identifies its user to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    UserName {
        user: String,
        password: SecretSource,
    },
    X509 {
        certificate: PathBuf,
        private_key: PathBuf,
    },
}

/// How the read planner may group tags of one device into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Max registers per read request (protocol limit 125).
    pub max_registers: u16,
    /// Max bits per coil / discrete-input read (protocol limit 2000).
    pub max_bits: u16,
    /// Largest run of unused registers (or bits) the planner will read
    /// through to merge two requests into one.
    pub max_gap: u16,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_registers: 125,
            max_bits: 2000,
            max_gap: 16,
        }
    }
}

/// Reconnect / retry backoff: exponential from `initial` to `max`, with
/// full jitter of `jitter` (0..=1) of the current delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            jitter: 0.3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SerialLine {
    pub name: String,
    pub path: PathBuf,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    /// Silence enforced between frames (at least 3.5 character times).
    pub inter_frame_delay: Duration,
    /// How long a unit that stopped answering is skipped before it is tried
    /// again, so it cannot stall the other units on the line.
    pub unit_backoff: Backoff,
}

impl SerialLine {
    /// Time for one character on the wire (start + data + parity + stop bits).
    pub fn char_time(&self) -> Duration {
        let bits = 1
            + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits);
        Duration::from_secs_f64(f64::from(bits) / f64::from(self.baud.max(1)))
    }

    /// Modbus RTU's t3.5; fixed at 1.75 ms above 19200 baud (spec §2.5.1.1).
    pub fn min_inter_frame_delay(&self) -> Duration {
        if self.baud > 19_200 {
            Duration::from_micros(1_750)
        } else {
            self.char_time().mul_f64(3.5)
        }
    }
}

/// Modbus data areas (tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    Coil,
    DiscreteInput,
    HoldingRegister,
    InputRegister,
}

impl Area {
    pub fn is_bit(self) -> bool {
        matches!(self, Area::Coil | Area::DiscreteInput)
    }
    pub fn is_writable(self) -> bool {
        matches!(self, Area::Coil | Area::HoldingRegister)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Coil => "coil",
            Area::DiscreteInput => "discrete",
            Area::HoldingRegister => "holding",
            Area::InputRegister => "input",
        }
    }
}

/// Value encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// A coil or discrete input.
    Bool,
    /// Bit N (0 = least significant) of one 16-bit register.
    Bit(u8),
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// Fixed-length string of `len` bytes (two per register, high byte first
    /// for ABCD/CDAB; low byte first for BADC/DCBA). Trailing NULs and
    /// spaces are trimmed.
    String {
        len: u16,
    },
}

impl DataType {
    /// Registers (or bits, for `Bool`) the value occupies.
    pub fn width(self) -> u16 {
        match self {
            DataType::Bool | DataType::Bit(_) | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::String { len } => len.div_ceil(2),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Bit(_) => "bit",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String { .. } => "string",
        }
    }

    pub fn is_numeric(self) -> bool {
        !matches!(
            self,
            DataType::Bool | DataType::Bit(_) | DataType::String { .. }
        )
    }
}

/// Word and byte order of multi-register values, named by where the bytes
/// of the big-endian value `A B C D` land in the register stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// Big-endian words, big-endian bytes (Modbus default).
    #[default]
    Abcd,
    /// Word-swapped: low word first, bytes big-endian in each word.
    Cdab,
    /// Byte-swapped inside each word, words big-endian.
    Badc,
    /// Fully little-endian.
    Dcba,
}

impl WordOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        }
    }
    pub fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }
    pub fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub name: String,
    pub device: String,
    /// Where the value lives on the device, per protocol.
    pub source: TagSource,
    /// Engineering value = raw * scale + offset (numeric types only).
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    /// A new sample is stored only when it differs from the last stored one
    /// by more than this (engineering units); 0 stores every change.
    pub deadband: f64,
    pub poll_group: Option<String>,
    pub writable: bool,
    pub description: Option<String>,
    /// Engineering range (low, high), when given: the trend's default scale.
    pub range: Option<(f64, f64)>,
}

impl Tag {
    /// The Modbus address, for tags of Modbus devices.
    pub fn modbus(&self) -> Option<&ModbusPoint> {
        match &self.source {
            TagSource::Modbus(p) => Some(p),
            TagSource::OpcUa(_) => None,
        }
    }

    /// The OPC UA node, for tags of OPC UA devices.
    pub fn opcua(&self) -> Option<&OpcUaPoint> {
        match &self.source {
            TagSource::OpcUa(p) => Some(p),
            TagSource::Modbus(_) => None,
        }
    }
}

/// Where a tag's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TagSource {
    Modbus(ModbusPoint),
    OpcUa(OpcUaPoint),
}

/// A value in a Modbus device's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModbusPoint {
    pub area: Area,
    /// 0-based protocol address.
    pub address: u16,
    pub data_type: DataType,
    pub order: WordOrder,
}

impl ModbusPoint {
    /// Last address the value occupies (inclusive). Validation guarantees it
    /// does not overflow.
    pub fn end_address(&self) -> u16 {
        self.address
            .saturating_add(self.data_type.width().saturating_sub(1))
    }
}

/// A variable on an OPC UA server.
#[derive(Debug, Clone, PartialEq)]
pub struct OpcUaPoint {
    pub node: NodeRef,
    /// Server-side sampling interval; `None` = the subscription's publishing interval.
    pub sampling_interval: Option<Duration>,
    /// Values the server may queue between publishes.
    pub queue_size: u32,
    /// Server-side data-change filter.
    pub data_change_deadband: Option<DataChangeDeadband>,
    pub mode: OpcUaMode,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataChangeDeadband {
    /// In the variable's units.
    Absolute(f64),
    /// Percent of the variable's EURange (the server must expose one).
    Percent(f64),
}

/// How a tag is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpcUaMode {
    /// A monitored item in the device's subscription.
    Subscribe,
    /// Cyclic Read at the poll interval, for servers or nodes that cannot
    /// be subscribed.
    Poll,
}

/// An OPC UA NodeId as written in configuration: `ns=2;s=Boiler.Temp`,
/// `i=2258`, `ns=1;g=…`, `ns=1;b=…` (base64), or with the namespace URI
/// instead of the index, `nsu=urn:plant;s=Boiler.Temp` — indices change
/// between servers and restarts, URIs do not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub namespace: Namespace,
    pub identifier: Identifier,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    Index(u16),
    Uri(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    Numeric(u32),
    String(String),
    /// Canonical lower-case `8-4-4-4-12` hex form.
    Guid(String),
    /// Base64 text as written.
    Opaque(String),
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Namespace::Index(0) => {}
            Namespace::Index(i) => write!(f, "ns={i};")?,
            Namespace::Uri(u) => write!(f, "nsu={u};")?,
        }
        match &self.identifier {
            Identifier::Numeric(n) => write!(f, "i={n}"),
            Identifier::String(s) => write!(f, "s={s}"),
            Identifier::Guid(g) => write!(f, "g={g}"),
            Identifier::Opaque(b) => write!(f, "b={b}"),
        }
    }
}

impl std::str::FromStr for NodeRef {
    type Err = String;

    /// Parse the OPC UA text form (Part 6 §5.3.1.10, plus `nsu=`).
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (namespace, rest) = if let Some(r) = t.strip_prefix("nsu=") {
            let Some((uri, rest)) = r.split_once(';') else {
                return Err("`nsu=<uri>` must be followed by `;` and an identifier, e.g. `nsu=urn:plant;s=Temp`".into());
            };
            if uri.is_empty() {
                return Err("empty namespace URI".into());
            }
            (Namespace::Uri(uri.to_owned()), rest)
        } else if let Some(r) = t.strip_prefix("ns=") {
            let Some((idx, rest)) = r.split_once(';') else {
                return Err(
                    "`ns=<index>` must be followed by `;` and an identifier, e.g. `ns=2;s=Temp`"
                        .into(),
                );
            };
            let idx: u16 = idx
                .parse()
                .map_err(|_| format!("namespace index {idx:?} is not a number from 0 to 65535"))?;
            (Namespace::Index(idx), rest)
        } else {
            (Namespace::Index(0), t)
        };
        let Some((kind, id)) = rest.split_once('=') else {
            return Err("the identifier needs a type: `i=` (numeric), `s=` (string), `g=` (GUID) or `b=` (opaque, base64)".into());
        };
        let identifier = match kind {
            "i" => Identifier::Numeric(id.parse().map_err(|_| {
                format!("numeric identifier {id:?} is not a number from 0 to 4294967295")
            })?),
            "s" if !id.is_empty() => Identifier::String(id.to_owned()),
            "s" => return Err("empty string identifier".into()),
            "g" => {
                let hex: Vec<&str> = id.split('-').collect();
                let lens: Vec<usize> = hex.iter().map(|p| p.len()).collect();
                if lens != [8, 4, 4, 4, 12]
                    || !id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
                {
                    return Err(format!(
                        "{id:?} is not a GUID like 72962b91-fa75-4ae6-8d28-b404dc7daf63"
                    ));
                }
                Identifier::Guid(id.to_ascii_lowercase())
            }
            "b" if !id.is_empty()
                && id.len() % 4 == 0
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')) =>
            {
                Identifier::Opaque(id.to_owned())
            }
            "b" => return Err(format!("{id:?} is not base64 text")),
            other => {
                return Err(format!(
                    "unknown identifier type `{other}=`: use i=, s=, g= or b="
                ));
            }
        };
        Ok(NodeRef {
            namespace,
            identifier,
        })
    }
}

/// `[sync]`: aggregation windows, the outbox and the MQTT link to the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub broker_host: String,
    pub broker_port: u16,
    /// `mqtts://`: TLS, verifying the broker against this CA file (PEM), or
    /// the system roots when `None`.
    pub tls: Option<Option<PathBuf>>,
    /// MQTT user name and password source.
    pub credentials: Option<(String, SecretSource)>,
    /// The node's signing key shared with the hub (≥ 16 bytes).
    pub key: SecretSource,
    /// Aggregation window widths, ascending.
    pub windows: Vec<Duration>,
    /// How long after a window's end samples may still arrive for it.
    pub grace: Duration,
    pub outbox_max_bytes: u64,
    pub when_full: WhenFull,
    pub resend_after: Duration,
    pub max_in_flight: usize,
    /// Windows per batch; more are split into several batches.
    pub max_batch_windows: usize,
    pub status_interval: Duration,
}

/// `[setpoints]`: hub recommendations, operator approval, safe write-back
/// (docs/configuration.md, "Setpoints").
#[derive(Debug, Clone, PartialEq)]
pub struct WriteBack {
    /// `ed25519:` and 64 hex digits: only recommendations signed by this
    /// key are queued.
    pub hub_public_key: String,
    /// Most proposals waiting for approval; an older one for the same tag
    /// is superseded anyway.
    pub max_pending: usize,
    pub setpoints: Vec<SetpointDef>,
}

/// One `[[setpoint]]`: a writable tag and the limits the edge enforces on
/// every write to it, whatever the hub proposes or an engineer types.
#[derive(Debug, Clone, PartialEq)]
pub struct SetpointDef {
    pub tag: String,
    pub unit: Option<String>,
    pub min: f64,
    pub max: f64,
    /// Largest change per write; larger moves are ramped.
    pub max_step: f64,
    /// Least time between two writes (and between ramp steps).
    pub min_interval: Duration,
    /// Read-back must match the written value this closely.
    pub tolerance: f64,
    /// How long a read-back may take.
    pub verify_timeout: Duration,
    /// Write only while this tag reads non-zero (true) with Good quality.
    pub permissive: Option<String>,
    /// Write only while this tag equals this value (named, e.g. `running`).
    pub state: Option<StateInterlock>,
    /// The alarm raised when a write is rolled back (`writeback.<tag>`),
    /// and the internal signal that drives it.
    pub alarm: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateInterlock {
    pub tag: String,
    pub equals: f64,
    pub name: String,
}

/// `[forecast]`: forecasting models (see docs/models.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Every subdirectory with a `manifest.toml` is a model.
    pub models_dir: PathBuf,
    /// How often each model forecasts.
    pub interval: Duration,
    /// A grid point takes the last good sample at or before it, if at most
    /// this old; older means missing (and no forecast).
    pub max_hold: Duration,
    /// Bound on an explanation's cost: at most this many feature groups.
    pub explain_max_features: usize,
    /// How often the models directory is checked for new or changed models.
    pub check_every: Duration,
}

/// `[calendar]`, `[kpi_engine]` and the `[[kpi]]` list (docs/kpi.md).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiSetup {
    pub calendar: CalendarSpec,
    /// The engine's resolution: windows are sums of slices of this length.
    pub slice: Duration,
    /// A slice is computed this long after it ends, for samples still on
    /// their way to the history.
    pub grace: Duration,
    /// A state or reading is held between samples for at most this long;
    /// beyond it the time counts as unknown.
    pub max_hold: Duration,
    pub kpis: Vec<KpiDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalendarSpec {
    /// IANA name, checked against the bundled tz database.
    pub time_zone: String,
    /// Monday = 0.
    pub week_start: u8,
    pub shifts: Vec<models::calendar::Shift>,
    pub planned_stops: Vec<models::calendar::PlannedStop>,
}

impl CalendarSpec {
    /// The calendar; the time zone and shifts were checked at load.
    pub fn calendar(&self) -> Result<models::calendar::Calendar, models::calendar::CalendarError> {
        models::calendar::Calendar::new(
            &self.time_zone,
            self.shifts.clone(),
            self.week_start,
            self.planned_stops.clone(),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KpiDef {
    pub name: String,
    pub kind: models::kpi::KpiKind,
    pub windows: Vec<KpiWindow>,
    pub unit: Option<String>,
    pub description: Option<String>,
}

/// A window a KPI is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KpiWindow {
    /// The last `d`, ending at the last computed slice.
    Rolling(Duration),
    /// The current shift, day or week of the calendar.
    Calendar(models::calendar::CalendarKind),
}

impl KpiWindow {
    /// How the window is written in the config and named in results.
    pub fn label(&self) -> String {
        use models::calendar::CalendarKind;
        match self {
            KpiWindow::Rolling(d) => humantime::format_duration(*d).to_string(),
            KpiWindow::Calendar(CalendarKind::Shift) => "shift".into(),
            KpiWindow::Calendar(CalendarKind::Day) => "day".into(),
            KpiWindow::Calendar(CalendarKind::Week) => "week".into(),
        }
    }
}

/// What the outbox does when it reaches its size bound. Either way every
/// lost batch is counted, logged as an error and reported to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Delete the oldest unacknowledged batches to make room (newest data wins).
    DropOldest,
    /// Keep what is queued; new batches are not queued (oldest data wins).
    RejectNew,
}

/// `[hmi]`: where the operator HMI listens and who may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hmi {
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain and private key; `None` serves plain HTTP.
    pub tls: Option<HmiTls>,
    /// Viewing without logging in (acknowledging and every write still need a login).
    pub anonymous_view: bool,
    /// The local users database (created with mode 0600).
    pub users_file: PathBuf,
    /// A bearer token that may read `/metrics` without a session.
    pub metrics_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HmiTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub path: PathBuf,
    /// Samples, KPI values and forecasts older than this are deleted.
    pub retention_age: Duration,
    /// Windows the hub acknowledged are kept this long.
    pub aggregates_retention: Duration,
    /// When the database grows beyond this, retention deletes acknowledged
    /// windows, KPI values, forecasts, then raw samples, oldest first.
    pub retention_bytes: u64,
    /// Raw samples this recent are never deleted to make room.
    pub min_raw_span: Duration,
    /// Disk space held in reserve next to the database, released when the
    /// disk fills so the outbox and history can still be written (0: none).
    pub reserve_bytes: u64,
    /// Max samples per insert transaction.
    pub batch_size: usize,
    /// A partial batch is committed after at most this long.
    pub flush_interval: Duration,
}

/// One configured alarm (`[[alarm]]`, docs/configuration.md).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmDef {
    /// Unique; names the alarm on the HMI, in the journal and at the hub.
    pub name: String,
    /// The input: a tag, or for a predictive alarm the forecast of this tag.
    pub tag: String,
    /// `hi`, `hihi`, `lo`, `lolo`, `rate`, `discrete`, `quality`, `predictive`.
    pub kind: String,
    pub spec: models::alarm::machine::AlarmSpec,
    /// Predictive alarms: the forecasting model whose output is watched.
    pub model: Option<String>,
    /// The input counts as stale when it has not updated for this long.
    pub stale_after: Option<Duration>,
    /// Suppression by design: the alarm does not apply while this tag
    /// equals this value (a stopped pump cannot have low flow).
    pub suppress_when: Option<(String, f64)>,
    pub message: Option<String>,
}
