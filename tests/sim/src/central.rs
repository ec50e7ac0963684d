//! Profile `central`: the node-facing routes of the real CyberSensei backend
//! (sidi30/CyberSensei, `platform/api`, NestJS 11 + Express), as its code answers them.
//! Every behaviour cites the file and line it models; docs/protocol.md has the table.
//! Paths below are relative to `platform/api/src/`.
//!
//! Request pipeline of the real app, in order: Express routing (unknown route: 404
//! `Cannot GET /x`, no guard), the global `ThrottlerGuard` (app.module.ts:133-138, so
//! every matched request counts, even one that then fails validation), the global
//! `ValidationPipe({whitelist, forbidNonWhitelisted, transform})` (main.ts:71-77; it
//! only checks `@Body()` DTOs: the query parameters of the node routes are plain
//! `@Query('x') x: string`), then the handler. Errors are Nest's
//! `{"message", "error", "statusCode"}`; an unexpected exception (a database error)
//! is `{"statusCode":500,"message":"Internal server error"}`.

use super::*;
use crate::throttle::Verdict;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Express' default JSON body limit (body-parser `limit: '100kb'`; Nest's
/// `rawBody: true` in main.ts:13-15 keeps the default parser and limit).
pub const MAX_JSON_BODY: usize = 100 * 1024;

/// Largest value of a Postgres `int` column (tenant-metric.entity.ts:21-28).
const PG_INT_MAX: f64 = 2_147_483_647.0;

/// The throttler keys: one per controller handler (the guard keys on class + handler).
pub const ROUTE_VALIDATE: &str = "/api/license/validate";
pub const ROUTE_CHECK: &str = "/update/check";
pub const ROUTE_DOWNLOAD: &str = "/update/download";
pub const ROUTE_TELEMETRY: &str = "/telemetry";

/// Nest's HttpException body for `new XxxException('message')`: key order as Nest
/// builds it (`message`, `error`, `statusCode`).
pub(crate) fn nest(status: u16, message: Value) -> Response {
    Response::json_fields(
        status,
        &[
            ("message", message),
            ("error", json!(http::reason(status))),
            ("statusCode", json!(status)),
        ],
    )
}

/// An unhandled exception (e.g. Postgres `invalid input syntax for type uuid`).
fn internal_error() -> Response {
    Response::json_fields(
        500,
        &[
            ("statusCode", json!(500)),
            ("message", json!("Internal server error")),
        ],
    )
}

/// The throttler's 429 body (`ThrottlerException`, an HttpException built from a
/// string: no `error` field); the caller adds `Retry-After`.
pub(crate) fn too_many() -> Response {
    Response::json_fields(
        429,
        &[
            ("statusCode", json!(429)),
            ("message", json!("ThrottlerException: Too Many Requests")),
        ],
    )
}

/// Query parameters as Express (`qs`) decodes them: `+` is a space.
fn query_params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Which throttled route a method + path is, if the real app has it (Express'
/// default routing is not strict: one trailing slash is accepted).
pub(crate) fn route_of(method: &str, path: &str) -> Option<&'static str> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() && !p.ends_with('/') => p,
        _ => path,
    };
    match (method, path) {
        ("GET", ROUTE_VALIDATE) => Some(ROUTE_VALIDATE),
        ("GET", ROUTE_CHECK) => Some(ROUTE_CHECK),
        ("GET", p)
            if p.strip_prefix("/update/download/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
        {
            Some(ROUTE_DOWNLOAD)
        }
        ("POST", ROUTE_TELEMETRY) => Some(ROUTE_TELEMETRY),
        _ => None,
    }
}

/// The whole central request pipeline: route, guard, handler.
pub(crate) fn route(sh: &Shared, req: &RawRequest, peer: &str) -> Response {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let Some(route) = route_of(&req.method, path) else {
        return nest(404, json!(format!("Cannot {} {}", req.method, path)));
    };
    let now = sh.now_ms();
    let verdict = sh.st().throttler.hit(route, peer, now);
    let (limit, remaining, reset) = match verdict {
        Verdict::Blocked { retry_after_s } => {
            return too_many().with("Retry-After", &retry_after_s.to_string());
        }
        Verdict::Allowed {
            limit,
            remaining,
            reset_s,
        } => (limit, remaining, reset_s),
    };
    let params = query_params(query);
    let param = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let resp = match route {
        ROUTE_VALIDATE => validate(sh, param("key"), now),
        ROUTE_CHECK => check(sh, param("tenantId"), param("version"), now),
        ROUTE_DOWNLOAD => download(
            sh,
            &percent_decode(path["/update/download/".len()..].trim_end_matches('/')),
        ),
        _ => telemetry(sh, req, now),
    };
    resp.with("X-RateLimit-Limit", &limit.to_string())
        .with("X-RateLimit-Remaining", &remaining.to_string())
        .with("X-RateLimit-Reset", &reset.to_string())
}

// ------------------------------------------------------------------ license

/// license.service.ts:71-120, checks in that order.
fn validate(sh: &Shared, key: Option<&str>, now: u64) -> Response {
    // A missing key reaches `findOne({where: {key: undefined}})` (license.controller.ts:39);
    // TypeORM drops undefined conditions, so the real answer depends on the table. The
    // agent never sends an empty key: answer as for an unknown one.
    let key = key.unwrap_or("");
    let mut st = sh.st();
    let outcome = st.licenses.get(key).cloned();
    match outcome.unwrap_or(LicenseOutcome::Invalid) {
        // :77-79
        LicenseOutcome::Invalid => nest(404, json!("Clé de licence invalide")),
        // :82-86 (status EXPIRED / REVOKED / PENDING)
        LicenseOutcome::Expired => nest(400, json!("Licence expirée")),
        LicenseOutcome::Revoked => nest(400, json!("Licence révoquée")),
        // :89-91
        LicenseOutcome::Inactive => nest(400, json!("Tenant inactif")),
        LicenseOutcome::Valid {
            tenant_id,
            tenant_name,
            expires_at,
            usage_count,
            max_usage_count,
        } => {
            if st.inactive_tenants.contains(&uuid_norm(&tenant_id)) {
                return nest(400, json!("Tenant inactif"));
            }
            // :94-98: past expiry, the license is saved EXPIRED.
            if parse_iso_ms(&expires_at).is_some_and(|exp| now > exp) {
                st.licenses.insert(key.to_string(), LicenseOutcome::Expired);
                return nest(400, json!("Licence expirée"));
            }
            // :101-106: `maxUsageCount &&`: null or 0 means no limit.
            if max_usage_count > 0 && usage_count >= max_usage_count {
                return nest(400, json!("Limite d'utilisation atteinte"));
            }
            // :109-110: every success is counted.
            let usage_count = usage_count + 1;
            st.licenses.insert(
                key.to_string(),
                LicenseOutcome::Valid {
                    tenant_id: tenant_id.clone(),
                    tenant_name: tenant_name.clone(),
                    expires_at: expires_at.clone(),
                    usage_count,
                    max_usage_count,
                },
            );
            st.validations += 1;
            // :112-119
            Response::json_fields(
                200,
                &[
                    ("valid", json!(true)),
                    ("tenantId", json!(tenant_id)),
                    ("tenantName", json!(tenant_name)),
                    (
                        "expiresAt",
                        if expires_at.is_empty() {
                            Value::Null
                        } else {
                            json!(expires_at)
                        },
                    ),
                    ("usageCount", json!(usage_count)),
                    (
                        "maxUsageCount",
                        if max_usage_count == 0 {
                            Value::Null
                        } else {
                            json!(max_usage_count)
                        },
                    ),
                ],
            )
        }
        // Hostile-answer knobs: served as in the guide profile.
        other => guide_license_answer(other),
    }
}

// ------------------------------------------------------------------ update check

/// update.controller.ts:307-317 + update.service.ts:233-348.
fn check(sh: &Shared, tenant: Option<&str>, version: Option<&str>, now: u64) -> Response {
    let (tenant, version) = match (tenant, version) {
        (Some(t), Some(v)) if !t.is_empty() && !v.is_empty() => (t, v),
        // update.controller.ts:312-314
        _ => return nest(400, json!("tenantId et version sont requis")),
    };
    // The tenant id goes straight into a uuid column query: Postgres refuses a
    // malformed one and the exception is not caught.
    if !is_pg_uuid(tenant) {
        return internal_error();
    }
    if sh.st().update.is_none() {
        scan_packages_dir(sh);
    }
    let st = sh.st();
    let tid = uuid_norm(tenant);
    // :239-249
    if !st.tenants.iter().any(|t| uuid_norm(t) == tid) {
        return nest(404, json!("Tenant non trouvé"));
    }
    if st.inactive_tenants.contains(&tid) {
        return nest(400, json!("Tenant inactif"));
    }
    // :252-271: one ACTIVE license of the tenant, then its expiry.
    let actives: Vec<&String> = st
        .licenses
        .values()
        .filter_map(|o| match o {
            LicenseOutcome::Valid {
                tenant_id,
                expires_at,
                ..
            } if uuid_norm(tenant_id) == tid => Some(expires_at),
            _ => None,
        })
        .collect();
    if actives.is_empty() {
        return nest(400, json!("Aucune licence active trouvée pour ce tenant"));
    }
    if actives
        .iter()
        .all(|e| parse_iso_ms(e).is_some_and(|exp| now > exp))
    {
        return nest(400, json!("Licence expirée"));
    }
    // :274-286: the latest active update.
    let latest = st
        .update
        .as_ref()
        .filter(|u| !st.inactive_updates.contains(&u.id))
        .and_then(|u| st.packages.get(&u.id).map(|p| (u, p.clone())));
    let Some((u, pkg)) = latest else {
        return Response::json_fields(
            200,
            &[
                ("available", json!(false)),
                ("message", json!("Aucune mise à jour disponible")),
                ("currentVersion", json!(version)),
            ],
        );
    };
    // :289-306
    if compare_versions(&u.version, version) <= 0 {
        return Response::json_fields(
            200,
            &[
                ("available", json!(false)),
                ("message", json!("Le node est à jour")),
                ("currentVersion", json!(version)),
                ("latestVersion", json!(u.version)),
            ],
        );
    }
    // :309-329
    if let Some(req) = u.meta.required_node_version.as_deref() {
        if compare_versions(version, req) < 0 {
            return Response::json_fields(
                200,
                &[
                    ("available", json!(false)),
                    (
                        "message",
                        json!(format!(
                            "Mise à jour disponible mais nécessite une version du node >= {req}. Veuillez d'abord mettre à jour votre node."
                        )),
                    ),
                    ("currentVersion", json!(version)),
                    ("latestVersion", json!(u.version)),
                    ("requiredNodeVersion", json!(req)),
                ],
            );
        }
    }
    // :335-347; fileSize is a bigint column, which the pg driver returns as a string.
    let size = st.file_size_override.unwrap_or(pkg.bytes.len() as u64);
    let hex = st
        .checksum_override
        .clone()
        .unwrap_or_else(|| pkg.sha256.clone());
    let with_sum = sh.checksum_in_check.load(Ordering::SeqCst);
    let mut body = vec![
        ("available", json!(true)),
        ("updateId", json!(u.id)),
        ("currentVersion", json!(version)),
        ("latestVersion", json!(u.version)),
        ("changelog", json!(u.changelog)),
        ("fileSize", json!(size.to_string())),
    ];
    // The checksum column is nullable (update-metadata.entity.ts:28-29); the style
    // knob (a test's choice of server) applies as in the guide profile.
    if !with_sum {
        body.push(("checksum", Value::Null));
    } else {
        if st.checksum_style != ChecksumStyle::Sha256Field {
            body.push(("checksum", json!(format!("sha256:{hex}"))));
        }
        if st.checksum_style != ChecksumStyle::Prefixed {
            body.push(("sha256", json!(hex)));
        }
    }
    body.extend([
        (
            "requiredNodeVersion",
            u.meta
                .required_node_version
                .as_deref()
                .map(Value::from)
                .unwrap_or(Value::Null),
        ),
        ("createdAt", json!(u.meta.created_at)),
        ("breaking", json!(u.meta.breaking)),
        ("securityUpdate", json!(u.meta.security_update)),
    ]);
    Response::json_fields(200, &body)
}

/// update.service.ts:113-124: numeric parts of the part before the first `-`,
/// `Number()` semantics (`NaN` compares as neither greater nor smaller).
pub fn compare_versions(v1: &str, v2: &str) -> i32 {
    fn parts(v: &str) -> Vec<Option<f64>> {
        v.split('-')
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| {
                let p = p.trim();
                if p.is_empty() {
                    Some(0.0)
                } else {
                    p.parse::<f64>().ok().filter(|x| x.is_finite())
                }
            })
            .collect()
    }
    let (a, b) = (parts(v1), parts(v2));
    for i in 0..3 {
        if let (Some(Some(x)), Some(Some(y))) = (a.get(i), b.get(i)) {
            if x > y {
                return 1;
            }
            if x < y {
                return -1;
            }
        }
    }
    0
}

// ------------------------------------------------------------------ download

/// update.controller.ts:348-364 + update.service.ts:353-394: no Range handling,
/// always 200 with the whole file.
fn download(sh: &Shared, id: &str) -> Response {
    if !is_pg_uuid(id) {
        return internal_error();
    }
    if sh.st().update.is_none() {
        scan_packages_dir(sh);
    }
    let norm = uuid_norm(id);
    let found = {
        let st = sh.st();
        st.packages
            .iter()
            .find(|(k, _)| uuid_norm(k) == norm)
            .map(|(k, p)| (k.clone(), p.clone(), st.inactive_updates.contains(k)))
    };
    let Some((id, pkg, inactive)) = found else {
        // :360-362
        return nest(404, json!("Mise à jour non trouvée"));
    };
    if inactive {
        // :364-366
        return nest(400, json!("Cette mise à jour n'est plus active"));
    }
    let len = pkg.bytes.len();
    let mut r = Response {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "application/zip".into()),
            (
                "Content-Disposition".into(),
                format!("attachment; filename=\"{}\"", pkg.filename(&id)),
            ),
            ("Content-Length".into(), len.to_string()),
        ],
        body: Body::Shared(pkg.bytes.clone(), 0, len),
    };
    if let Some(v) = &pkg.version {
        r = r.with("X-Update-Version", v);
    }
    if sh.checksum_header.load(Ordering::SeqCst) {
        let hex = sh
            .st()
            .checksum_override
            .clone()
            .unwrap_or_else(|| pkg.sha256.clone());
        r = r.with("X-Checksum", &format!("sha256:{hex}"));
    }
    r
}

// ------------------------------------------------------------------ telemetry

/// A JSON object with its keys in document order (JS `Object.keys` order, which
/// decides the order of `property x should not exist` messages).
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut out: Vec<(String, Value)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    // JSON.parse keeps the last duplicate, at the first one's place.
                    match out.iter_mut().find(|(x, _)| *x == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The fields of `TelemetryDto` (modules/telemetry/dto/telemetry.dto.ts:12-76).
const DTO_FIELDS: [&str; 7] = [
    "tenantId",
    "uptime",
    "activeUsers",
    "exercisesCompletedToday",
    "aiLatency",
    "version",
    "additionalData",
];

/// class-validator's messages for a `TelemetryDto`, in the order the pipe flattens
/// them: whitelist violations first (document order), then each property in
/// declaration order with its constraints in registration order (decorators apply
/// bottom-up, so `@IsInt() @Min(0) x` yields the `min` message before `isInt`).
pub fn telemetry_errors(obj: &[(String, Value)]) -> Vec<String> {
    let mut errors = Vec::new();
    for (k, _) in obj {
        if !DTO_FIELDS.contains(&k.as_str()) {
            errors.push(format!("property {k} should not exist"));
        }
    }
    let get = |n: &str| obj.iter().find(|(k, _)| k == n).map(|(_, v)| v);
    // tenantId: @IsUUID() @IsNotEmpty() (:17-19)
    let t = get("tenantId");
    if matches!(t, None | Some(Value::Null)) || t == Some(&json!("")) {
        errors.push("tenantId should not be empty".into());
    }
    if !t
        .and_then(Value::as_str)
        .is_some_and(is_class_validator_uuid)
    {
        errors.push("tenantId must be a UUID".into());
    }
    // counts: @IsInt() @Min(0) (:25-43)
    for f in ["uptime", "activeUsers", "exercisesCompletedToday"] {
        let n = get(f).and_then(Value::as_f64);
        if !n.is_some_and(|x| x >= 0.0) {
            errors.push(format!("{f} must not be less than 0"));
        }
        if !n.is_some_and(|x| x.fract() == 0.0) {
            errors.push(format!("{f} must be an integer number"));
        }
    }
    // aiLatency: @IsNumber() @IsOptional() @Min(0) (:50-53)
    if let Some(v) = get("aiLatency").filter(|v| !v.is_null()) {
        if !v.as_f64().is_some_and(|x| x >= 0.0) {
            errors.push("aiLatency must not be less than 0".into());
        }
        if !v.is_number() {
            errors
                .push("aiLatency must be a number conforming to the specified constraints".into());
        }
    }
    // version: @IsString() @IsOptional() (:60-62)
    if let Some(v) = get("version").filter(|v| !v.is_null()) {
        if !v.is_string() {
            errors.push("version must be a string".into());
        }
    }
    // additionalData: @IsOptional() only (:74-75): anything goes.
    errors
}

/// telemetry.controller.ts:74-76 + telemetry.service.ts:36-77.
fn telemetry(sh: &Shared, req: &RawRequest, now: u64) -> Response {
    if req.body.len() > MAX_JSON_BODY {
        return nest(413, json!("request entity too large"));
    }
    // body-parser only parses JSON bodies; anything else leaves `{}`.
    let is_json = req
        .header("content-type")
        .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let fields: Vec<(String, Value)> = if !is_json || req.body.is_empty() {
        Vec::new()
    } else {
        match serde_json::from_slice::<Value>(&req.body) {
            Err(e) => return nest(400, json!(format!("Unexpected token in JSON: {e}"))),
            // An array reaches class-validator, which refuses non-objects.
            Ok(Value::Array(_)) => {
                return nest(
                    400,
                    json!(["an unknown value was passed to the validate function"]),
                )
            }
            // body-parser's strict mode: only objects and arrays.
            Ok(v) if !v.is_object() => {
                return nest(400, json!(format!("Unexpected token in JSON: {v}")))
            }
            Ok(_) => match serde_json::from_slice::<Ordered>(&req.body) {
                Ok(o) => o.0,
                Err(e) => return nest(400, json!(format!("Unexpected token in JSON: {e}"))),
            },
        }
    };
    let errors = telemetry_errors(&fields);
    if !errors.is_empty() {
        return nest(400, json!(errors));
    }
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v);
    // Counts go to Postgres `int` columns: larger values fail the insert.
    if ["uptime", "activeUsers", "exercisesCompletedToday"]
        .iter()
        .any(|f| {
            get(f)
                .and_then(Value::as_f64)
                .is_some_and(|x| x > PG_INT_MAX)
        })
    {
        return internal_error();
    }
    let tenant = get("tenantId").and_then(Value::as_str).unwrap_or("");
    let tid = uuid_norm(tenant);
    {
        let st = sh.st();
        if !st.tenants.iter().any(|t| uuid_norm(t) == tid) {
            return nest(404, json!("Tenant non trouvé"));
        }
        if st.inactive_tenants.contains(&tid) {
            return nest(400, json!("Tenant inactif"));
        }
    }
    let v = Value::Object(fields.iter().cloned().collect());
    // The server stamps the ingestion (tenant-metric.entity.ts:39-40, @CreateDateColumn).
    let stamp = http::iso_time(std::time::UNIX_EPOCH + Duration::from_millis(now));
    store_telemetry(sh, v, &stamp);
    crate::routes::telemetry_accepted(&stamp, Some(tenant))
}

// ------------------------------------------------------------------ packages

/// What `/admin/update/upload` keeps of a package (update.service.ts:51-107, 193-210).
#[derive(Debug, Clone, Default)]
pub(crate) struct UpdateMeta {
    pub required_node_version: Option<String>,
    pub breaking: bool,
    pub security_update: bool,
    /// Upload time (the entity's @CreateDateColumn, what `/update/check` returns).
    pub created_at: String,
}

/// `version.json` read from a package's root as the upload does, with its checks and
/// French refusals (update.service.ts:51-107): `(version, changelog, meta)`.
pub(crate) fn read_version_json(zip: &[u8]) -> Result<(String, String, UpdateMeta), String> {
    let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| format!("Erreur lors de l'extraction de version.json: {e}"))?;
    let mut text = String::new();
    {
        let mut f = archive.by_name("version.json").map_err(|_| {
            "Le fichier ZIP doit contenir un fichier version.json à la racine".to_string()
        })?;
        f.read_to_string(&mut text)
            .map_err(|e| format!("Erreur lors de l'extraction de version.json: {e}"))?;
    }
    let m: Value = serde_json::from_str(&text)
        .map_err(|e| format!("Erreur lors de l'extraction de version.json: {e}"))?;
    let s = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let version = s("version").ok_or("version.json doit contenir le champ \"version\"")?;
    let changelog = s("changelog").ok_or("version.json doit contenir le champ \"changelog\"")?;
    let required = s("requiredNodeVersion")
        .ok_or("version.json doit contenir le champ \"requiredNodeVersion\"")?;
    if !is_semver(&version) {
        return Err("Format de version invalide. Utilisez le format semver (ex: 1.2.3)".into());
    }
    if !is_semver(&required) {
        return Err(
            "Format de requiredNodeVersion invalide. Utilisez le format semver (ex: 1.0.0)".into(),
        );
    }
    let truthy = |k: &str| match m.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    Ok((
        version,
        changelog,
        UpdateMeta {
            required_node_version: Some(required),
            breaking: truthy("breaking"),
            security_update: truthy("securityUpdate"),
            created_at: String::new(),
        },
    ))
}

/// `/^\d+\.\d+\.\d+(-[a-zA-Z0-9.]+)?$/` (update.service.ts:85).
fn is_semver(v: &str) -> bool {
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        })
}

// ------------------------------------------------------------------ helpers

/// Canonical form of a UUID for comparisons (Postgres stores them lower-case).
pub(crate) fn uuid_norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What Postgres' `uuid` input accepts: 32 hex digits, optional braces, a hyphen
/// after any group of four digits.
pub(crate) fn is_pg_uuid(s: &str) -> bool {
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let mut digits = 0;
    let mut last_hyphen = true;
    for c in s.chars() {
        if c.is_ascii_hexdigit() {
            digits += 1;
            last_hyphen = false;
        } else if c == '-' && !last_hyphen && digits % 4 == 0 && digits < 32 {
            last_hyphen = true;
        } else {
            return false;
        }
    }
    digits == 32 && !last_hyphen
}

/// validator.js `isUUID(s, 'all')`: 8-4-4-4-12 hex digits.
fn is_class_validator_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Milliseconds since the epoch of an ISO-8601 UTC date (`2099-12-31T23:59:59.000Z`,
/// with or without fraction or `Z`; a bare date is midnight). None when unreadable.
pub fn parse_iso_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let time = time.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next().unwrap_or("0").parse().ok()?;
    let ss: i64 = t.next().unwrap_or("0").parse().ok()?;
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // days_from_civil (Howard Hinnant)
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let total = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms;
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_like_the_service() {
        assert_eq!(compare_versions("1.2.0", "1.0.0"), 1);
        assert_eq!(compare_versions("1.0.0", "1.2.0"), -1);
        assert_eq!(compare_versions("1.2.0-beta", "1.2.0"), 0);
        assert_eq!(compare_versions("1.10.0", "1.9.9"), 1);
        assert_eq!(compare_versions("x.y.z", "1.0.0"), 0); // NaN
        assert_eq!(compare_versions("1.2", "1.2.0"), 0); // undefined
    }

    #[test]
    fn uuids() {
        assert!(is_pg_uuid("550e8400-e29b-41d4-a716-446655440000"));
        assert!(is_pg_uuid("{550E8400E29B41D4A716446655440000}"));
        assert!(is_pg_uuid("550e-8400-e29b-41d4-a716-4466-5544-0000"));
        assert!(!is_pg_uuid("tenant-1"));
        assert!(!is_pg_uuid("550e8400-e29b-41d4-a716-44665544000"));
        assert!(is_class_validator_uuid(
            "550e8400-e29b-41d4-a716-446655440000"
        ));
        assert!(!is_class_validator_uuid("550e8400e29b41d4a716446655440000"));
    }

    #[test]
    fn dto_messages() {
        let o = |v: Value| -> Vec<(String, Value)> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let ok = json!({"tenantId": "550e8400-e29b-41d4-a716-446655440000", "uptime": 5,
                        "activeUsers": 0, "exercisesCompletedToday": 3.0,
                        "additionalData": {"x": [1]}});
        assert!(telemetry_errors(&o(ok)).is_empty());
        let bad = json!({"tenantId": "t1", "uptime": -1, "activeUsers": 1.5,
                         "exercisesCompletedToday": "3", "aiLatency": "x", "version": 1,
                         "collectedAt": "now"});
        assert_eq!(
            telemetry_errors(&o(bad)),
            vec![
                "property collectedAt should not exist",
                "tenantId must be a UUID",
                "uptime must not be less than 0",
                "activeUsers must be an integer number",
                "exercisesCompletedToday must not be less than 0",
                "exercisesCompletedToday must be an integer number",
                "aiLatency must not be less than 0",
                "aiLatency must be a number conforming to the specified constraints",
                "version must be a string",
            ]
        );
    }

    #[test]
    fn iso_dates() {
        assert_eq!(parse_iso_ms("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(parse_iso_ms("2000-03-01"), Some(951_868_800_000));
        assert_eq!(parse_iso_ms("nope"), None);
    }
}
