//! What every command and the daemon's steps receive: config, clock, HTTP client.

use crate::clock::Clock;
use crate::config::Config;
use crate::transport::Transport;

/// The environment one operation runs in.
pub struct Ctx<'a> {
    /// The validated configuration.
    pub(crate) cfg: Config,
    /// Time, sleep and randomness (injected for tests).
    pub(crate) clock: &'a dyn Clock,
    /// The backend client, built from `cfg.backend`.
    pub(crate) transport: Transport,
    /// A person is watching (CLI command, not the daemon): progress may be shown.
    pub(crate) interactive: bool,
}

impl<'a> Ctx<'a> {
    /// Builds the context; fails on a config the transport cannot use (CA file, proxy).
    pub fn new(
        cfg: Config,
        clock: &'a dyn Clock,
        interactive: bool,
    ) -> crate::error::Result<Ctx<'a>> {
        let mut transport = Transport::new(&cfg.backend)?;
        transport.set_interactive(interactive);
        Ok(Ctx {
            cfg,
            clock,
            transport,
            interactive,
        })
    }

    /// Wall-clock now, seconds since the epoch.
    pub(crate) fn now(&self) -> f64 {
        self.clock.now_unix()
    }
}
