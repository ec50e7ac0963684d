//! Development-only simulator of the CyberSensei central backend
//! (docs/protocol.md): a small synchronous HTTP/1.1 server, plain or
//! HTTPS with a throwaway CA generated at start, with scriptable faults and a
//! record of every request. Never shipped; used by the agent's integration tests
//! (in-process) and by the demo / qemu scripts (the `cybersensei-sim` binary).
//!
//! Two profiles ([`Profile`]): `guide`, the integration guide's backend, and
//! `central`, the real backend's code (sidi30/CyberSensei `platform/api`, modelled in
//! `central.rs` and `throttle.rs` with file:line references). [`SimOptions::default`]
//! takes it from `CYBERSENSEI_SIM_PROFILE`, so a whole test suite switches at once.
//!
//! ```no_run
//! use cybersensei_sim::{Fault, LicenseOutcome, Sim, SimOptions};
//!
//! let sim = Sim::start(SimOptions { tls: true, ..Default::default() }).unwrap();
//! let dir = std::env::temp_dir();
//! sim.write_ca(&dir.join("ca.pem")).unwrap(); // trust this CA in the client
//! let tenant = sim.valid_license("A1B2C3D4-E5F6+G7H8/I9J0=K1L2");
//! sim.set_license("OTHER", LicenseOutcome::Expired);
//! let update_id = sim.publish_update("1.2.0", b"PK...zip bytes".to_vec(), "- fixes");
//! sim.push_fault("/api/license/validate", Fault::Status(503, "{}".into())); // one-shot
//! sim.set_sticky_fault("/update/download", Some(Fault::Truncate { after_bytes: 10 }));
//! let base = sim.url(); // "https://127.0.0.1:PORT", no trailing slash
//! // ... run the agent against `base` ...
//! assert_eq!(sim.count("/api/license/validate"), 2);
//! let posted: Vec<serde_json::Value> = sim.telemetry();
//! # let _ = (tenant, update_id, base, posted);
//! // dropping `sim` stops the server (hanging connections are released quickly)
//! ```
//!
//! Routes (exact paths, strict; the guide profile's answers below, the central
//! profile's in docs/protocol.md): `GET /api/license/validate?key=`,
//! `GET /update/check?tenantId=&version=`, `GET /update/download/{id}`,
//! `POST /telemetry`; anything else is a NestJS-style 404.
//!
//! Faults are matched by path prefix. One-shot faults (FIFO, [`Sim::push_fault`]) are
//! consumed first, then the sticky fault of the longest matching prefix
//! ([`Sim::set_sticky_fault`]). `SlowBody` and `Truncate` alter the delivery of the
//! normal answer (so the route's side effects, e.g. recording telemetry, happen);
//! every other fault replaces the answer and the route is not run.
//!
//! Every request is recorded *before* its response is written, so once a client has
//! an answer (or a timeout) the record is there.
//!
//! Layout: this file holds the public types and [`Sim`]'s API; `server.rs` the accept
//! loop, connections and delivery; `routes.rs` the guide profile's routes (with what
//! both profiles share); `central.rs` the central profile's; `faults.rs` the faults;
//! `http.rs` the HTTP plumbing (one writer of a response head).

pub mod boxcheck;
mod central;
mod faults;
mod http;
mod routes;
mod server;
mod throttle;
mod tls;

pub use central::{compare_versions, parse_iso_ms, telemetry_errors};
pub use faults::Fault;
pub use http::{iso_now, iso_time, parse_query, percent_decode};
pub use throttle::{system_ms, ManualClock, SimClock, Throttler, Verdict};

use faults::*;
use http::{Body, Conn, Delivery, RawRequest, ReadError, Response};
use routes::*;
use serde_json::{json, Value};
use server::*;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

/// Default tenant used by [`Sim::valid_license`].
pub const DEFAULT_TENANT_ID: &str = "550e8400-e29b-41d4-a716-446655440000";
/// Default tenant name used by [`Sim::valid_license`].
pub const DEFAULT_TENANT_NAME: &str = "Acme Corporation";
/// Default expiry used by [`Sim::valid_license`].
pub const DEFAULT_EXPIRES_AT: &str = "2099-12-31T23:59:59.000Z";

/// Telemetry bodies larger than this are answered 413.
pub const MAX_TELEMETRY_BODY: usize = 1024 * 1024;

/// Which backend the simulator behaves as (docs/protocol.md has the differences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The French integration guide (`updateAvailable`, Range resume, static usage
    /// counter, no rate limit).
    #[default]
    Guide,
    /// The real backend's code (sidi30/CyberSensei `platform/api`): `available`,
    /// `fileSize` as a string, no Range, counted validations, ValidationPipe on
    /// telemetry, 60 requests/min per client address and route.
    Central,
}

/// The variable that picks the default profile of [`SimOptions::default`].
pub const PROFILE_ENV: &str = "CYBERSENSEI_SIM_PROFILE";

impl Profile {
    /// `guide` or `central` (case-insensitive).
    pub fn parse(s: &str) -> Option<Profile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "guide" => Some(Profile::Guide),
            "central" => Some(Profile::Central),
            _ => None,
        }
    }

    /// From `CYBERSENSEI_SIM_PROFILE` (unset or empty: guide). Panics on another
    /// value, so that a typo never runs a suite against the wrong backend silently.
    pub fn from_env() -> Profile {
        match std::env::var(PROFILE_ENV) {
            Ok(v) if !v.trim().is_empty() => Profile::parse(&v)
                .unwrap_or_else(|| panic!("{PROFILE_ENV}={v:?}: expected guide or central")),
            _ => Profile::Guide,
        }
    }

    /// The profile's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Guide => "guide",
            Profile::Central => "central",
        }
    }
}

/// Which certificate the HTTPS server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVariant {
    /// Signed by the exposed CA, SANs `localhost`, `127.0.0.1` (+ `extra_sans`).
    #[default]
    Good,
    /// Signed by the exposed CA but only for `wrong.example`.
    WrongHost,
    /// Signed by the exposed CA, right names, validity 2020-01-01..2021-01-01.
    Expired,
    /// Right names and dates but signed by another CA than [`Sim::ca_pem`].
    UntrustedCa,
}

/// Which checksum field(s) `/update/check` carries when checksums are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumStyle {
    /// `"checksum": "sha256:<hex>"`
    #[default]
    Prefixed,
    /// `"sha256": "<hex>"`
    Sha256Field,
    /// both fields
    Both,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// HTTPS with a throwaway CA (see [`Sim::ca_pem`]).
    pub tls: bool,
    pub tls_variant: TlsVariant,
    /// Honour `Range: bytes=N-` on downloads (206). Default true.
    pub range_support: bool,
    /// Put the package digest in `/update/check`. Default true.
    pub checksum_in_check: bool,
    /// Send `X-Checksum-SHA256` on downloads. Default true.
    pub checksum_header: bool,
    /// Append each accepted telemetry body as one JSON line to this file.
    pub telemetry_log: Option<PathBuf>,
    /// Listen address, default `127.0.0.1:0` (ephemeral port).
    pub bind: String,
    /// Serve `/update/download/{id}` from `DIR/{id}` or `DIR/{id}.zip` when the id is
    /// not registered in memory; when no update was published through the API,
    /// `/update/check` announces the highest `DIR/<version>.zip`.
    pub packages_dir: Option<PathBuf>,
    /// Extra SANs for the server certificate (e.g. `10.0.2.2` for a qemu guest).
    pub extra_sans: Vec<String>,
    /// Log one line per request on stderr.
    pub log_requests: bool,
    /// Which backend to behave as; default from `CYBERSENSEI_SIM_PROFILE`.
    pub profile: Profile,
    /// Time of the throttler, license expiry and stamps (default: the system clock).
    pub clock: SimClock,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tls: false,
            tls_variant: TlsVariant::Good,
            range_support: true,
            checksum_in_check: true,
            checksum_header: true,
            telemetry_log: None,
            bind: "127.0.0.1:0".to_string(),
            packages_dir: None,
            extra_sans: Vec::new(),
            log_requests: false,
            profile: Profile::from_env(),
            clock: SimClock::Real,
        }
    }
}

/// What `/api/license/validate` answers for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenseOutcome {
    /// 200 `{"valid":true,"tenantId",...}`
    Valid {
        tenant_id: String,
        tenant_name: String,
        expires_at: String,
        usage_count: u64,
        max_usage_count: u64,
    },
    /// 400 `Licence expirée`
    Expired,
    /// 400 `Tenant inactif`
    Inactive,
    /// 400 `Licence révoquée` (status REVOKED)
    Revoked,
    /// 404 `Clé de licence invalide` (also what unknown keys get)
    Invalid,
    /// 200 `{"valid": false}`
    ValidFalse,
    /// 400 with `"message": ["Licence expirée"]`
    ExpiredMessageArray,
    /// 400 `LICENCE EXPIREE` (upper case, no accent)
    ExpiredUpperUnaccented,
    /// Any status and body (served as `application/json`).
    Custom { status: u16, body: String },
}

impl LicenseOutcome {
    /// A valid license for the default tenant (see [`DEFAULT_TENANT_ID`]).
    pub fn default_valid() -> LicenseOutcome {
        LicenseOutcome::Valid {
            tenant_id: DEFAULT_TENANT_ID.into(),
            tenant_name: DEFAULT_TENANT_NAME.into(),
            expires_at: DEFAULT_EXPIRES_AT.into(),
            usage_count: 42,
            max_usage_count: 1000,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query string (raw, not percent-decoded).
    pub path: String,
    /// Raw query string (without `?`), empty when none.
    pub query: String,
    /// Percent-decoded query parameters, in order (`+` stays `+`).
    pub params: Vec<(String, String)>,
    /// Headers with lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub body: Vec<u8>,
    /// Status answered; 0 when nothing was answered (Hang, Reset).
    pub status: u16,
    /// The fault applied, if any (its `Debug` form, `Raw` bytes elided).
    pub fault: Option<String>,
    pub at: SystemTime,
}

impl Request {
    /// First header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    /// First decoded query parameter of that name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

struct Package {
    bytes: Arc<Vec<u8>>,
    sha256: String,
    /// The version the package declares (central: `X-Update-Version`).
    version: Option<String>,
}

impl Package {
    fn new(bytes: Vec<u8>, version: Option<String>) -> Package {
        let sha256 = sha256_hex(&bytes);
        Package {
            bytes: Arc::new(bytes),
            sha256,
            version,
        }
    }
    /// Name in `Content-Disposition` (the backend's generator: `cybersensei-update-<v>.zip`).
    fn filename(&self, id: &str) -> String {
        match &self.version {
            Some(v) => format!("cybersensei-update-{v}.zip"),
            None => format!("update-{id}.zip"),
        }
    }
}

struct Published {
    version: String,
    id: String,
    changelog: String,
    meta: central::UpdateMeta,
}

/// What the simulator counted since it started (see [`Sim::counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered, by route (`/api/license/validate`, `/update/check`,
    /// `/update/download`, `/telemetry`, `other`).
    pub requests: std::collections::BTreeMap<String, u64>,
    /// 429 answers, by route (the throttler's and injected ones).
    pub throttled: std::collections::BTreeMap<String, u64>,
    /// Successful validations (central: each one incremented a `usageCount`).
    pub validations: u64,
}

impl Counters {
    /// All 429 answers.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.values().sum()
    }
    /// All requests.
    pub fn requests_total(&self) -> u64 {
        self.requests.values().sum()
    }
}

struct State {
    licenses: HashMap<String, LicenseOutcome>,
    tenants: HashSet<String>,
    update: Option<Published>,
    packages: HashMap<String, Arc<Package>>,
    file_size_override: Option<u64>,
    checksum_override: Option<String>,
    checksum_style: ChecksumStyle,
    faults: Vec<(String, Fault)>,
    sticky: Vec<(String, Fault)>,
    requests: Vec<Request>,
    telemetry: Vec<Value>,
    /// Ingestion time of each `telemetry` entry (ISO-8601, the simulator's clock).
    telemetry_at: Vec<String>,
    /// Normalised ids of disabled tenants.
    inactive_tenants: HashSet<String>,
    /// Ids of deactivated updates.
    inactive_updates: HashSet<String>,
    throttler: Throttler,
    validations: u64,
    counters: Counters,
}

struct Shared {
    state: Mutex<State>,
    down: AtomicBool,
    shutdown: AtomicBool,
    range_support: AtomicBool,
    checksum_in_check: AtomicBool,
    checksum_header: AtomicBool,
    tls: Option<Arc<rustls::ServerConfig>>,
    telemetry_log: Option<PathBuf>,
    log_lock: Mutex<()>,
    packages_dir: Option<PathBuf>,
    log_requests: bool,
    handshake_failures: AtomicUsize,
    connections: AtomicUsize,
    profile: Profile,
    clock: Mutex<SimClock>,
}

impl Shared {
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn now_ms(&self) -> u64 {
        let c = self.clock.lock().unwrap_or_else(|e| e.into_inner()).clone();
        c.now_ms()
    }
    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

/// A running simulator; stops when dropped.
pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    scheme: &'static str,
    ca_pem: Option<String>,
    server_cert_pem: Option<String>,
    accept: Option<JoinHandle<()>>,
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic UUID-shaped id for a version + package.
fn derive_update_id(version: &str, zip: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(version.as_bytes());
    ctx.update(&[0]);
    ctx.update(zip);
    let h: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn version_key(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0))
        .collect()
}

/// A `version.json` as the real backend requires at a package's root
/// (update.controller.ts:55-77): for tests and scripts building packages.
pub fn version_json(version: &str, changelog: &str, required_node_version: &str) -> String {
    // `kind: full`: the tests' packages are complete installations, and a package with
    // version.json that names no kind is a content package (docs/updates.md).
    json!({
        "version": version,
        "kind": "full",
        "changelog": changelog,
        "requiredNodeVersion": required_node_version,
        "breaking": false,
        "securityUpdate": false,
    })
    .to_string()
}

impl Sim {
    /// Binds, generates the PKI if `tls`, and serves in background threads.
    pub fn start(opts: SimOptions) -> io::Result<Sim> {
        let (tls_cfg, ca_pem, server_cert_pem) = if opts.tls {
            let m = tls::build(opts.tls_variant, &opts.extra_sans)?;
            (Some(m.config), Some(m.ca_pem), Some(m.server_cert_pem))
        } else {
            (None, None, None)
        };
        let listener = TcpListener::bind(opts.bind.as_str())?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                licenses: HashMap::new(),
                tenants: HashSet::new(),
                update: None,
                packages: HashMap::new(),
                file_size_override: None,
                checksum_override: None,
                checksum_style: ChecksumStyle::Prefixed,
                faults: Vec::new(),
                sticky: Vec::new(),
                requests: Vec::new(),
                telemetry: Vec::new(),
                telemetry_at: Vec::new(),
                inactive_tenants: HashSet::new(),
                inactive_updates: HashSet::new(),
                throttler: Throttler::default(),
                validations: 0,
                counters: Counters::default(),
            }),
            down: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            range_support: AtomicBool::new(opts.range_support),
            checksum_in_check: AtomicBool::new(opts.checksum_in_check),
            checksum_header: AtomicBool::new(opts.checksum_header),
            tls: tls_cfg,
            telemetry_log: opts.telemetry_log.clone(),
            log_lock: Mutex::new(()),
            packages_dir: opts.packages_dir.clone(),
            log_requests: opts.log_requests,
            handshake_failures: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            profile: opts.profile,
            clock: Mutex::new(opts.clock.clone()),
        });
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name("sim-accept".into())
            .spawn(move || accept_loop(sh, listener))?;
        Ok(Sim {
            shared,
            addr,
            scheme: if opts.tls { "https" } else { "http" },
            ca_pem,
            server_cert_pem,
            accept: Some(accept),
        })
    }

    fn host(&self) -> String {
        match self.addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    }

    /// Base URL, e.g. `https://127.0.0.1:40123` (no trailing slash).
    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host(), self.port())
    }

    /// Same as [`Sim::url`] with the host name `localhost`.
    pub fn url_localhost(&self) -> String {
        format!("{}://localhost:{}", self.scheme, self.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA to trust (None without TLS). With `TlsVariant::UntrustedCa` this
    /// is *not* the CA that signed the served certificate.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// PEM of the served server certificate (None without TLS).
    pub fn server_cert_pem(&self) -> Option<String> {
        self.server_cert_pem.clone()
    }

    /// Writes [`Sim::ca_pem`] to `path` (creating parent directories).
    pub fn write_ca(&self, path: &Path) -> io::Result<()> {
        let pem = self
            .ca_pem
            .as_ref()
            .ok_or_else(|| io::Error::other("simulator started without TLS"))?;
        if let Some(p) = path.parent() {
            if !p.as_os_str().is_empty() {
                std::fs::create_dir_all(p)?;
            }
        }
        std::fs::write(path, pem)
    }

    /// Sets the answer for `key`; a `Valid` outcome also registers its tenant.
    pub fn set_license(&self, key: &str, outcome: LicenseOutcome) {
        let mut st = self.shared.st();
        if let LicenseOutcome::Valid { tenant_id, .. } = &outcome {
            st.tenants.insert(tenant_id.clone());
        }
        st.licenses.insert(key.to_string(), outcome);
    }

    /// Forgets `key` (it then gets 404 like any unknown key).
    pub fn remove_license(&self, key: &str) {
        self.shared.st().licenses.remove(key);
    }

    /// Registers `key` as valid for the default tenant ("Acme Corporation", expires
    /// 2099-12-31T23:59:59.000Z, usage 42/1000); returns the tenant id.
    pub fn valid_license(&self, key: &str) -> String {
        self.set_license(key, LicenseOutcome::default_valid());
        DEFAULT_TENANT_ID.to_string()
    }

    /// A tenant accepted by `/update/check` (others get 404).
    pub fn add_tenant(&self, tenant_id: &str) {
        self.shared.st().tenants.insert(tenant_id.to_string());
    }

    /// Registers a package downloadable at `/update/download/{id}` without announcing it
    /// (central: its `version.json`, when readable, gives `X-Update-Version`).
    pub fn add_package(&self, id: &str, zip: Vec<u8>) {
        let version = match self.shared.profile {
            Profile::Central => central::read_version_json(&zip).ok().map(|v| v.0),
            Profile::Guide => None,
        };
        self.shared
            .st()
            .packages
            .insert(id.to_string(), Arc::new(Package::new(zip, version)));
    }

    /// Announces `version` and serves `zip` at `/update/download/{id}`; returns the id
    /// (UUID-shaped, derived from the content). Guide: announced to clients whose
    /// version differs. Central: the upload's rules (update.service.ts:51-107): the ZIP
    /// must hold a valid `version.json` (see [`version_json`]) declaring `version`;
    /// its `changelog`, `requiredNodeVersion`, `breaking`, `securityUpdate` are what
    /// `/update/check` announces (the `changelog` argument is then unused), and only
    /// to clients with an older version. Panics when the backend would refuse the
    /// upload (a test's mistake); [`Sim::try_publish_update`] returns the refusal.
    pub fn publish_update(&self, version: &str, zip: Vec<u8>, changelog: &str) -> String {
        self.try_publish_update(version, zip, changelog)
            .unwrap_or_else(|e| panic!("the central backend refuses this package: {e}"))
    }

    /// [`Sim::publish_update`], with the backend's refusal (in French) as the error.
    pub fn try_publish_update(
        &self,
        version: &str,
        zip: Vec<u8>,
        changelog: &str,
    ) -> Result<String, String> {
        let (changelog, meta) = match self.shared.profile {
            Profile::Guide => (changelog.to_string(), central::UpdateMeta::default()),
            Profile::Central => {
                let (v, c, mut meta) = central::read_version_json(&zip)?;
                if v != version {
                    return Err(format!(
                        "version.json declares {v}, the test publishes {version}"
                    ));
                }
                meta.created_at =
                    iso_time(std::time::UNIX_EPOCH + Duration::from_millis(self.shared.now_ms()));
                (c, meta)
            }
        };
        let id = derive_update_id(version, &zip);
        self.shared.st().packages.insert(
            id.clone(),
            Arc::new(Package::new(zip, Some(version.to_string()))),
        );
        self.shared.st().update = Some(Published {
            version: version.to_string(),
            id: id.clone(),
            changelog,
            meta,
        });
        Ok(id)
    }

    /// The profile this simulator runs.
    pub fn profile(&self) -> Profile {
        self.shared.profile
    }

    /// Disables (false) or re-enables a tenant: central answers 400 `Tenant inactif`
    /// to its validations, checks and telemetry.
    pub fn set_tenant_active(&self, tenant_id: &str, active: bool) {
        let n = central::uuid_norm(tenant_id);
        let mut st = self.shared.st();
        if active {
            st.inactive_tenants.remove(&n);
        } else {
            st.inactive_tenants.insert(n);
        }
    }

    /// Deactivates (false) an update: central stops announcing it and answers its
    /// download 400 `Cette mise à jour n'est plus active`.
    pub fn set_update_active(&self, update_id: &str, active: bool) {
        let mut st = self.shared.st();
        if active {
            st.inactive_updates.remove(update_id);
        } else {
            st.inactive_updates.insert(update_id.to_string());
        }
    }

    /// `(usageCount, maxUsageCount)` of a valid license (central counts every success).
    pub fn license_usage(&self, key: &str) -> Option<(u64, u64)> {
        match self.shared.st().licenses.get(key) {
            Some(LicenseOutcome::Valid {
                usage_count,
                max_usage_count,
                ..
            }) => Some((*usage_count, *max_usage_count)),
            _ => None,
        }
    }

    /// Requests, 429s and successful validations so far.
    pub fn counters(&self) -> Counters {
        let st = self.shared.st();
        let mut c = st.counters.clone();
        c.validations = st.validations;
        c
    }

    /// Replaces the clock (e.g. a [`ManualClock`] for an accelerated fleet).
    pub fn set_clock(&self, clock: SimClock) {
        *self.shared.clock.lock().unwrap_or_else(|e| e.into_inner()) = clock;
    }

    /// Sets the simulator's time (ms since the epoch), switching to a manual clock if
    /// it ran on another: for tests whose agent runs on a fake clock.
    pub fn set_now_ms(&self, ms: u64) {
        let mut c = self.shared.clock.lock().unwrap_or_else(|e| e.into_inner());
        match &*c {
            SimClock::Manual(m) => m.set_ms(ms),
            _ => {
                let m = ManualClock::new(std::time::UNIX_EPOCH);
                m.set_ms(ms);
                *c = SimClock::Manual(m);
            }
        }
    }

    /// The simulator's time, ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    /// Central rate limit: `limit` requests per `window` per client and route (the
    /// real one: 60 per minute); forgets the current counts.
    pub fn set_rate_limit(&self, limit: u32, window: Duration) {
        self.shared.st().throttler = Throttler::new(limit, window.as_millis() as u64);
    }

    /// Ingestion time (ISO-8601) of each accepted telemetry body, as [`Sim::telemetry`].
    pub fn telemetry_received_at(&self) -> Vec<String> {
        self.shared.st().telemetry_at.clone()
    }

    /// No update announced any more (packages stay downloadable).
    pub fn clear_update(&self) {
        self.shared.st().update = None;
    }

    /// Lie about `fileSize` in `/update/check` (None: the real size).
    pub fn set_file_size_override(&self, size: Option<u64>) {
        self.shared.st().file_size_override = size;
    }

    /// Lie about the digest (hex) in `/update/check` and `X-Checksum-SHA256`.
    pub fn set_checksum_override(&self, hex: Option<String>) {
        self.shared.st().checksum_override = hex;
    }

    /// Which field carries the digest in `/update/check`.
    pub fn set_checksum_style(&self, style: ChecksumStyle) {
        self.shared.st().checksum_style = style;
    }

    pub fn set_checksum_in_check(&self, on: bool) {
        self.shared.checksum_in_check.store(on, Ordering::SeqCst);
    }

    pub fn set_checksum_header(&self, on: bool) {
        self.shared.checksum_header.store(on, Ordering::SeqCst);
    }

    pub fn set_range_support(&self, on: bool) {
        self.shared.range_support.store(on, Ordering::SeqCst);
    }

    /// Queues a one-shot fault for the next request whose path starts with `route_prefix`.
    pub fn push_fault(&self, route_prefix: &str, fault: Fault) {
        self.shared
            .st()
            .faults
            .push((route_prefix.to_string(), fault));
    }

    /// Sets (Some) or removes (None) the fault applied to every matching request
    /// once the one-shot queue has nothing for it.
    pub fn set_sticky_fault(&self, route_prefix: &str, fault: Option<Fault>) {
        let mut st = self.shared.st();
        st.sticky.retain(|(p, _)| p != route_prefix);
        if let Some(f) = fault {
            st.sticky.push((route_prefix.to_string(), f));
        }
    }

    /// Drops every queued and sticky fault.
    pub fn clear_faults(&self) {
        let mut st = self.shared.st();
        st.faults.clear();
        st.sticky.clear();
    }

    /// While down, every accepted connection is closed at once, unanswered.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.st().requests.clone()
    }

    pub fn requests_to(&self, path_prefix: &str) -> Vec<Request> {
        self.shared
            .st()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// Number of recorded requests whose path starts with `path_prefix`.
    pub fn count(&self, path_prefix: &str) -> usize {
        self.shared
            .st()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    /// Waits up to `timeout` until `count(path_prefix) >= n`; returns whether it did.
    pub fn wait_for(&self, path_prefix: &str, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.count(path_prefix) >= n {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `Range` header of each download request, in order (None: no Range).
    pub fn download_ranges(&self) -> Vec<Option<String>> {
        self.requests_to("/update/download")
            .iter()
            .map(|r| r.header("range").map(str::to_string))
            .collect()
    }

    /// Bodies of accepted (201) telemetry posts, in order.
    pub fn telemetry(&self) -> Vec<Value> {
        self.shared.st().telemetry.clone()
    }

    /// Forgets the recorded requests (not the telemetry, see [`Sim::clear_telemetry`]).
    pub fn clear_requests(&self) {
        self.shared.st().requests.clear();
    }

    pub fn clear_telemetry(&self) {
        let mut st = self.shared.st();
        st.telemetry.clear();
        st.telemetry_at.clear();
    }

    /// TLS handshakes that failed (e.g. the client rejected the certificate).
    pub fn handshake_failures(&self) -> usize {
        self.shared.handshake_failures.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (including those closed while down).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Unblock accept().
        let target: SocketAddr = if self.addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], self.addr.port()))
        } else {
            self.addr
        };
        let _ = TcpStream::connect_timeout(&target, Duration::from_millis(500));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
