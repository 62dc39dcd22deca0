//! `wesher`: parse the command line, set up logging, run the chosen command.

use std::process::ExitCode;

use wesher::agent;
use wesher::config::{self, Command, KeyAction};
use wesher::control::{self, Request, Status};
use wesher::logging;

fn main() -> ExitCode {
    // No core dumps and no ptrace by other users' processes: memory holds the keys.
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let command = match config::parse_process() {
        Ok(c) => c,
        Err(e) => return fatal(&e),
    };
    match command {
        Command::Help => {
            print!("{}", config::help_text());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("wesher {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Status { interface, json } => {
            let reply = match control::ask(&control::socket_path(&interface), &Request::Status) {
                Ok(r) => r,
                Err(e) => return fatal(&e),
            };
            if json {
                println!("{}", reply.trim_end());
                return ExitCode::SUCCESS;
            }
            match miniserde::json::from_str::<Status>(&reply) {
                Ok(status) => {
                    print!("{}", status.render());
                    ExitCode::SUCCESS
                }
                Err(_) => fatal(&format!("the agent sent an unreadable status: {reply:?}")),
            }
        }
        Command::KeyGenerate => match wesher::state::generate_key() {
            Ok(key) => {
                println!("{}", wesher::base64::encode(&key));
                ExitCode::SUCCESS
            }
            Err(e) => fatal(&e),
        },
        Command::Key {
            interface,
            action,
            key,
        } => {
            let key = match key.map_or_else(read_key, Ok) {
                Ok(k) => k,
                Err(e) => return fatal(&e),
            };
            let request = match action {
                KeyAction::Install => Request::KeyInstall(key),
                KeyAction::Use => Request::KeyUse(key),
                KeyAction::Remove => Request::KeyRemove(key),
            };
            match control::ask(&control::socket_path(&interface), &request) {
                Ok(reply) => {
                    print!("{reply}");
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(&e),
            }
        }
        Command::Agent(cfg) => {
            if let Err(e) = logging::init(cfg.log_level) {
                return fatal(&e);
            }
            for warning in &cfg.warnings {
                log::warn!("{warning}");
            }
            match agent::run(*cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fatal(&e),
            }
        }
    }
}

/// The key of `wesher key ACTION` without KEY: the first line of standard input.
fn read_key() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the key from standard input: {e}"))?;
    let key = line.trim().to_string();
    wesher::base64::decode_key(&key).map_err(|e| format!("key from standard input: {e}"))?;
    Ok(key)
}

fn fatal(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("wesher: error: {err}");
    ExitCode::FAILURE
}
