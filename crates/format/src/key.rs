//! Primary keys in a form that survives JSON (binary as hex), the key ranges a snapshot is cut
//! into, their order, and the one way a key is printed for people (`user_id=u000,seq=0`).

use std::cmp::Ordering;
use std::fmt;

use ots_wire::types::{PkColumn, PkValue};
use serde::{Deserialize, Serialize};

/// A primary-key value in a form that survives JSON (binary as hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyValue {
    Integer(i64),
    String(String),
    /// Hex-encoded bytes.
    Binary(String),
    InfMin,
    InfMax,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPart {
    pub name: String,
    pub value: KeyValue,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key part '{name}' has invalid hex '{value}'")]
    BadHex { name: String, value: String },
}

impl KeyPart {
    pub fn from_column(c: &PkColumn) -> Self {
        let value = match &c.value {
            PkValue::Integer(v) => KeyValue::Integer(*v),
            PkValue::String(s) => KeyValue::String(s.clone()),
            PkValue::Binary(b) => KeyValue::Binary(hex::encode(b)),
            PkValue::InfMin => KeyValue::InfMin,
            // AUTO_INCREMENT never appears in a bound; treat it like INF_MAX for safety.
            PkValue::InfMax | PkValue::AutoIncrement => KeyValue::InfMax,
        };
        KeyPart {
            name: c.name.clone(),
            value,
        }
    }

    pub fn to_column(&self) -> Result<PkColumn, KeyError> {
        Ok(PkColumn::new(&self.name, self.pk_value()?))
    }

    pub fn pk_value(&self) -> Result<PkValue, KeyError> {
        Ok(match &self.value {
            KeyValue::Integer(v) => PkValue::Integer(*v),
            KeyValue::String(s) => PkValue::String(s.clone()),
            KeyValue::Binary(h) => {
                PkValue::Binary(hex::decode(h).map_err(|_| KeyError::BadHex {
                    name: self.name.clone(),
                    value: h.clone(),
                })?)
            }
            KeyValue::InfMin => PkValue::InfMin,
            KeyValue::InfMax => PkValue::InfMax,
        })
    }
}

/// Tablestore's primary-key order over whole keys (INF_MIN < values < INF_MAX, then bytewise).
/// Keys that cannot be decoded (bad hex) sort as equal, so callers validate first.
pub fn cmp_keys(a: &[KeyPart], b: &[KeyPart]) -> Ordering {
    let decode = |k: &[KeyPart]| -> Option<Vec<PkValue>> {
        k.iter().map(|p| p.pk_value().ok()).collect::<Option<_>>()
    };
    match (decode(a), decode(b)) {
        (Some(a), Some(b)) => ots_wire::types::cmp_primary_keys(
            a.iter().map(PkValue::as_ref),
            b.iter().map(PkValue::as_ref),
        ),
        _ => Ordering::Equal,
    }
}

/// A key as people and `--start-key` write it: `user_id=u000,seq=0`; binary as `0x…` hex,
/// bounds as `INF_MIN`/`INF_MAX`.
pub struct DisplayKey<'a>(pub &'a [KeyPart]);

impl fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", p.name)?;
            match &p.value {
                KeyValue::Integer(v) => write!(f, "{v}")?,
                KeyValue::String(s) => f.write_str(s)?,
                KeyValue::Binary(h) => write!(f, "0x{h}")?,
                KeyValue::InfMin => f.write_str("INF_MIN")?,
                KeyValue::InfMax => f.write_str("INF_MAX")?,
            }
        }
        Ok(())
    }
}

/// Prints a decoded key the same way as [`DisplayKey`].
pub fn display_columns(key: &[PkColumn]) -> String {
    let parts: Vec<KeyPart> = key.iter().map(KeyPart::from_column).collect();
    DisplayKey(&parts).to_string()
}

/// One range of the table: `[start, end)` over the full primary key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub id: u32,
    pub start: Vec<KeyPart>,
    pub end: Vec<KeyPart>,
}

impl Split {
    pub fn start_columns(&self) -> Result<Vec<PkColumn>, KeyError> {
        self.start.iter().map(KeyPart::to_column).collect()
    }

    pub fn end_columns(&self) -> Result<Vec<PkColumn>, KeyError> {
        self.end.iter().map(KeyPart::to_column).collect()
    }

    /// Whether `key` lies in `[start, end)`.
    pub fn contains(&self, key: &[KeyPart]) -> bool {
        cmp_keys(&self.start, key) != Ordering::Greater
            && cmp_keys(key, &self.end) == Ordering::Less
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(user: &str, seq: i64) -> Vec<KeyPart> {
        vec![
            KeyPart {
                name: "user_id".into(),
                value: KeyValue::String(user.into()),
            },
            KeyPart {
                name: "seq".into(),
                value: KeyValue::Integer(seq),
            },
        ]
    }

    #[test]
    fn keys_order_and_print() {
        assert_eq!(cmp_keys(&k("a", 5), &k("b", 0)), Ordering::Less);
        assert_eq!(cmp_keys(&k("a", 5), &k("a", -1)), Ordering::Greater);
        let min = vec![KeyPart {
            name: "user_id".into(),
            value: KeyValue::InfMin,
        }];
        assert_eq!(cmp_keys(&min, &k("", i64::MIN)), Ordering::Less);
        assert_eq!(DisplayKey(&k("u000", 0)).to_string(), "user_id=u000,seq=0");
        let split = Split {
            id: 0,
            start: k("a", 0),
            end: k("b", 0),
        };
        assert!(split.contains(&k("a", 0)));
        assert!(split.contains(&k("a", 99)));
        assert!(!split.contains(&k("b", 0)));
    }

    #[test]
    fn bad_hex_is_an_error() {
        let p = KeyPart {
            name: "b".into(),
            value: KeyValue::Binary("zz".into()),
        };
        assert!(matches!(p.to_column(), Err(KeyError::BadHex { .. })));
    }
}
