//! Access keys, STS tokens, and which signature version to use.

use std::fmt;

const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// A secret string whose Debug/Display print "***"; zeroing not required. Never log it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// AccessKey credentials, optionally with an STS token.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: Secret,
    security_token: Option<Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .finish()
    }
}

/// Why credentials could not be read from the environment. Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("environment variable {0} is not set or is empty")]
    Missing(&'static str),
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(&'static str),
}

impl Credentials {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret.into()),
            security_token: None,
        }
    }

    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token.into()));
        self
    }

    /// ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET / ALIBABA_CLOUD_SECURITY_TOKEN (optional)
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_source(|name| std::env::var(name))
    }

    // Separated from `from_env` so tests need not mutate the process environment.
    fn from_source(
        get: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Self, CredentialsError> {
        let read = |name: &'static str| -> Result<Option<String>, CredentialsError> {
            match get(name) {
                Ok(v) if v.is_empty() => Ok(None),
                Ok(v) => Ok(Some(v)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => Err(CredentialsError::NotUnicode(name)),
            }
        };
        let id = read(ENV_ACCESS_KEY_ID)?.ok_or(CredentialsError::Missing(ENV_ACCESS_KEY_ID))?;
        let secret =
            read(ENV_ACCESS_KEY_SECRET)?.ok_or(CredentialsError::Missing(ENV_ACCESS_KEY_SECRET))?;
        let mut creds = Credentials::new(id, secret);
        if let Some(token) = read(ENV_SECURITY_TOKEN)? {
            creds = creds.with_security_token(token);
        }
        Ok(creds)
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn access_key_secret(&self) -> &Secret {
        &self.access_key_secret
    }

    pub fn security_token(&self) -> Option<&Secret> {
        self.security_token.as_ref()
    }
}

/// Which request signature to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureVersion {
    V2,
    V4 { region: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::auth::test_support::CANARY;

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let c = Credentials::new("myid", CANARY).with_security_token(format!("{CANARY}-tok"));
        let dbg = format!("{c:?}");
        assert!(dbg.contains("myid") && dbg.contains("***"), "{dbg}");
        assert!(!dbg.contains(CANARY), "{dbg}");
        assert_eq!(format!("{}", c.access_key_secret()), "***");
        assert_eq!(format!("{:?}", c.security_token()), "Some(***)");
        assert_eq!(c.access_key_secret().expose(), CANARY);
        let e = CredentialsError::Missing(ENV_ACCESS_KEY_SECRET);
        assert!(!format!("{e:?} {e}").contains(CANARY));
    }

    #[test]
    fn credentials_from_source() {
        use std::env::VarError;
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
                    .ok_or(VarError::NotPresent)
            }
        };
        let c = Credentials::from_source(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, CANARY),
        ]))
        .expect("complete");
        assert_eq!(
            (c.access_key_id(), c.access_key_secret().expose()),
            ("id", CANARY)
        );
        assert!(c.security_token().is_none());

        let c = Credentials::from_source(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, CANARY),
            (ENV_SECURITY_TOKEN, "tok"),
        ]))
        .expect("complete");
        assert_eq!(c.security_token().map(Secret::expose), Some("tok"));

        let e = Credentials::from_source(env(&[(ENV_ACCESS_KEY_SECRET, CANARY)])).unwrap_err();
        assert_eq!(e, CredentialsError::Missing(ENV_ACCESS_KEY_ID));
        let e = Credentials::from_source(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, ""),
        ]))
        .unwrap_err();
        assert_eq!(e, CredentialsError::Missing(ENV_ACCESS_KEY_SECRET));
        assert!(!e.to_string().contains(CANARY));
        assert!(e.to_string().contains(ENV_ACCESS_KEY_SECRET));
    }
}
