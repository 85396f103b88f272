//! `SIGINT`, `SIGTERM` and `SIGHUP`: recorded, never fatal by themselves.
//!
//! Handlers are installed (tokio's signal driver, on a thread of its own) before anything
//! is started; the signal is stored, and every wait of the xtask (a command, a server's
//! readiness, the tests) looks at it every 50 ms and stops what it started, then ends with
//! [`Interrupted`](crate::Interrupted): exit 128 + the signal. Children get the default
//! dispositions back when they exec.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use tokio::signal::unix::{SignalKind, signal};

/// `SIGHUP`.
pub(crate) const HUP: i32 = 1;
/// `SIGINT`.
pub(crate) const INT: i32 = 2;
/// `SIGTERM`.
pub(crate) const TERM: i32 = 15;

/// The last signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether `SIGINT` is ignored (while an interactive shell has the terminal).
static IGNORE_INT: AtomicBool = AtomicBool::new(false);

/// Install the handlers; returns once they are in place.
pub(crate) fn install() -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut streams = Vec::new();
                for (kind, number) in [
                    (SignalKind::interrupt(), INT),
                    (SignalKind::terminate(), TERM),
                    (SignalKind::hangup(), HUP),
                ] {
                    match signal(kind) {
                        Ok(stream) => streams.push((stream, number)),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                }
                for (mut stream, number) in streams {
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            record(number);
                        }
                    });
                }
                let _ = ready_tx.send(Ok(()));
                std::future::pending::<()>().await;
            });
        })?;
    match ready_rx.recv() {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("the signal thread ended before installing its handlers"),
    }
}

fn record(number: i32) {
    if number == INT && IGNORE_INT.load(Ordering::SeqCst) {
        return;
    }
    RECEIVED.store(number, Ordering::SeqCst);
}

/// The signal received, if any.
pub(crate) fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// An [`Interrupted`](crate::Interrupted) error when a signal was received.
pub(crate) fn check() -> anyhow::Result<()> {
    match received() {
        Some(n) => Err(crate::Interrupted(n).into()),
        None => Ok(()),
    }
}

/// Ignore `SIGINT` (an interactive shell in the foreground handles the terminal's
/// `Ctrl-C` itself) or stop ignoring it.
pub(crate) fn ignore_interrupts(ignore: bool) {
    IGNORE_INT.store(ignore, Ordering::SeqCst);
}

/// `INT`, `TERM`, `HUP` or the number.
pub(crate) fn name(number: i32) -> String {
    match number {
        INT => "INT".into(),
        TERM => "TERM".into(),
        HUP => "HUP".into(),
        n => n.to_string(),
    }
}
