//! `wesher`: parse the command line, set up logging, run the chosen command.

use std::process::ExitCode;

use wesher::agent;
use wesher::config::{self, Command, KeyAction, PeerAction};
use wesher::control::{self, Request, Status};
use wesher::logging;
use wesher::wireguard::{Key, PrivateKey};

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
            match Status::from_json(&reply) {
                Some(status) if prometheus => {
                    print!("{}", wesher::metrics::render(&status));
                    ExitCode::SUCCESS
                }
                Some(status) => {
                    print!("{}", status.render());
                    ExitCode::SUCCESS
                }
                None => fatal(&format!("the agent sent an unreadable status: {reply:?}")),
            }
        }
        Command::Peer { interface, action } => match peer(&interface, action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fatal(&e),
        },
        Command::KeyGenerate => match wesher::state::generate_key() {
            Ok(key) => {
                println!("{}", *key.to_base64());
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

/// `wesher peer ...`. A device's key pair is made here, so its private key never reaches the
/// agent: it is printed once, in the configuration, and kept nowhere.
fn peer(interface: &str, action: PeerAction) -> Result<(), String> {
    let socket = control::socket_path(interface);
    let (request, private, qr) = match action {
        PeerAction::Add {
            name,
            public_key,
            overlay,
            qr,
        } => {
            let (public_key, private) = match public_key {
                Some(k) => (
                    Key::from_base64(&k).map_err(|e| format!("--public-key: {e}"))?,
                    None,
                ),
                None => {
                    let private = PrivateKey::generate().map_err(|e| e.to_string())?;
                    (private.public_key(), Some(private))
                }
            };
            let public_key = public_key.to_base64();
            let request = Request::PeerAdd {
                name,
                public_key,
                overlay,
            };
            (request, private, qr)
        }
        PeerAction::List => (Request::PeerList, None, false),
        PeerAction::Remove(name) => (Request::PeerRemove(name), None, false),
    };
    let reply = control::ask(&socket, &request)?;
    let reply = match &private {
        Some(private) => wesher::devices::with_private_key(&reply, private),
        None => zeroize::Zeroizing::new(reply),
    };
    print!("{}", *reply);
    if qr {
        qrencode(&reply)?;
    }
    Ok(())
}

/// The configuration as a QR code in the terminal, by the `qrencode` program.
fn qrencode(text: &str) -> Result<(), String> {
    use wesher::spawn;
    let stdin = spawn::memfile(text.as_bytes()).map_err(|e| format!("qrencode: {e}"))?;
    let mut child = spawn::spawn("qrencode".as_ref(), &["-t", "ansiutf8"], &[], &stdin, false)
        .map_err(|e| format!("--qr needs the qrencode program: {e}"))?;
    match child.wait() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("qrencode: {s}")),
        Err(e) => Err(format!("qrencode: {e}")),
    }
}

/// The key of `wesher key ACTION` without KEY: the first line of standard input.
fn read_key() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the key from standard input: {e}"))?;
    let key = line.trim().to_string();
    wesher::secret::SecretKey::from_base64(&key)
        .map_err(|e| format!("key from standard input: {e}"))?;
    Ok(key)
}

fn fatal(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("wesher: error: {err}");
    ExitCode::FAILURE
}
