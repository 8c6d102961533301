//! One module per table of the control plane's data (or per family of
//! tables that change together): the only place that writes it. Each module
//! reads its rows by column name (`try_get`) into a typed row, and every
//! write of an audited table records its audit entry on the same
//! transaction (`audit::record`), with the row before and after.
//!
//! The HTTP handlers, the `admin` command, `bootstrap` and the budget
//! evaluator call these functions; none writes SQL against these tables
//! itself (`tests/ownership.rs` in the control plane checks it).

pub mod alerts;
pub mod audit;
pub mod budgets;
pub mod invitations;
pub mod keys;
pub mod limits;
pub mod members;
pub mod orgs;
pub mod projects;
pub mod sessions;

use uuid::Uuid;

/// Why a table function failed: the database refused (a constraint names
/// the field), or a row holds what the schema cannot (a bug, never the
/// caller's fault).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("column {column} holds {value:?}, which is not a valid value")]
    Invalid { column: &'static str, value: String },
}

impl DbError {
    /// The database's own error, when it refused (its constraint, if any).
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            DbError::Postgres(e) => Some(e),
            DbError::Invalid { .. } => None,
        }
    }

    /// The constraint that refused, if one did.
    pub fn constraint(&self) -> Option<&str> {
        self.as_postgres()?.as_db_error()?.constraint()
    }
}

/// Who made a change: a person (through the API, or `bootstrap`) or the
/// system (the `admin` command, the budget evaluator: no actor).
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub org_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

impl Actor {
    pub fn person(org_id: Uuid, user_id: Uuid) -> Actor {
        Actor {
            org_id: Some(org_id),
            user_id: Some(user_id),
        }
    }

    pub fn system(org_id: Uuid) -> Actor {
        Actor {
            org_id: Some(org_id),
            user_id: None,
        }
    }
}

/// A SQL expression for a timestamp column as RFC 3339 UTC text with
/// milliseconds (what every answer shows).
#[macro_export]
macro_rules! rfc3339 {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}

/// An enum column read as text and parsed.
pub(crate) fn parsed<T>(
    row: &tokio_postgres::Row,
    column: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, DbError> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or(DbError::Invalid {
        column,
        value: text,
    })
}
