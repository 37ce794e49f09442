//! Column-value filters (read filters and write conditions), parsed from the serialized `Filter`
//! protobuf and evaluated on the cells a read selected.

use std::cmp::Ordering;

use ots_wire::pb;
use ots_wire::plainbuffer::decode_bare_value;
use ots_wire::types::Value;
use prost::Message;

use crate::error::{ApiError, ApiResult};
use crate::store::{StoredCell, cmp_values, versions_of};

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparator {
    Equal,
    NotEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Exist,
    NotExist,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logic {
    Not,
    And,
    Or,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Single {
        cmp: Comparator,
        column: String,
        value: Value,
        filter_if_missing: bool,
        latest_version_only: bool,
    },
    Composite {
        logic: Logic,
        subs: Vec<Filter>,
    },
    /// Only meaningful as the top-level filter of a read, where it pages through columns.
    Pagination {
        offset: usize,
        limit: usize,
    },
}

/// A read's filter split into its row predicate and its column pagination.
#[derive(Clone, Debug, Default)]
pub struct ReadFilter {
    pub predicate: Option<Filter>,
    pub pagination: Option<(usize, usize)>,
}

impl ReadFilter {
    pub fn parse(bytes: Option<&[u8]>) -> ApiResult<Self> {
        let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
            return Ok(ReadFilter::default());
        };
        match parse(bytes, 0)? {
            Filter::Pagination { offset, limit } => Ok(ReadFilter {
                predicate: None,
                pagination: Some((offset, limit)),
            }),
            f => Ok(ReadFilter {
                predicate: Some(f),
                pagination: None,
            }),
        }
    }
}

/// Parses a write condition's column condition: value filters only.
pub fn parse_condition(bytes: Option<&[u8]>) -> ApiResult<Option<Filter>> {
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    let f = parse(bytes, 0)?;
    if matches!(f, Filter::Pagination { .. }) {
        return Err(ApiError::param(
            "ColumnPaginationFilter can not be used as a column condition.",
        ));
    }
    Ok(Some(f))
}

fn parse(bytes: &[u8], depth: usize) -> ApiResult<Filter> {
    if depth > MAX_DEPTH {
        return Err(ApiError::param(format!(
            "The filter is nested deeper than {MAX_DEPTH} levels."
        )));
    }
    let f = pb::Filter::decode(bytes)
        .map_err(|e| ApiError::param(format!("Failed to parse the filter: {e}.")))?;
    match pb::FilterType::try_from(f.r#type) {
        Ok(pb::FilterType::FtSingleColumnValue) => {
            let s = pb::SingleColumnValueFilter::decode(&f.filter[..]).map_err(|e| {
                ApiError::param(format!("Failed to parse SingleColumnValueFilter: {e}."))
            })?;
            if s.value_trans_rule.is_some() {
                return Err(ApiError::param(
                    "value_trans_rule is not supported by the emulator.",
                ));
            }
            let cmp = match pb::ComparatorType::try_from(s.comparator) {
                Ok(pb::ComparatorType::CtEqual) => Comparator::Equal,
                Ok(pb::ComparatorType::CtNotEqual) => Comparator::NotEqual,
                Ok(pb::ComparatorType::CtGreaterThan) => Comparator::Greater,
                Ok(pb::ComparatorType::CtGreaterEqual) => Comparator::GreaterEqual,
                Ok(pb::ComparatorType::CtLessThan) => Comparator::Less,
                Ok(pb::ComparatorType::CtLessEqual) => Comparator::LessEqual,
                Ok(pb::ComparatorType::CtExist) => Comparator::Exist,
                Ok(pb::ComparatorType::CtNotExist) => Comparator::NotExist,
                Err(_) => {
                    return Err(ApiError::param(format!(
                        "Unknown comparator type: {}.",
                        s.comparator
                    )));
                }
            };
            let value = if matches!(cmp, Comparator::Exist | Comparator::NotExist)
                && s.column_value.is_empty()
            {
                Value::Boolean(false)
            } else {
                decode_bare_value(&s.column_value)
                    .map_err(|e| {
                        ApiError::param(format!(
                            "Invalid column value in the filter on '{}': {e}.",
                            s.column_name
                        ))
                    })?
                    .to_owned()
            };
            Ok(Filter::Single {
                cmp,
                column: s.column_name,
                value,
                filter_if_missing: s.filter_if_missing,
                latest_version_only: s.latest_version_only,
            })
        }
        Ok(pb::FilterType::FtCompositeColumnValue) => {
            let c = pb::CompositeColumnValueFilter::decode(&f.filter[..]).map_err(|e| {
                ApiError::param(format!("Failed to parse CompositeColumnValueFilter: {e}."))
            })?;
            let logic = match pb::LogicalOperator::try_from(c.combinator) {
                Ok(pb::LogicalOperator::LoNot) => Logic::Not,
                Ok(pb::LogicalOperator::LoAnd) => Logic::And,
                Ok(pb::LogicalOperator::LoOr) => Logic::Or,
                Err(_) => {
                    return Err(ApiError::param(format!(
                        "Unknown logical operator: {}.",
                        c.combinator
                    )));
                }
            };
            match (logic, c.sub_filters.len()) {
                (Logic::Not, 1) => {}
                (Logic::Not, n) => {
                    return Err(ApiError::param(format!(
                        "The NOT operator takes exactly one sub-filter, got {n}."
                    )));
                }
                (_, 0) => {
                    return Err(ApiError::param(
                        "The AND/OR operator needs at least one sub-filter.",
                    ));
                }
                _ => {}
            }
            let mut subs = Vec::with_capacity(c.sub_filters.len());
            for sub in &c.sub_filters {
                let nested = parse(&sub.encode_to_vec(), depth + 1)?;
                if matches!(nested, Filter::Pagination { .. }) {
                    return Err(ApiError::param(
                        "ColumnPaginationFilter can not be nested in a composite filter.",
                    ));
                }
                subs.push(nested);
            }
            Ok(Filter::Composite { logic, subs })
        }
        Ok(pb::FilterType::FtColumnPagination) => {
            let p = pb::ColumnPaginationFilter::decode(&f.filter[..]).map_err(|e| {
                ApiError::param(format!("Failed to parse ColumnPaginationFilter: {e}."))
            })?;
            if p.offset < 0 || p.limit < 0 {
                return Err(ApiError::param(
                    "The offset and limit of ColumnPaginationFilter must be non-negative.",
                ));
            }
            Ok(Filter::Pagination {
                offset: p.offset as usize,
                limit: p.limit as usize,
            })
        }
        Err(_) => Err(ApiError::param(format!(
            "Unknown filter type: {}.",
            f.r#type
        ))),
    }
}

impl Filter {
    /// Evaluates on `cells` (sorted by name, newest first per column). A comparison between values
    /// of different types is false (the emulator does not coerce types).
    pub fn matches(&self, cells: &[&StoredCell]) -> bool {
        match self {
            Filter::Single {
                cmp,
                column,
                value,
                filter_if_missing,
                latest_version_only,
            } => {
                let versions = versions_of(cells, column);
                match cmp {
                    Comparator::Exist => return !versions.is_empty(),
                    Comparator::NotExist => return versions.is_empty(),
                    _ => {}
                }
                if versions.is_empty() {
                    return !filter_if_missing;
                }
                let versions = if *latest_version_only {
                    &versions[..1]
                } else {
                    versions
                };
                versions.iter().any(|c| {
                    let Some(ord) = cmp_values(c.value.as_ref(), value.as_ref()) else {
                        return false;
                    };
                    match cmp {
                        Comparator::Equal => ord == Ordering::Equal,
                        Comparator::NotEqual => ord != Ordering::Equal,
                        Comparator::Greater => ord == Ordering::Greater,
                        Comparator::GreaterEqual => ord != Ordering::Less,
                        Comparator::Less => ord == Ordering::Less,
                        Comparator::LessEqual => ord != Ordering::Greater,
                        Comparator::Exist | Comparator::NotExist => true,
                    }
                })
            }
            Filter::Composite { logic, subs } => match logic {
                Logic::Not => !subs.iter().all(|f| f.matches(cells)),
                Logic::And => subs.iter().all(|f| f.matches(cells)),
                Logic::Or => subs.iter().any(|f| f.matches(cells)),
            },
            Filter::Pagination { .. } => true,
        }
    }
}

/// Keeps the columns `offset .. offset + limit` (by distinct column name) of selected cells.
pub fn paginate_columns(cells: &mut Vec<&StoredCell>, offset: usize, limit: usize) {
    let end = offset.saturating_add(limit);
    let mut col = 0usize;
    let mut kept = Vec::with_capacity(cells.len().min(limit));
    for (i, c) in cells.iter().enumerate() {
        if i > 0 && cells[i - 1].name != c.name {
            col += 1;
        }
        if col >= end {
            break;
        }
        if col >= offset {
            kept.push(*c);
        }
    }
    *cells = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_wire::plainbuffer::encode_bare_value;
    use ots_wire::types::ValueRef;
    use std::sync::Arc;

    fn single(cmp: i32, col: &str, v: ValueRef<'_>, if_missing: bool, latest: bool) -> pb::Filter {
        pb::Filter {
            r#type: pb::FilterType::FtSingleColumnValue as i32,
            filter: pb::SingleColumnValueFilter {
                comparator: cmp,
                column_name: col.into(),
                column_value: encode_bare_value(v).into(),
                filter_if_missing: if_missing,
                latest_version_only: latest,
                value_trans_rule: None,
            }
            .encode_to_vec()
            .into(),
        }
    }

    fn cell(name: &str, ts: i64, v: Value) -> StoredCell {
        StoredCell::new(Arc::from(name), ts, v)
    }

    #[test]
    fn single_and_composite() {
        let cells = [
            cell("a", 2, Value::Integer(5)),
            cell("a", 1, Value::Integer(50)),
            cell("s", 1, Value::String("x".into())),
        ];
        let refs: Vec<&StoredCell> = cells.iter().collect();
        let gt10_latest = single(3, "a", ValueRef::Integer(10), false, true);
        let gt10_any = single(3, "a", ValueRef::Integer(10), false, false);
        let missing = single(1, "zz", ValueRef::Integer(1), true, true);
        let missing_pass = single(1, "zz", ValueRef::Integer(1), false, true);
        let parse = |f: &pb::Filter| ReadFilter::parse(Some(&f.encode_to_vec())).unwrap();
        assert!(!parse(&gt10_latest).predicate.unwrap().matches(&refs));
        assert!(parse(&gt10_any).predicate.unwrap().matches(&refs));
        assert!(!parse(&missing).predicate.unwrap().matches(&refs));
        assert!(parse(&missing_pass).predicate.unwrap().matches(&refs));
        // Type mismatch never matches.
        let mismatch = single(2, "s", ValueRef::Integer(1), false, true);
        assert!(!parse(&mismatch).predicate.unwrap().matches(&refs));
        let not = pb::Filter {
            r#type: pb::FilterType::FtCompositeColumnValue as i32,
            filter: pb::CompositeColumnValueFilter {
                combinator: pb::LogicalOperator::LoNot as i32,
                sub_filters: vec![gt10_latest.clone()],
            }
            .encode_to_vec()
            .into(),
        };
        assert!(parse(&not).predicate.unwrap().matches(&refs));
        let and = pb::Filter {
            r#type: pb::FilterType::FtCompositeColumnValue as i32,
            filter: pb::CompositeColumnValueFilter {
                combinator: pb::LogicalOperator::LoAnd as i32,
                sub_filters: vec![gt10_any, gt10_latest],
            }
            .encode_to_vec()
            .into(),
        };
        assert!(!parse(&and).predicate.unwrap().matches(&refs));
    }

    #[test]
    fn pagination_keeps_column_window() {
        let cells = [
            cell("a", 2, Value::Integer(1)),
            cell("a", 1, Value::Integer(1)),
            cell("b", 1, Value::Integer(1)),
            cell("c", 1, Value::Integer(1)),
        ];
        let mut refs: Vec<&StoredCell> = cells.iter().collect();
        paginate_columns(&mut refs, 1, 1);
        assert_eq!(refs.len(), 1);
        assert_eq!(&*refs[0].name, "b");
    }
}
