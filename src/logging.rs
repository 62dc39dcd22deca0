//! The agent's logger: one line per record, `LEVEL [target] message`, no timestamp (procd,
//! journald and syslog add their own).
//!
//! Errors and warnings go to stderr, info, debug and trace to stdout: procd logs a service's
//! stderr at error priority and its stdout at info (`daemon.err` / `daemon.info` in logread),
//! so a warning is not drowned among info lines. journald logs both streams at one level
//! (`SyslogLevel=`, info) but reads a `<N>` syslog priority in front of a line: under systemd
//! (`JOURNAL_STREAM` set, as systemd sets it for a unit whose output goes to the journal) every
//! line starts with its priority, so `journalctl -p warning` shows warnings and errors.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

/// neli logs every netlink message it cannot parse at debug and below, and every buffer it
/// sends or receives at trace: noise from the kernel, and the WireGuard private key (SET_DEVICE),
/// so below warn it is silenced whatever the level (its warnings carry no buffers).
const QUIET_TARGET: &str = "neli";

struct Logger {
    level: LevelFilter,
    /// Prefix lines with their syslog priority (journald).
    priorities: bool,
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

/// The line for a record, newline included; with `priorities`, prefixed by the record's
/// syslog priority as journald reads it (err 3, warning 4, info 6, debug 7).
pub fn line(level: Level, target: &str, args: &std::fmt::Arguments, priorities: bool) -> String {
    let priority = match (priorities, level) {
        (false, _) => "",
        (true, Level::Error) => "<3>",
        (true, Level::Warn) => "<4>",
        (true, Level::Info) => "<6>",
        (true, Level::Debug | Level::Trace) => "<7>",
    };
    format!("{priority}{level:<5} [{target}] {args}\n")
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        enabled(self.level, metadata.level(), metadata.target())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = line(
            record.level(),
            record.target(),
            record.args(),
            self.priorities,
        );
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
    let priorities = std::env::var_os("JOURNAL_STREAM").is_some();
    log::set_logger(Box::leak(Box::new(Logger { level, priorities })))?;
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
            line(
                Level::Warn,
                "wesher::agent",
                &format_args!("a {}", 1),
                false
            ),
            "WARN  [wesher::agent] a 1\n"
        );
        assert_eq!(
            line(Level::Error, "x", &format_args!("b"), false),
            "ERROR [x] b\n"
        );
        // Under journald, each line carries its syslog priority.
        for (level, prefix) in [
            (Level::Error, "<3>ERROR"),
            (Level::Warn, "<4>WARN "),
            (Level::Info, "<6>INFO "),
            (Level::Debug, "<7>DEBUG"),
            (Level::Trace, "<7>TRACE"),
        ] {
            assert_eq!(
                line(level, "x", &format_args!("c"), true),
                format!("{prefix} [x] c\n")
            );
        }
    }
}
