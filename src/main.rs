//! `wesher`: parse the command line, set up logging, run the chosen command.

use std::process::ExitCode;

use wesher::agent;
use wesher::config::{self, Command};

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
