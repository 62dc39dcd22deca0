//! Our LZW against Go's compress/lzw (LSB, 8-bit literals), up to inputs that fill the code table
//! many times over: each side must decode what the other wrote. The encodings themselves may
//! differ on larger inputs (weezl sometimes emits a shorter match than Go's encoder, and the two
//! clear a full table at different points); the captured payloads, which are small, re-encode
//! byte-identically (tests/wire_captures.rs).
//!
//! Needs the `go` toolchain (standard library only): skipped with a note on a dev machine
//! without it, a failure when CI=true.

use std::path::{Path, PathBuf};
use std::process::Command;

use wesher::membership::wire::{lzw_compress, lzw_decompress};

const GO_LZW: &str = r#"package main

import (
	"bytes"
	"compress/lzw"
	"io"
	"os"
)

// usage: lzw c|d IN OUT
func main() {
	in, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	if os.Args[1] == "c" {
		w := lzw.NewWriter(&out, lzw.LSB, 8)
		if _, err := w.Write(in); err != nil {
			panic(err)
		}
		if err := w.Close(); err != nil {
			panic(err)
		}
	} else if _, err := io.Copy(&out, lzw.NewReader(bytes.NewReader(in), lzw.LSB, 8)); err != nil {
		panic(err)
	}
	if err := os.WriteFile(os.Args[3], out.Bytes(), 0o644); err != nil {
		panic(err)
	}
}
"#;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn go_available() -> bool {
    Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_go(bin: &Path, dir: &Path, mode: &str, input: &[u8]) -> Vec<u8> {
    let (inp, out) = (dir.join("in"), dir.join("out"));
    std::fs::write(&inp, input).expect("write input");
    let status = Command::new(bin)
        .args([mode.as_ref(), inp.as_os_str(), out.as_os_str()])
        .status()
        .expect("run the Go helper");
    assert!(status.success(), "Go lzw {mode} failed");
    std::fs::read(&out).expect("read output")
}

/// Deterministic test data: runs of repeated text mixed with xorshift noise.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(3) {
            out.extend_from_slice(b"node-192.168.77.");
        }
        out.push(x as u8);
    }
    out.truncate(len);
    out
}

#[test]
fn lzw_interoperates_with_go_compress_lzw() {
    if !go_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the go toolchain is missing"
        );
        eprintln!("skipping: the go toolchain is not installed");
        return;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("wesher-lzw-go-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    std::fs::write(dir.0.join("main.go"), GO_LZW).expect("write main.go");
    std::fs::write(dir.0.join("go.mod"), "module lzwcheck\n\ngo 1.18\n").expect("go.mod");
    let bin = dir.0.join("lzw");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&dir.0)
        .status()
        .expect("run go build");
    assert!(built.success(), "go build failed");

    for (len, seed) in [
        (0, 1),
        (1, 2),
        (3000, 3),
        (5000, 4),
        (70_000, 5),
        (400_000, 6),
    ] {
        let data = sample(len, seed);
        let ours = lzw_compress(&data);
        assert_eq!(
            run_go(&bin, &dir.0, "d", &ours),
            data,
            "Go decoding ours, len {len}"
        );
        let theirs = run_go(&bin, &dir.0, "c", &data);
        assert_eq!(
            lzw_decompress(&theirs, len),
            Ok(data),
            "decoding Go's, len {len}"
        );
    }
}
