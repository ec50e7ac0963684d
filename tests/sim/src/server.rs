//! The server: the accept loop, one connection from request to answer (faults
//! first, then the route), the record of every request, and the delivery of a
//! normal answer (whole, slowly, or cut short).

use super::*;

pub(crate) fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if sh.stopping() {
            break;
        }
        let tcp = match stream {
            Ok(s) => s,
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        sh.connections.fetch_add(1, Ordering::SeqCst);
        if sh.down.load(Ordering::SeqCst) {
            http::set_linger_zero(&tcp);
            drop(tcp);
            continue;
        }
        let sh2 = sh.clone();
        let _ = thread::Builder::new()
            .name("sim-conn".into())
            .spawn(move || serve_conn(sh2, tcp));
    }
}

/// What to do with a request once the faults and the route have spoken.
pub(crate) enum Action {
    Send(Response, Delivery),
    Hang,
    Reset,
    Raw(Vec<u8>),
    Oversized {
        bytes: u64,
        content_length: bool,
    },
    Endless {
        content_type: String,
        chunked: bool,
        delay_ms: u64,
    },
}

pub(crate) fn serve_conn(sh: Arc<Shared>, tcp: TcpStream) {
    // The throttler's tracker: Express' `req.ip` without `trust proxy`.
    let peer = tcp
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(30)));
    let mut conn = match &sh.tls {
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(c) => Conn::Tls(Box::new(rustls::StreamOwned::new(c, tcp))),
            Err(_) => return,
        },
        None => Conn::Plain(tcp),
    };
    if conn.handshake().is_err() {
        if !sh.stopping() {
            sh.handshake_failures.fetch_add(1, Ordering::SeqCst);
        }
        return;
    }
    let req = match http::read_request(&mut conn, http::MAX_BODY) {
        Ok(r) => r,
        Err(ReadError::Io(_)) => return,
        Err(ReadError::Bad(status, msg, partial)) => {
            let resp = nest_error(status, json!(msg));
            let partial = partial.unwrap_or(RawRequest {
                method: String::new(),
                target: String::new(),
                headers: Vec::new(),
                body: Vec::new(),
            });
            record(&sh, &partial, status, None);
            send(&sh, conn, resp, Delivery::Normal);
            return;
        }
    };
    let path = req.target.split('?').next().unwrap_or("").to_string();
    let fault = take_fault(&sh, &path);
    let action = match &fault {
        None => Action::Send(route(&sh, &req, &peer), Delivery::Normal),
        Some(f) => fault_action(&sh, &req, &peer, f.clone()),
    };
    let status = match &action {
        Action::Send(r, _) => r.status,
        Action::Hang | Action::Reset => 0,
        Action::Raw(b) => raw_status(b),
        Action::Oversized { .. } | Action::Endless { .. } => 200,
    };
    record(&sh, &req, status, fault.as_ref());
    match action {
        Action::Send(resp, d) => send(&sh, conn, resp, d),
        Action::Hang => hang(&sh, conn),
        Action::Reset => conn.close_abrupt(true),
        Action::Raw(bytes) => {
            if conn.write_all(&bytes).is_ok() {
                let _ = conn.flush();
                conn.close_clean();
            }
        }
        Action::Oversized {
            bytes,
            content_length,
        } => oversized(&sh, conn, bytes, content_length),
        Action::Endless {
            content_type,
            chunked,
            delay_ms,
        } => endless(&sh, conn, &content_type, chunked, delay_ms),
    }
}

pub(crate) fn record(sh: &Shared, req: &RawRequest, status: u16, fault: Option<&Fault>) {
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (req.target.clone(), String::new()),
    };
    let fault = fault.map(|f| match f {
        Fault::Raw(b) => format!("Raw({} bytes)", b.len()),
        f => format!("{f:?}"),
    });
    if sh.log_requests {
        eprintln!(
            "{} {} {} -> {}{}",
            http::iso_now(),
            req.method,
            path,
            status,
            fault
                .as_deref()
                .map(|f| format!(" [fault {f}]"))
                .unwrap_or_default()
        );
    }
    {
        let route = central::route_of(&req.method, &path).unwrap_or("other");
        let mut st = sh.st();
        *st.counters.requests.entry(route.to_string()).or_default() += 1;
        if status == 429 {
            *st.counters.throttled.entry(route.to_string()).or_default() += 1;
        }
    }
    let r = Request {
        method: req.method.clone(),
        params: http::parse_query(&query),
        path,
        query,
        headers: req.headers.clone(),
        body_len: req.body.len(),
        body: req.body.clone(),
        status,
        fault,
        at: SystemTime::now(),
    };
    sh.st().requests.push(r);
}

pub(crate) fn send(sh: &Shared, mut conn: Conn, resp: Response, delivery: Delivery) {
    let head = resp.head_bytes();
    let body = resp.body_bytes();
    let res: io::Result<bool> = (|| match delivery {
        Delivery::Normal => {
            let mut all = head;
            all.extend_from_slice(body);
            conn.write_all(&all)?;
            conn.flush()?;
            Ok(true)
        }
        Delivery::Slow { chunk, delay_ms } => {
            conn.write_all(&head)?;
            conn.flush()?;
            for c in body.chunks(chunk) {
                if sh.stopping() {
                    return Ok(false);
                }
                conn.write_all(c)?;
                conn.flush()?;
                sleep_interruptible(sh, Duration::from_millis(delay_ms));
            }
            Ok(true)
        }
        Delivery::Truncate { after } => {
            let n = (after.min(body.len() as u64)) as usize;
            let mut all = head;
            all.extend_from_slice(&body[..n]);
            conn.write_all(&all)?;
            conn.flush()?;
            Ok(false)
        }
    })();
    match res {
        Ok(true) => conn.close_clean(),
        Ok(false) => conn.close_abrupt(false),
        Err(_) => conn.close_abrupt(false),
    }
}

pub(crate) fn sleep_interruptible(sh: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !sh.stopping() {
        let now = Instant::now();
        if now >= end {
            break;
        }
        thread::sleep((end - now).min(Duration::from_millis(25)));
    }
}
