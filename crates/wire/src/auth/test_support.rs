//! Fixtures shared by the unit tests of the auth modules.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Credentials, SignatureVersion};

pub const SECRET: &str = "testsecret";
pub const MD5_EMPTY: &str = "1B2M2Y8AsgTpgAmY7PhCfg==";
/// 2024-01-01T00:00:00Z
pub const JAN1_2024: u64 = 1_704_067_200;
/// Planted in secrets; must never show up in any Debug or Display output.
pub const CANARY: &str = "s3cr3t-CANARY-zz9";

pub fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

pub fn creds() -> Credentials {
    Credentials::new("testid", SECRET)
}

pub fn v4() -> SignatureVersion {
    SignatureVersion::V4 {
        region: "cn-hangzhou".to_string(),
    }
}

pub fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

pub fn view<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    h.iter().map(|(n, v)| (*n, v.as_str())).collect()
}
