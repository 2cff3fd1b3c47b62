//! Helpers shared by the log's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use custos_log::log::{Log, LogConfig};
use custos_log::storage::Storage;
use custos_log::verify::{VerifyReport, verify_log};
use custos_tlog::note::NoteSigner;

pub const ORIGIN: &str = "test.local/log";

pub fn signer() -> NoteSigner {
    NoteSigner::from_seed("test.local", [3u8; 32]).unwrap()
}

pub fn open(storage: Arc<dyn Storage>) -> Log {
    Log::open(storage, LogConfig::new(ORIGIN), signer()).expect("open log")
}

/// A log whose segments hold 256 entries, so that small tests have many.
pub fn open_small_segments(storage: Arc<dyn Storage>) -> Log {
    let mut config = LogConfig::new(ORIGIN);
    config.segment_entries = 256;
    Log::open(storage, config, signer()).expect("open log")
}

pub fn verify(storage: &dyn Storage) -> Result<VerifyReport, String> {
    verify_log(storage, ORIGIN, &signer().verifier(), &mut |_, _| {}).map_err(|e| e.to_string())
}

/// A deterministic pseudo-random sequence for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A unique entry of a random length.
pub fn entry(tag: &str, rng: &mut Rng) -> Vec<u8> {
    let mut e = format!("{tag}:").into_bytes();
    let pad = rng.below(300) as usize;
    e.extend(std::iter::repeat_n(b'x', pad));
    e
}
