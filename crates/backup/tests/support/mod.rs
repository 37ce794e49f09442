//! Shared by the backup tests; each test binary uses part of it.
#![allow(dead_code)]

pub mod fault_store;
