//! One SQL connection type over both engines, so the domain code of the store is written once.
//!
//! The store's operations (publish, route, join a circle, …) are plain synchronous functions
//! over a [`Connection`]. Its surface is the small part of rusqlite's API they use
//! (`prepare_cached`, `query_row`, `query_map`, `execute`, `optional`), backed either by an
//! embedded SQLite connection or by a PostgreSQL client. Statements are written once, in the
//! portable subset of SQL both engines accept (`?N` placeholders, `ON CONFLICT DO NOTHING`,
//! `RETURNING`, truthy boolean columns); the PostgreSQL side rewrites `?N` to `$N` and caches the
//! prepared statement per connection. The few statements that cannot be portable branch on
//! [`Connection::engine`].
//!
//! Values cross the boundary as [`Value`]s, converted to whatever type the column has: a Rust
//! `bool` written to PostgreSQL `BOOLEAN` or SQLite `INTEGER`, an `i64` read from `BIGINT`,
//! `INTEGER` or `BOOLEAN`. That leniency is what lets one statement serve both engines.

mod postgres_conn;

pub(crate) use postgres_conn::PgConnection;

use std::fmt;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The embedded SQLite database.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A failure of either engine, or of decoding what it returned.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The embedded database failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (or the connection to it).
    #[error("postgres: {}", describe_pg(.0))]
    Postgres(#[from] postgres::Error),
    /// A query expected a row and got none.
    #[error("query returned no rows")]
    NoRows,
    /// The connection was closed.
    #[error("the connection is closed")]
    Closed,
    /// A column could not be decoded into the asked type.
    #[error("cannot decode column {column}: {message}")]
    Decode {
        /// Column index.
        column: usize,
        /// What went wrong.
        message: String,
    },
}

impl SqlError {
    /// True when PostgreSQL is unreachable or the connection broke (the caller may retry).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            SqlError::Postgres(e) => {
                // Class 08 (connection exception), 57 (operator intervention: the server is
                // shutting down, restarting or terminated this session), and "too many clients".
                let code = e.code().map(|c| c.code()).unwrap_or("");
                e.is_closed()
                    || e.as_db_error().is_none()
                    || code.starts_with("08")
                    || code.starts_with("57")
                    || code == "53300"
            }
            SqlError::Closed => true,
            _ => false,
        }
    }

    /// The SQLSTATE of a PostgreSQL error, if any.
    pub fn pg_code(&self) -> Option<&str> {
        match self {
            SqlError::Postgres(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }
}

/// A PostgreSQL error with the server's message and SQLSTATE, which `Display` alone omits.
fn describe_pg(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Result of a SQL call.
pub type Result<T> = std::result::Result<T, SqlError>;

/// Turns "no rows" into `None`, like rusqlite's extension of the same name.
pub(crate) trait OptionalExtension<T> {
    /// `Ok(None)` when the query found no row.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(SqlError::NoRows) | Err(SqlError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// SQL NULL.
    Null,
    /// Any integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
    /// A boolean (an integer 0/1 in SQLite).
    Bool(bool),
    /// An array of integers (PostgreSQL only: `unnest(?1)` turns one statement into many rows).
    Ints(&'a [i64]),
}

/// An owned [`Value`], for argument lists built at run time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OwnedValue {
    /// SQL NULL.
    Null,
    /// Any integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
}

/// Something that can be bound to a placeholder.
pub(crate) trait ToSql {
    /// The value to bind.
    fn value(&self) -> Value<'_>;
}

macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn value(&self) -> Value<'_> {
                Value::Integer(*self as i64)
            }
        }
    )*};
}
int_to_sql!(i64, i32, i16, u8, u16, u32);

impl ToSql for usize {
    fn value(&self) -> Value<'_> {
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToSql for bool {
    fn value(&self) -> Value<'_> {
        Value::Bool(*self)
    }
}
impl ToSql for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
impl ToSql for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToSql for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToSql for std::sync::Arc<str> {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToSql for [i64] {
    fn value(&self) -> Value<'_> {
        Value::Ints(self)
    }
}
impl ToSql for Vec<i64> {
    fn value(&self) -> Value<'_> {
        Value::Ints(self)
    }
}
impl ToSql for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<T: ToSql + ?Sized> ToSql for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}
impl<T: ToSql> ToSql for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}
impl ToSql for OwnedValue {
    fn value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::Integer(i) => Value::Integer(*i),
            OwnedValue::Real(f) => Value::Real(*f),
            OwnedValue::Text(s) => Value::Text(s),
        }
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(i),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
            Value::Bool(b) => ValueRef::Integer(i64::from(b)),
            // SQLite has no arrays: a list travels as JSON text, read with `json_each`
            // (see `Connection::in_id_list`).
            Value::Ints(list) => {
                let json = serde_json::to_string(list)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                return Ok(ToSqlOutput::Owned(rusqlite::types::Value::Text(json)));
            }
        }))
    }
}

/// A statement's arguments.
pub(crate) trait Params {
    /// The values, in placeholder order.
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.value()).collect()
    }
}
impl<const N: usize> Params for &[&dyn ToSql; N] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.value()).collect()
    }
}
impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Vec<Value<'_>> {
                self.iter().map(|p| p.value()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// Arguments from an iterator of owned values (lists built at run time).
pub(crate) struct ParamsFromIter(Vec<OwnedValue>);

impl Params for ParamsFromIter {
    fn values(&self) -> Vec<Value<'_>> {
        self.0.iter().map(|v| v.value()).collect()
    }
}

/// Binds each value of `iter` in order.
pub(crate) fn params_from_iter(iter: impl IntoIterator<Item = OwnedValue>) -> ParamsFromIter {
    ParamsFromIter(iter.into_iter().collect())
}

/// `params![a, b, c]`: a statement's arguments of mixed types.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::sql::ToSql]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::sql::ToSql),+] as &[&dyn $crate::sql::ToSql]
    };
}
pub(crate) use params;

/// A column type the domain code reads.
pub(crate) trait FromSql: Sized {
    /// Decodes a SQLite value.
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self>;
    /// Decodes a PostgreSQL column.
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self>;
}

fn decode_error(column: usize, message: impl fmt::Display) -> SqlError {
    SqlError::Decode {
        column,
        message: message.to_string(),
    }
}

impl FromSql for i64 {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        value.as_i64().map_err(|e| decode_error(column, e))
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        value.integer(column)
    }
}

macro_rules! narrow_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
                let wide = i64::from_sqlite(value, column)?;
                <$t>::try_from(wide).map_err(|e| decode_error(column, e))
            }
            fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
                let wide = value.integer(column)?;
                <$t>::try_from(wide).map_err(|e| decode_error(column, e))
            }
        }
    )*};
}
narrow_from_sql!(i32, u8, u16, u32, u64, usize);

impl FromSql for bool {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        Ok(value.as_i64().map_err(|e| decode_error(column, e))? != 0)
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        Ok(value.integer(column)? != 0)
    }
}

impl FromSql for f64 {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        match value {
            rusqlite::types::ValueRef::Integer(i) => Ok(i as f64),
            other => other.as_f64().map_err(|e| decode_error(column, e)),
        }
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        value.real(column)
    }
}

impl FromSql for String {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        match value {
            rusqlite::types::ValueRef::Integer(i) => Ok(i.to_string()),
            other => other
                .as_str()
                .map(str::to_owned)
                .map_err(|e| decode_error(column, e)),
        }
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        value.text(column)
    }
}

impl FromSql for std::sync::Arc<str> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        String::from_sqlite(value, column).map(std::sync::Arc::from)
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        value.text(column).map(std::sync::Arc::from)
    }
}

impl FromSql for Vec<u8> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        match value {
            rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                Ok(b.to_vec())
            }
            _ => Err(decode_error(column, "not bytes")),
        }
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        value.bytes(column)
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            other => T::from_sqlite(other, column).map(Some),
        }
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        if value.is_null() {
            Ok(None)
        } else {
            T::from_pg(value, column).map(Some)
        }
    }
}

impl FromSql for OwnedValue {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>, column: usize) -> Result<Self> {
        use rusqlite::types::ValueRef;
        Ok(match value {
            ValueRef::Null => OwnedValue::Null,
            ValueRef::Integer(i) => OwnedValue::Integer(i),
            ValueRef::Real(f) => OwnedValue::Real(f),
            ValueRef::Text(t) => OwnedValue::Text(
                std::str::from_utf8(t)
                    .map_err(|e| decode_error(column, e))?
                    .to_owned(),
            ),
            ValueRef::Blob(_) => return Err(decode_error(column, "blobs are not stored")),
        })
    }
    fn from_pg(value: postgres_conn::RawColumn<'_>, column: usize) -> Result<Self> {
        if value.is_null() {
            return Ok(OwnedValue::Null);
        }
        value.owned(column)
    }
}

/// A column position (only numbers: the domain code reads columns by position).
pub(crate) trait RowIndex {
    /// The zero-based position.
    fn position(self) -> usize;
}
impl RowIndex for usize {
    fn position(self) -> usize {
        self
    }
}

/// One result row of either engine.
pub(crate) enum Row<'r> {
    /// A SQLite row.
    Sqlite(&'r rusqlite::Row<'r>),
    /// A PostgreSQL row.
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    /// The value of column `index` as a `T`.
    pub(crate) fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let column = index.position();
        match self {
            Row::Sqlite(row) => T::from_sqlite(row.get_ref(column)?, column),
            Row::Pg(row) => T::from_pg(postgres_conn::RawColumn::read(row, column)?, column),
        }
    }
}

/// A database connection of either engine.
pub enum Connection {
    /// The embedded database.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL session (boxed: it is three times the size of a SQLite handle).
    Postgres(Box<PgConnection>),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection({:?})", self.engine())
    }
}

impl Connection {
    /// Which engine this connection talks to.
    pub fn engine(&self) -> Engine {
        match self {
            Connection::Sqlite(_) => Engine::Sqlite,
            Connection::Postgres(_) => Engine::Postgres,
        }
    }

    /// `IN` the list of integers bound to placeholder `n` (a [`Value::Ints`]), in this
    /// engine's words: one statement looks up a whole set by index instead of one per item.
    pub(crate) fn in_id_list(&self, n: usize) -> String {
        match self {
            Connection::Sqlite(_) => format!("IN (SELECT value FROM json_each(?{n}))"),
            Connection::Postgres(_) => format!("= ANY(CAST(?{n} AS BIGINT[]))"),
        }
    }

    /// Loads rows of three integers into `copy` (a table and its columns) with PostgreSQL's
    /// binary `COPY`; the embedded store has no such path (its callers insert row by row).
    pub(crate) fn copy_in_triples(&self, copy: &str, rows: &[(i64, i64, i64)]) -> Result<u64> {
        match self {
            Connection::Postgres(c) => c.copy_in_triples(copy, rows),
            Connection::Sqlite(_) => Err(SqlError::Decode {
                column: 0,
                message: "COPY is PostgreSQL's".into(),
            }),
        }
    }

    /// Prepares `sql`, reusing a cached statement when there is one.
    pub(crate) fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => Ok(Statement::Sqlite(c.prepare_cached(sql)?)),
            Connection::Postgres(c) => Ok(Statement::Pg {
                statement: c.prepare(sql)?,
                conn: c,
                sql: sql.to_owned(),
            }),
        }
    }

    /// Prepares `sql` (same as [`Connection::prepare_cached`] on PostgreSQL).
    pub(crate) fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare_cached(sql)
    }

    /// Runs several statements without arguments (DDL, transaction control).
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Connection::Postgres(c) => c.batch_execute(sql),
        }
    }

    /// Runs one statement; returns the number of rows changed.
    pub(crate) fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Runs a query that must return a row and maps it.
    pub(crate) fn query_row<P, T, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// A prepared statement of either engine.
pub(crate) enum Statement<'c> {
    /// A cached SQLite statement.
    Sqlite(rusqlite::CachedStatement<'c>),
    /// A PostgreSQL statement and the connection it belongs to.
    Pg {
        /// The prepared statement.
        statement: postgres::Statement,
        /// Its connection.
        conn: &'c PgConnection,
        /// Its portable text (a cursor is declared over it).
        sql: String,
    },
}

fn bind_sqlite(stmt: &mut rusqlite::Statement<'_>, values: &[Value<'_>]) -> Result<()> {
    for (i, value) in values.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, value)?;
    }
    Ok(())
}

impl Statement<'_> {
    /// Runs the statement; returns the number of rows changed.
    pub(crate) fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values();
        match self {
            Statement::Sqlite(stmt) => {
                bind_sqlite(stmt, &values)?;
                Ok(stmt.raw_execute()?)
            }
            Statement::Pg {
                statement, conn, ..
            } => conn.execute(statement, &values),
        }
    }

    /// Runs a query that must return a row and maps its first row.
    pub(crate) fn query_row<P, T, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let values = params.values();
        match self {
            Statement::Sqlite(stmt) => {
                bind_sqlite(stmt, &values)?;
                let mut rows = stmt.raw_query();
                match rows.next()? {
                    Some(row) => f(&Row::Sqlite(row)),
                    None => Err(SqlError::NoRows),
                }
            }
            Statement::Pg {
                statement, conn, ..
            } => {
                let rows = conn.query(statement, &values)?;
                match rows.first() {
                    Some(row) => f(&Row::Pg(row)),
                    None => Err(SqlError::NoRows),
                }
            }
        }
    }

    /// Runs a query and maps every row (collected; callers gather them anyway).
    pub(crate) fn query_map<P, T, F>(&mut self, params: P, mut f: F) -> Result<Mapped<T>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        let values = params.values();
        let mut out = Vec::new();
        match self {
            Statement::Sqlite(stmt) => {
                bind_sqlite(stmt, &values)?;
                let mut rows = stmt.raw_query();
                while let Some(row) = rows.next()? {
                    out.push(f(&Row::Sqlite(row)));
                }
            }
            Statement::Pg {
                statement, conn, ..
            } => {
                for row in conn.query(statement, &values)? {
                    out.push(f(&Row::Pg(&row)));
                }
            }
        }
        Ok(Mapped(out.into_iter()))
    }

    /// Runs a query and walks its rows one at a time.
    pub(crate) fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let values = params.values();
        match self {
            Statement::Sqlite(stmt) => {
                bind_sqlite(stmt, &values)?;
                Ok(Rows::Sqlite(stmt.raw_query()))
            }
            Statement::Pg {
                statement,
                conn,
                sql,
            } => {
                // A whole table (the index loading at start-up, verify, copy) is read through
                // a server-side cursor a few thousand rows at a time, not into memory at once.
                if values.is_empty() && conn.in_transaction() {
                    return Ok(Rows::PgCursor(conn.open_cursor(sql)?));
                }
                Ok(Rows::Pg {
                    rows: conn.query(statement, &values)?,
                    next: 0,
                })
            }
        }
    }
}

/// Mapped rows of a query, each its own result (as rusqlite's `query_map` yields them).
pub(crate) struct Mapped<T>(std::vec::IntoIter<Result<T>>);

impl<T> Iterator for Mapped<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

/// Rows of a query, walked with [`Rows::next`].
pub(crate) enum Rows<'s> {
    /// SQLite rows, read as they are stepped.
    Sqlite(rusqlite::Rows<'s>),
    /// PostgreSQL rows, fetched whole.
    Pg {
        /// The rows.
        rows: Vec<postgres::Row>,
        /// The next one to hand out.
        next: usize,
    },
    /// PostgreSQL rows fetched in chunks from a cursor.
    PgCursor(postgres_conn::Cursor<'s>),
}

impl Rows<'_> {
    /// The next row, or None at the end.
    pub(crate) fn next(&mut self) -> Result<Option<Row<'_>>> {
        match self {
            Rows::Sqlite(rows) => Ok(rows.next()?.map(Row::Sqlite)),
            Rows::Pg { rows, next } => {
                let row = rows.get(*next);
                *next += 1;
                Ok(row.map(Row::Pg))
            }
            Rows::PgCursor(cursor) => Ok(cursor.next()?.map(Row::Pg)),
        }
    }
}
