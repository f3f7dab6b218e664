//! The PostgreSQL side of [`super::Connection`]: placeholder rewriting, a statement cache per
//! connection, and lenient conversion of values to and from the column types.

use super::{Result, SqlError, Value};
use postgres::types::{FromSql as PgFromSql, IsNull, ToSql as PgToSql, Type, to_sql_checked};
use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

type BoxError = Box<dyn StdError + Sync + Send>;

/// One PostgreSQL session with its prepared statements.
pub struct PgConnection {
    /// None only while being dropped.
    client: RefCell<Option<postgres::Client>>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
    /// Whether a transaction is open (cursors need one).
    in_transaction: std::cell::Cell<bool>,
    /// Numbers cursors so each has its own name.
    cursors: std::cell::Cell<u64>,
}

/// Rows fetched per round trip from a cursor.
const CURSOR_CHUNK: usize = 5000;

/// A server-side cursor walked a chunk at a time; closed when dropped.
pub(crate) struct Cursor<'c> {
    conn: &'c PgConnection,
    name: String,
    buffer: Vec<postgres::Row>,
    next: usize,
    done: bool,
}

impl Cursor<'_> {
    /// The next row, fetching the next chunk when the buffer is used up.
    pub(crate) fn next(&mut self) -> Result<Option<&postgres::Row>> {
        if self.next >= self.buffer.len() && !self.done {
            let fetch = format!("FETCH {CURSOR_CHUNK} FROM {}", self.name);
            self.buffer = self.conn.with_client(|c| c.query(fetch.as_str(), &[]))?;
            self.next = 0;
            self.done = self.buffer.len() < CURSOR_CHUNK;
        }
        let row = self.buffer.get(self.next);
        self.next += 1;
        Ok(row)
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        let close = format!("CLOSE {}", self.name);
        let _ = self.conn.with_client(|c| c.batch_execute(&close));
    }
}

impl PgConnection {
    /// Connects to `url` (`postgres://user@host:port/db`), failing within `connect_timeout`.
    pub(crate) fn connect(url: &str, connect_timeout: Duration) -> Result<PgConnection> {
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(connect_timeout);
        config.application_name("tidings");
        // Keepalives find a peer that vanished (a killed server, a cut link) instead of hanging.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        let client = config.connect(postgres::NoTls)?;
        Ok(PgConnection {
            client: RefCell::new(Some(client)),
            statements: RefCell::new(HashMap::new()),
            in_transaction: std::cell::Cell::new(false),
            cursors: std::cell::Cell::new(0),
        })
    }

    /// Whether the connection is known to be broken.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.borrow().as_ref().is_none_or(|c| c.is_closed())
    }

    fn with_client<R>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> std::result::Result<R, postgres::Error>,
    ) -> Result<R> {
        let mut client = self.client.borrow_mut();
        let client = client.as_mut().ok_or(SqlError::Closed)?;
        Ok(f(client)?)
    }

    /// Prepares (once per connection) the PostgreSQL form of a portable statement.
    pub(crate) fn prepare(&self, sql: &str) -> Result<postgres::Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.with_client(|c| c.prepare(&rewrite_placeholders(sql)))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs statements without arguments (and notes transactions opening and closing).
    pub(crate) fn batch_execute(&self, sql: &str) -> Result<()> {
        let outcome = self.with_client(|c| c.batch_execute(sql));
        let head = sql.trim_start().to_ascii_uppercase();
        if head.starts_with("BEGIN") {
            self.in_transaction.set(outcome.is_ok());
        } else if head.starts_with("COMMIT")
            || (head.starts_with("ROLLBACK") && !head.starts_with("ROLLBACK TO"))
        {
            self.in_transaction.set(false);
        }
        outcome
    }

    /// Whether a transaction is open on this connection.
    pub(crate) fn in_transaction(&self) -> bool {
        self.in_transaction.get()
    }

    /// Declares a cursor over a query without arguments (inside a transaction).
    pub(crate) fn open_cursor(&self, sql: &str) -> Result<Cursor<'_>> {
        let n = self.cursors.get() + 1;
        self.cursors.set(n);
        let name = format!("tidings_cursor_{n}");
        self.batch_execute(&format!(
            "DECLARE {name} NO SCROLL CURSOR FOR {}",
            rewrite_placeholders(sql)
        ))?;
        Ok(Cursor {
            conn: self,
            name,
            buffer: Vec::new(),
            next: 0,
            done: false,
        })
    }

    /// Runs a prepared statement; returns the rows changed.
    pub(crate) fn execute(
        &self,
        statement: &postgres::Statement,
        values: &[Value<'_>],
    ) -> Result<usize> {
        let args: Vec<&(dyn PgToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let changed = self.with_client(|c| c.execute(statement, &args))?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    /// Loads rows of three `BIGINT`s with binary `COPY` (`copy` names the table and its
    /// columns): the cheapest way in per row, with no conflict handling.
    pub(crate) fn copy_in_triples(&self, copy: &str, rows: &[(i64, i64, i64)]) -> Result<u64> {
        self.with_client(|c| {
            let sink = c.copy_in(&format!("COPY {copy} FROM STDIN BINARY"))?;
            let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(
                sink,
                &[Type::INT8, Type::INT8, Type::INT8],
            );
            for (a, b, c) in rows {
                writer.write(&[a, b, c])?;
            }
            writer.finish()
        })
    }

    /// Runs a prepared query; returns every row.
    pub(crate) fn query(
        &self,
        statement: &postgres::Statement,
        values: &[Value<'_>],
    ) -> Result<Vec<postgres::Row>> {
        let args: Vec<&(dyn PgToSql + Sync)> = values.iter().map(|v| v as _).collect();
        self.with_client(|c| c.query(statement, &args))
    }
}

/// Rewrites `?N` (and bare `?`) placeholders to PostgreSQL's `$N`, leaving quoted text and
/// `--` comments alone.
pub(crate) fn rewrite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut in_quote = false;
    let mut bare = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_quote = !in_quote;
                out.push(c);
            }
            '-' if !in_quote && chars.peek() == Some(&'-') => {
                // A comment runs to the end of the line, apostrophes and all.
                out.push(c);
                for rest in chars.by_ref() {
                    out.push(rest);
                    if rest == '\n' {
                        break;
                    }
                }
            }
            '?' if !in_quote => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                if digits.is_empty() {
                    bare += 1;
                    digits = bare.to_string();
                }
                out.push('$');
                out.push_str(&digits);
            }
            _ => out.push(c),
        }
    }
    out
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // Closing the synchronous client blocks on its own runtime, which panics on a thread
        // that drives async tasks (a store dropped by async code): close it on a plain thread.
        if let Some(client) = self.client.get_mut().take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            std::thread::spawn(move || drop(client));
        }
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgConnection")
    }
}

fn int_for(
    ty: &Type,
    value: i64,
    out: &mut bytes::BytesMut,
) -> std::result::Result<IsNull, BoxError> {
    match *ty {
        Type::INT8 => value.to_sql(ty, out),
        Type::INT4 => i32::try_from(value)?.to_sql(ty, out),
        Type::INT2 => i16::try_from(value)?.to_sql(ty, out),
        Type::BOOL => (value != 0).to_sql(ty, out),
        Type::FLOAT8 => (value as f64).to_sql(ty, out),
        Type::FLOAT4 => (value as f32).to_sql(ty, out),
        Type::OID => u32::try_from(value)?.to_sql(ty, out),
        _ => value.to_string().as_str().to_sql(&Type::TEXT, out),
    }
}

impl PgToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, BoxError> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => int_for(ty, i, out),
            Value::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => (if b { "true" } else { "false" }).to_sql(ty, out),
                _ => int_for(ty, i64::from(b), out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                Type::FLOAT8 => f.to_sql(ty, out),
                _ => f.to_string().as_str().to_sql(&Type::TEXT, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 | Type::INT4 | Type::INT2 => int_for(ty, s.parse::<i64>()?, out),
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => {
                    // TEXT, VARCHAR, JSON, UNKNOWN: the text as it is.
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
            },
            Value::Blob(b) => b.to_sql(&Type::BYTEA, out),
            Value::Ints(list) => list.to_sql(&Type::INT8_ARRAY, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One column of a PostgreSQL row, undecoded: its type and its bytes (None for NULL).
pub struct RawColumn<'a> {
    ty: Type,
    raw: Option<&'a [u8]>,
}

impl<'a> PgFromSql<'a> for RawColumn<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        Ok(RawColumn {
            ty: ty.clone(),
            raw: Some(raw),
        })
    }
    fn from_sql_null(ty: &Type) -> std::result::Result<Self, BoxError> {
        Ok(RawColumn {
            ty: ty.clone(),
            raw: None,
        })
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn decode(column: usize, e: impl std::fmt::Display) -> SqlError {
    SqlError::Decode {
        column,
        message: e.to_string(),
    }
}

impl<'a> RawColumn<'a> {
    /// Reads column `column` of `row` without decoding it.
    pub(crate) fn read(row: &'a postgres::Row, column: usize) -> Result<RawColumn<'a>> {
        Ok(row.try_get::<_, RawColumn<'a>>(column)?)
    }

    /// Whether the column is NULL.
    pub(crate) fn is_null(&self) -> bool {
        self.raw.is_none()
    }

    fn bytes_or_null(&self, column: usize) -> Result<&'a [u8]> {
        self.raw.ok_or_else(|| decode(column, "unexpected NULL"))
    }

    /// The column as an integer (booleans as 0/1).
    pub(crate) fn integer(&self, column: usize) -> Result<i64> {
        let raw = self.bytes_or_null(column)?;
        match self.ty {
            Type::INT8 => i64::from_sql(&self.ty, raw).map_err(|e| decode(column, e)),
            Type::INT4 => i32::from_sql(&self.ty, raw)
                .map(i64::from)
                .map_err(|e| decode(column, e)),
            Type::INT2 => i16::from_sql(&self.ty, raw)
                .map(i64::from)
                .map_err(|e| decode(column, e)),
            Type::BOOL => bool::from_sql(&self.ty, raw)
                .map(i64::from)
                .map_err(|e| decode(column, e)),
            Type::OID => u32::from_sql(&self.ty, raw)
                .map(i64::from)
                .map_err(|e| decode(column, e)),
            Type::TEXT | Type::VARCHAR => std::str::from_utf8(raw)
                .map_err(|e| decode(column, e))?
                .trim()
                .parse()
                .map_err(|e| decode(column, e)),
            ref other => Err(decode(column, format!("{other} is not an integer"))),
        }
    }

    /// The column as a float.
    pub(crate) fn real(&self, column: usize) -> Result<f64> {
        let raw = self.bytes_or_null(column)?;
        match self.ty {
            Type::FLOAT8 => f64::from_sql(&self.ty, raw).map_err(|e| decode(column, e)),
            Type::FLOAT4 => f32::from_sql(&self.ty, raw)
                .map(f64::from)
                .map_err(|e| decode(column, e)),
            _ => self.integer(column).map(|i| i as f64),
        }
    }

    /// The column as text (integers formatted).
    pub(crate) fn text(&self, column: usize) -> Result<String> {
        let raw = self.bytes_or_null(column)?;
        match self.ty {
            Type::JSONB => {
                let body = raw.get(1..).unwrap_or_default();
                String::from_utf8(body.to_vec()).map_err(|e| decode(column, e))
            }
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL => {
                self.integer(column).map(|i| i.to_string())
            }
            _ => String::from_utf8(raw.to_vec()).map_err(|e| decode(column, e)),
        }
    }

    /// The column as the closest owned value (integers and booleans as integers).
    pub(crate) fn owned(&self, column: usize) -> Result<super::OwnedValue> {
        use super::OwnedValue;
        Ok(match self.ty {
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::OID => {
                OwnedValue::Integer(self.integer(column)?)
            }
            Type::FLOAT8 | Type::FLOAT4 => OwnedValue::Real(self.real(column)?),
            _ => OwnedValue::Text(self.text(column)?),
        })
    }

    /// The column's bytes.
    pub(crate) fn bytes(&self, column: usize) -> Result<Vec<u8>> {
        Ok(self.bytes_or_null(column)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_placeholders;

    #[test]
    fn comments_are_left_alone() {
        assert_eq!(
            rewrite_placeholders("SELECT ?1 -- the author's ?2\nFROM t WHERE a = ?3"),
            "SELECT $1 -- the author's ?2\nFROM t WHERE a = $3"
        );
    }

    #[test]
    fn placeholders_become_dollar_numbers_outside_quotes() {
        assert_eq!(
            rewrite_placeholders("SELECT ?1, ?12 FROM t WHERE a = '?2' AND b = ?"),
            "SELECT $1, $12 FROM t WHERE a = '?2' AND b = $1"
        );
    }
}
