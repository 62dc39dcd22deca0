//! `wesher`: parse the command line, set up logging, run the chosen command.

use std::process::ExitCode;

use wesher::agent;
use wesher::config::{self, Command, KeyAction};
use wesher::control::{self, Request, Status};

fn main() -> ExitCode {
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
        Command::Status {
            interface,
            json,
            prometheus,
        } => {
            let reply = match control::ask(&control::socket_path(&interface), &Request::Status) {
                Ok(r) => r,
                Err(e) => return fatal(&e),
            };
            if json {
                println!("{}", reply.trim_end());
                return ExitCode::SUCCESS;
            }
            match miniserde::json::from_str::<Status>(&reply) {
                Ok(status) if prometheus => {
                    print!("{}", wesher::metrics::render(&status));
                    ExitCode::SUCCESS
                }
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
            if let Err(e) = simple_logger::SimpleLogger::new()
                .with_level(cfg.log_level)
                .init()
            {
                return fatal(&e);
            }
            match agent::run(*cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fatal(&e),
            }
        }
    }
}

fn fatal(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("wesher: error: {err}");
    ExitCode::FAILURE
}
