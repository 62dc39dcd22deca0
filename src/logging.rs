//! The agent's logger: one line per record, `LEVEL [target] message`, no timestamp (procd,
//! journald and syslog add their own).
//!
//! Errors and warnings go to stderr, info, debug and trace to stdout: procd logs a service's
//! stderr at error priority and its stdout at info (`daemon.err` / `daemon.info` in logread),
//! and journald does the same with a unit's default `SyslogLevel`s, so a warning is no longer
//! drowned among info lines and `logread -l 4` shows the ones that need attention.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

/// neli logs every netlink message it cannot parse at debug and below: noise from the kernel,
/// not ours, so below warn it is silenced whatever the level.
const QUIET_TARGET: &str = "neli";

struct Logger {
    level: LevelFilter,
}

/// Where a record of `level` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub fn stream(level: Level) -> Stream {
    if level <= Level::Warn {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

/// Whether a record of `level` from `target` is written at the configured `max`.
pub fn enabled(max: LevelFilter, level: Level, target: &str) -> bool {
    if level > max {
        return false;
    }
    let quiet = target == QUIET_TARGET || target.starts_with("neli::");
    !(quiet && level > Level::Warn)
}

/// The line for a record, newline included.
pub fn line(level: Level, target: &str, args: &std::fmt::Arguments) -> String {
    format!("{level:<5} [{target}] {args}\n")
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        enabled(self.level, metadata.level(), metadata.target())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = line(record.level(), record.target(), record.args());
        // One write per line, so stdout and stderr lines never interleave mid-line. A failed
        // write (a closed pipe) cannot be logged anywhere: it is dropped.
        let _ = match stream(record.level()) {
            Stream::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

/// Installs the logger for the process; fails only if one is installed already.
pub fn init(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    // Lives as long as the process (set_boxed_logger would need log's std feature).
    log::set_logger(Box::leak(Box::new(Logger { level })))?;
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_go_to_stderr_the_rest_to_stdout() {
        assert_eq!(stream(Level::Error), Stream::Stderr);
        assert_eq!(stream(Level::Warn), Stream::Stderr);
        assert_eq!(stream(Level::Info), Stream::Stdout);
        assert_eq!(stream(Level::Debug), Stream::Stdout);
        assert_eq!(stream(Level::Trace), Stream::Stdout);
    }

    #[test]
    fn level_and_neli_filter() {
        assert!(enabled(LevelFilter::Info, Level::Info, "wesher::agent"));
        assert!(!enabled(LevelFilter::Info, Level::Debug, "wesher::agent"));
        assert!(!enabled(LevelFilter::Off, Level::Error, "wesher::agent"));
        assert!(enabled(LevelFilter::Trace, Level::Trace, "wesher::agent"));
        for target in ["neli", "neli::socket", "neli::consts"] {
            assert!(
                !enabled(LevelFilter::Trace, Level::Debug, target),
                "{target}"
            );
            assert!(
                !enabled(LevelFilter::Trace, Level::Info, target),
                "{target}"
            );
            assert!(enabled(LevelFilter::Trace, Level::Warn, target), "{target}");
            assert!(enabled(LevelFilter::Warn, Level::Error, target), "{target}");
        }
        // Only neli itself: a crate whose name starts the same is not silenced.
        assert!(enabled(LevelFilter::Debug, Level::Debug, "nelix"));
    }

    #[test]
    fn line_format() {
        assert_eq!(
            line(Level::Warn, "wesher::agent", &format_args!("a {}", 1)),
            "WARN  [wesher::agent] a 1\n"
        );
        assert_eq!(line(Level::Error, "x", &format_args!("b")), "ERROR [x] b\n");
    }
}
