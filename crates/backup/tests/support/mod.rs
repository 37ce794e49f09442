//! Shared by the backup tests; each test binary uses part of it.
#![allow(dead_code)]

pub mod fault_store;

use ots_emulator::{Emulator, EmulatorHandle};
use ots_wire::{ClientConfig, Credentials, OtsClient};

/// An in-process emulator serving `instance` (access key `ak`/`sk`) and a client of it.
pub async fn emulator(instance: &str) -> (EmulatorHandle, OtsClient) {
    let emu = Emulator::builder()
        .instance(instance)
        .credentials("ak", "sk")
        .start()
        .await
        .unwrap();
    let client = OtsClient::new(ClientConfig::new(
        emu.endpoint(),
        instance,
        Credentials::new("ak", "sk"),
    ))
    .unwrap();
    (emu, client)
}
