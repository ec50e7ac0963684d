//! The guide profile's routes (the central profile's are in `central.rs`) and what
//! both share: the NestJS error body, the telemetry store and its answer.

use super::*;

pub(crate) fn nest_error(status: u16, message: Value) -> Response {
    Response::json_fields(
        status,
        &[
            ("statusCode", json!(status)),
            ("message", message),
            ("error", json!(http::reason(status))),
        ],
    )
}

pub(crate) fn route(sh: &Shared, req: &RawRequest, peer: &str) -> Response {
    if sh.profile == Profile::Central {
        return central::route(sh, req, peer);
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let params = http::parse_query(query);
    let param = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    match (req.method.as_str(), path) {
        ("GET", "/api/license/validate") => license(sh, param("key")),
        ("GET", "/update/check") => update_check(sh, param("tenantId"), param("version")),
        ("GET", p) if p.starts_with("/update/download/") => download(
            sh,
            &http::percent_decode(&p["/update/download/".len()..]),
            req,
        ),
        ("POST", "/telemetry") => telemetry(sh, req),
        // The real backend's public HealthController (platform/api/src/modules/health).
        ("GET", "/health") => Response::json(200, &json!({"status": "ok"})),
        (m, p) => nest_error(404, json!(format!("Cannot {m} {p}"))),
    }
}

pub(crate) fn license(sh: &Shared, key: Option<&str>) -> Response {
    let key = match key {
        Some(k) if !k.is_empty() => k,
        _ => {
            return nest_error(
                400,
                json!(["key should not be empty", "key must be a string"]),
            )
        }
    };
    let outcome = sh.st().licenses.get(key).cloned();
    let outcome = outcome.unwrap_or(LicenseOutcome::Invalid);
    if matches!(outcome, LicenseOutcome::Valid { .. }) {
        sh.st().validations += 1;
    }
    guide_license_answer(outcome)
}

/// The guide profile's answer for an outcome (the central one shares its knobs).
pub(crate) fn guide_license_answer(outcome: LicenseOutcome) -> Response {
    match outcome {
        LicenseOutcome::Valid {
            tenant_id,
            tenant_name,
            expires_at,
            usage_count,
            max_usage_count,
        } => Response::json_fields(
            200,
            &[
                ("valid", json!(true)),
                ("tenantId", json!(tenant_id)),
                ("tenantName", json!(tenant_name)),
                ("expiresAt", json!(expires_at)),
                ("usageCount", json!(usage_count)),
                ("maxUsageCount", json!(max_usage_count)),
            ],
        ),
        LicenseOutcome::Expired => nest_error(400, json!("Licence expirée")),
        LicenseOutcome::ExpiredMessageArray => nest_error(400, json!(["Licence expirée"])),
        LicenseOutcome::ExpiredUpperUnaccented => nest_error(400, json!("LICENCE EXPIREE")),
        LicenseOutcome::Inactive => nest_error(400, json!("Tenant inactif")),
        LicenseOutcome::Revoked => nest_error(400, json!("Licence révoquée")),
        LicenseOutcome::Invalid => nest_error(404, json!("Clé de licence invalide")),
        LicenseOutcome::ValidFalse => Response::json(200, &json!({"valid": false})),
        LicenseOutcome::Custom { status, body } => {
            Response::new(status, "application/json; charset=utf-8", body.into_bytes())
        }
    }
}

/// Highest `<version>.zip` in the packages dir, registered as the published update.
pub(crate) fn scan_packages_dir(sh: &Shared) {
    let Some(dir) = &sh.packages_dir else { return };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let best = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name.strip_suffix(".zip")?.to_string();
            v.chars()
                .next()
                .filter(|c| c.is_ascii_digit())
                .map(|_| (v, e.path()))
        })
        .max_by_key(|(v, _)| version_key(v));
    let Some((version, path)) = best else { return };
    let Ok(zip) = std::fs::read(&path) else {
        return;
    };
    let id = derive_update_id(&version, &zip);
    let (changelog, meta) = match sh.profile {
        Profile::Guide => (String::new(), central::UpdateMeta::default()),
        Profile::Central => match central::read_version_json(&zip) {
            Ok((v, c, mut meta)) if v == version => {
                meta.created_at =
                    iso_time(std::time::UNIX_EPOCH + Duration::from_millis(sh.now_ms()));
                (c, meta)
            }
            Ok((v, _, _)) => {
                eprintln!("cybersensei-sim: {}: version.json says {v}", path.display());
                return;
            }
            Err(e) => {
                eprintln!("cybersensei-sim: {}: refused: {e}", path.display());
                return;
            }
        },
    };
    let mut st = sh.st();
    st.packages.insert(
        id.clone(),
        Arc::new(Package::new(zip, Some(version.clone()))),
    );
    st.update = Some(Published {
        version,
        id,
        changelog,
        meta,
    });
}

pub(crate) fn update_check(sh: &Shared, tenant: Option<&str>, version: Option<&str>) -> Response {
    let mut missing = Vec::new();
    if tenant.map(str::is_empty).unwrap_or(true) {
        missing.push("tenantId should not be empty");
    }
    if version.map(str::is_empty).unwrap_or(true) {
        missing.push("version should not be empty");
    }
    if !missing.is_empty() {
        return nest_error(400, json!(missing));
    }
    let (tenant, version) = (tenant.unwrap_or(""), version.unwrap_or(""));
    if !sh.st().tenants.contains(tenant) {
        return nest_error(404, json!("Tenant introuvable"));
    }
    let has_update = sh.st().update.is_some();
    if !has_update {
        scan_packages_dir(sh);
    }
    let st = sh.st();
    let available = st
        .update
        .as_ref()
        .filter(|u| u.version != version)
        .and_then(|u| st.packages.get(&u.id).map(|p| (u, p.clone())));
    match available {
        None => {
            let latest = st.update.as_ref().map(|u| u.version.as_str());
            Response::json_fields(
                200,
                &[
                    ("updateAvailable", json!(false)),
                    ("currentVersion", json!(version)),
                    ("latestVersion", json!(latest.unwrap_or(version))),
                    ("updateId", Value::Null),
                    ("changelog", Value::Null),
                    ("fileSize", Value::Null),
                ],
            )
        }
        Some((u, pkg)) => {
            let size = st.file_size_override.unwrap_or(pkg.bytes.len() as u64);
            let mut body = vec![
                ("updateAvailable", json!(true)),
                ("currentVersion", json!(version)),
                ("latestVersion", json!(u.version)),
                ("updateId", json!(u.id)),
                ("changelog", json!(u.changelog)),
                ("fileSize", json!(size)),
            ];
            if sh.checksum_in_check.load(Ordering::SeqCst) {
                let hex = st
                    .checksum_override
                    .clone()
                    .unwrap_or_else(|| pkg.sha256.clone());
                if st.checksum_style != ChecksumStyle::Sha256Field {
                    body.push(("checksum", json!(format!("sha256:{hex}"))));
                }
                if st.checksum_style != ChecksumStyle::Prefixed {
                    body.push(("sha256", json!(hex)));
                }
            }
            Response::json_fields(200, &body)
        }
    }
}

pub(crate) fn find_package(sh: &Shared, id: &str) -> Option<Arc<Package>> {
    if let Some(p) = sh.st().packages.get(id) {
        return Some(p.clone());
    }
    let dir = sh.packages_dir.as_ref()?;
    let safe = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !safe {
        return None;
    }
    for name in [id.to_string(), format!("{id}.zip")] {
        if let Ok(bytes) = std::fs::read(dir.join(&name)) {
            return Some(Arc::new(Package::new(bytes, None)));
        }
    }
    None
}

pub(crate) fn download(sh: &Shared, id: &str, req: &RawRequest) -> Response {
    let Some(pkg) = find_package(sh, id) else {
        return nest_error(404, json!("Mise à jour introuvable"));
    };
    let len = pkg.bytes.len();
    let mut headers = vec![("Content-Type".to_string(), "application/zip".to_string())];
    headers.push((
        "Content-Disposition".into(),
        format!("attachment; filename=\"update-{id}.zip\""),
    ));
    if sh.checksum_header.load(Ordering::SeqCst) {
        let hex = sh
            .st()
            .checksum_override
            .clone()
            .unwrap_or_else(|| pkg.sha256.clone());
        headers.push(("X-Checksum-SHA256".into(), hex));
    }
    let ranges = sh.range_support.load(Ordering::SeqCst);
    if ranges {
        headers.push(("Accept-Ranges".into(), "bytes".into()));
    }
    let range = req.header("range").filter(|_| ranges);
    if let Some(r) = range {
        match parse_range(r, len) {
            Some(Ok((start, end))) => {
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{len}", end - 1),
                ));
                return Response {
                    status: 206,
                    headers,
                    body: Body::Shared(pkg.bytes.clone(), start, end),
                };
            }
            Some(Err(())) => {
                headers.retain(|(k, _)| k != "Content-Type");
                headers.push((
                    "Content-Type".into(),
                    "application/json; charset=utf-8".into(),
                ));
                headers.push(("Content-Range".into(), format!("bytes */{len}")));
                let mut r = nest_error(416, json!("Range Not Satisfiable"));
                r.headers = headers;
                return r;
            }
            None => {} // unparseable or multi-range: ignore, send the whole file
        }
    }
    Response {
        status: 200,
        headers,
        body: Body::Shared(pkg.bytes.clone(), 0, len),
    }
}

/// `bytes=N-`, `bytes=N-M`, `bytes=-S`. None: ignore the header; Some(Err): 416.
pub(crate) fn parse_range(h: &str, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let suffix: usize = b.parse().ok()?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(suffix), len)));
    }
    let start: usize = a.parse().ok()?;
    let end = if b.is_empty() {
        len
    } else {
        let e: usize = b.parse().ok()?;
        if e < start {
            return None;
        }
        (e + 1).min(len)
    };
    if start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

pub(crate) fn telemetry(sh: &Shared, req: &RawRequest) -> Response {
    if req.body.len() > MAX_TELEMETRY_BODY {
        return nest_error(413, json!("request entity too large"));
    }
    let v: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return nest_error(400, json!(format!("Unexpected token in JSON: {e}"))),
    };
    let Some(obj) = v.as_object() else {
        return nest_error(400, json!(["body must be an object"]));
    };
    let mut errors = Vec::new();
    match obj.get("tenantId") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => {
            errors.push("tenantId should not be empty".to_string());
            errors.push("tenantId must be a string".to_string());
        }
    }
    for f in ["uptime", "activeUsers", "exercisesCompletedToday"] {
        match obj.get(f) {
            Some(Value::Number(n)) if n.as_f64().map(|x| x >= 0.0).unwrap_or(false) => {}
            Some(Value::Number(_)) => errors.push(format!("{f} must not be less than 0")),
            None | Some(Value::Null) => {
                errors.push(format!("{f} should not be empty"));
                errors.push(format!(
                    "{f} must be a number conforming to the specified constraints"
                ));
            }
            Some(_) => errors.push(format!(
                "{f} must be a number conforming to the specified constraints"
            )),
        }
    }
    for f in ["aiLatency"] {
        if let Some(x) = obj.get(f) {
            if !x.is_number() && !x.is_null() {
                errors.push(format!(
                    "{f} must be a number conforming to the specified constraints"
                ));
            }
        }
    }
    if let Some(x) = obj.get("additionalData") {
        if !x.is_object() && !x.is_null() {
            errors.push("additionalData must be an object".to_string());
        }
    }
    if !errors.is_empty() {
        return nest_error(400, json!(errors));
    }
    let stamp = http::iso_now();
    store_telemetry(sh, v, &stamp);
    telemetry_accepted(&stamp, None)
}

/// The 201 of an accepted telemetry body (telemetry.controller.ts:74-76): the
/// central profile adds the `tenantId` the service echoes.
pub(crate) fn telemetry_accepted(stamp: &str, tenant: Option<&str>) -> Response {
    let mut fields = vec![
        ("success", json!(true)),
        ("message", json!("Télémétrie enregistrée avec succès")),
        ("timestamp", json!(stamp)),
    ];
    if let Some(t) = tenant {
        fields.push(("tenantId", json!(t)));
    }
    Response::json_fields(201, &fields)
}

/// Records an accepted telemetry body (and appends it to the log file, if any).
pub(crate) fn store_telemetry(sh: &Shared, v: Value, stamp: &str) {
    if let Some(path) = &sh.telemetry_log {
        let _g = sh.log_lock.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("{}\n", serde_json::to_string(&v).unwrap_or_default());
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = res {
            eprintln!("cybersensei-sim: telemetry log {}: {e}", path.display());
        }
    }
    let mut st = sh.st();
    st.telemetry.push(v);
    st.telemetry_at.push(stamp.to_string());
}
