//! Topic filters: the content-routing language of the integration bus, parsed and matched
//! without IO.
//!
//! A filter is a boolean expression over one activity:
//! - `tag@circle` terms (`release@eng`, `urgent@*`, `*@ops`), as inbox subscriptions write them;
//! - fields: `type`, `object_type`, `author`, `tag`, `circle` compared with `==`, `!=` or `=~`
//!   (a regex), e.g. `type == Create`, `author == "billing"`;
//! - RFC 9535 JSONPath predicates on the stored activity: `$.object.amount > 100`,
//!   `$.object.status == "paid"`, `$.object.sku =~ "^A-"`, `exists $.object.coupon` (a path
//!   that selects several nodes matches when any of them does);
//! - combined with `and`, `or`, `not` and parentheses (`and` binds tighter than `or`).
//!
//! Errors carry the 0-based character position where the filter went wrong.
//!
//! [`TopicIndex`] indexes many filters by the activity types, object types, authors, tags and
//! circles they require, so a new activity evaluates only the filters that could match it.

use crate::expr::{Pattern, SubscriptionExpr};
use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;
use std::collections::HashMap;
use std::fmt;

/// Longest filter text accepted, in characters.
pub const MAX_FILTER_CHARS: usize = 4096;
/// Deepest nesting of parentheses and `not` accepted.
const MAX_DEPTH: usize = 32;

/// Why a filter was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct FilterError {
    /// 0-based character index into the filter text.
    pub position: usize,
    /// What is wrong there.
    pub message: String,
}

fn err(position: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        position,
        message: message.into(),
    }
}

/// A field of the activity a filter can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The activity type (`Create`, `Like`, a custom type).
    Type,
    /// The object's `type`, when the object is embedded.
    ObjectType,
    /// The author's username (`ana` for `user:ana`).
    Author,
    /// Any of the activity's tags (user and system tags).
    Tag,
    /// Any circle the activity is addressed to.
    Circle,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// What a predicate tests a value with.
#[derive(Debug, Clone)]
pub enum Test {
    /// Compares with a JSON literal (ordering only between numbers).
    Compare(CmpOp, Value),
    /// Matches a string against a regex.
    Regex(Regex),
}

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Both sides.
    And(Vec<Expr>),
    /// Either side.
    Or(Vec<Expr>),
    /// The opposite.
    Not(Box<Expr>),
    /// A `tag@circle` term.
    TagCircle(SubscriptionExpr),
    /// A field test.
    Field(Field, Test),
    /// A JSONPath test: true when any selected node passes.
    Path(Selector, Test),
    /// True when the JSONPath selects at least one node.
    Exists(Selector),
}

/// A parsed JSONPath. Paths of plain member names (`$.object.amount`) are walked directly:
/// the same nodes as the general query, without its allocations (most filters are of this
/// kind, and routing evaluates them for every activity).
#[derive(Debug, Clone)]
pub enum Selector {
    /// `$.a.b.c`: member names only.
    Members(Vec<String>),
    /// Any other RFC 9535 query.
    Query(JsonPath),
}

impl Selector {
    /// Calls `f` on each selected node until it returns true; whether it did.
    fn any(&self, record: &Value, f: impl Fn(&Value) -> bool) -> bool {
        match self {
            Selector::Members(names) => {
                let mut node = record;
                for name in names {
                    match node.get(name) {
                        Some(next) => node = next,
                        None => return false,
                    }
                }
                f(node)
            }
            Selector::Query(path) => path.query(record).all().into_iter().any(f),
        }
    }
}

/// A parsed filter and the text it came from.
#[derive(Debug, Clone)]
pub struct Filter {
    source: String,
    expr: Expr,
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Filter {
    /// Parses a filter; the error says where it went wrong.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() > MAX_FILTER_CHARS {
            return Err(err(
                MAX_FILTER_CHARS,
                format!("a filter is at most {MAX_FILTER_CHARS} characters"),
            ));
        }
        let tokens = lex(&chars)?;
        if tokens.is_empty() {
            return Err(err(0, "the filter is empty"));
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            end: chars.len(),
            depth: 0,
        };
        let expr = parser.or()?;
        if let Some(extra) = parser.tokens.get(parser.at) {
            return Err(err(
                extra.pos,
                "expected 'and', 'or' or the end of the filter",
            ));
        }
        Ok(Filter {
            source: text.trim().to_owned(),
            expr,
        })
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the activity described by `facts` passes this filter.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        eval(&self.expr, facts)
    }
}

/// What a filter looks at in one activity: its stored record and the facts read off it.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The stored activity record (what JSONPath predicates read).
    pub record: &'a Value,
    /// The activity type.
    pub activity_type: &'a str,
    /// The embedded object's type, if any.
    pub object_type: Option<&'a str>,
    /// The author's username.
    pub author: &'a str,
    /// Tags, user and system.
    pub tags: Vec<&'a str>,
    /// Circles it is addressed to.
    pub circles: Vec<&'a str>,
    /// Topics it is addressed to (`topic:NAME` in `to`).
    pub topics: Vec<&'a str>,
}

impl<'a> Facts<'a> {
    /// Reads the facts off a stored activity record.
    pub fn of(record: &'a Value) -> Facts<'a> {
        let text = |v: Option<&'a Value>| v.and_then(Value::as_str);
        let strings = |key: &str| -> Vec<&'a str> {
            record
                .get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        let to = strings("to");
        Facts {
            record,
            activity_type: text(record.get("type")).unwrap_or(""),
            object_type: text(record.get("object").and_then(|o| o.get("type"))),
            author: text(record.get("actor"))
                .map(|a| a.strip_prefix("user:").unwrap_or(a))
                .unwrap_or(""),
            tags: strings("tag"),
            circles: to
                .iter()
                .filter_map(|t| t.strip_prefix("circle:"))
                .collect(),
            topics: to.iter().filter_map(|t| t.strip_prefix("topic:")).collect(),
        }
    }
}

fn eval(expr: &Expr, facts: &Facts<'_>) -> bool {
    match expr {
        Expr::And(all) => all.iter().all(|e| eval(e, facts)),
        Expr::Or(any) => any.iter().any(|e| eval(e, facts)),
        Expr::Not(inner) => !eval(inner, facts),
        Expr::TagCircle(sub) => {
            let tag_ok = match &sub.tag {
                Pattern::Any => true,
                Pattern::Exact(t) => facts.tags.iter().any(|x| x == t),
            };
            let circle_ok = match &sub.circle {
                Pattern::Any => true,
                Pattern::Exact(c) => facts.circles.iter().any(|x| x == c),
            };
            tag_ok && circle_ok
        }
        Expr::Field(field, test) => {
            let values: Vec<&str> = match field {
                Field::Type => vec![facts.activity_type],
                Field::ObjectType => facts.object_type.into_iter().collect(),
                Field::Author => vec![facts.author],
                Field::Tag => facts.tags.clone(),
                Field::Circle => facts.circles.clone(),
            };
            match test {
                // `!=` on a many-valued field means "none of them is".
                Test::Compare(CmpOp::Ne, want) => !values.iter().any(|v| want.as_str() == Some(v)),
                _ => values
                    .iter()
                    .any(|v| passes(test, &Value::String((*v).to_owned()))),
            }
        }
        Expr::Path(path, test) => path.any(facts.record, |v| passes(test, v)),
        Expr::Exists(path) => path.any(facts.record, |_| true),
    }
}

fn passes(test: &Test, value: &Value) -> bool {
    match test {
        Test::Regex(re) => value.as_str().is_some_and(|s| re.is_match(s)),
        Test::Compare(op, want) => match op {
            CmpOp::Eq => json_eq(value, want),
            CmpOp::Ne => !json_eq(value, want),
            _ => match (value.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => match op {
                    CmpOp::Lt => a < b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    CmpOp::Ge => a >= b,
                    _ => false,
                },
                _ => false,
            },
        },
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Op(&'static str),
    /// A word: keyword, field, bare value or `tag@circle`.
    Word(String),
    /// A JSON literal (string, number).
    Literal(Value),
    /// A JSONPath, starting with `$`.
    Path(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '*' | '#')
}

fn lex(chars: &[char]) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let op = match (c, next) {
                    ('=', Some('=')) => "==",
                    ('=', Some('~')) => "=~",
                    ('!', Some('=')) => "!=",
                    ('<', Some('=')) => "<=",
                    ('>', Some('=')) => ">=",
                    ('<', _) => "<",
                    ('>', _) => ">",
                    _ => return Err(err(i, "expected one of == != =~ < <= > >=")),
                };
                i += op.len();
                Tok::Op(op)
            }
            '"' => {
                let mut j = i + 1;
                let mut closed = false;
                while j < chars.len() {
                    match chars[j] {
                        '\\' => j += 2,
                        '"' => {
                            closed = true;
                            break;
                        }
                        _ => j += 1,
                    }
                }
                if !closed {
                    return Err(err(i, "unterminated string"));
                }
                let raw: String = chars[i..=j].iter().collect();
                let value: Value = serde_json::from_str(&raw)
                    .map_err(|e| err(i, format!("bad string literal: {e}")))?;
                i = j + 1;
                Tok::Literal(value)
            }
            '$' => {
                // A path runs to whitespace, an operator or a closing parenthesis outside its
                // brackets and quotes.
                let mut j = i;
                let mut depth = 0usize;
                let mut quote: Option<char> = None;
                while j < chars.len() {
                    let d = chars[j];
                    match quote {
                        Some(q) => {
                            if d == '\\' {
                                j += 1;
                            } else if d == q {
                                quote = None;
                            }
                        }
                        None => match d {
                            '\'' | '"' => quote = Some(d),
                            '[' | '(' => depth += 1,
                            ']' if depth > 0 => depth -= 1,
                            ')' if depth > 0 => depth -= 1,
                            ')' => break,
                            c if depth == 0
                                && (c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>')) =>
                            {
                                break;
                            }
                            _ => {}
                        },
                    }
                    j += 1;
                }
                let path: String = chars[i..j.min(chars.len())].iter().collect();
                i = j;
                Tok::Path(path)
            }
            c if c == '-' || c.is_ascii_digit() => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || matches!(chars[j], '.' | '-' | '+' | '_' | ':' | '@' | '*'))
                {
                    j += 1;
                }
                let raw: String = chars[i..j].iter().collect();
                i = j;
                match raw.parse::<f64>() {
                    Ok(_) => serde_json::from_str::<Value>(&raw)
                        .ok()
                        .filter(Value::is_number)
                        .map(Tok::Literal)
                        .unwrap_or(Tok::Word(raw)),
                    Err(_) => Tok::Word(raw),
                }
            }
            c if is_word_char(c) => {
                let mut j = i;
                while j < chars.len() && is_word_char(chars[j]) {
                    j += 1;
                }
                let raw: String = chars[i..j].iter().collect();
                i = j;
                Tok::Word(raw)
            }
            other => return Err(err(i, format!("unexpected character {other:?}"))),
        };
        tokens.push(Token { tok, pos: start });
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Position reported for "unexpected end".
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self, wanted: &str) -> Result<Token, FilterError> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| err(self.end, format!("expected {wanted}, found the end")))?;
        self.at += 1;
        Ok(token)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.unary()?];
        while self.keyword("and") {
            self.at += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let token = self.next("a term")?;
        if self.depth >= MAX_DEPTH {
            return Err(err(token.pos, "the filter nests too deeply"));
        }
        match token.tok {
            Tok::LParen => {
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                let close = self.next("')'")?;
                if close.tok != Tok::RParen {
                    return Err(err(close.pos, "expected ')'"));
                }
                Ok(inner)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                self.depth += 1;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("exists") => {
                let path = self.next("a JSONPath after 'exists'")?;
                match path.tok {
                    Tok::Path(p) => Ok(Expr::Exists(json_path(&p, path.pos)?)),
                    _ => Err(err(path.pos, "expected a JSONPath (starting with $)")),
                }
            }
            Tok::Path(p) => {
                let path = json_path(&p, token.pos)?;
                let test = self.test(true)?;
                Ok(Expr::Path(path, test))
            }
            Tok::Word(w) => {
                let field = match w.to_ascii_lowercase().as_str() {
                    "type" => Some(Field::Type),
                    "object_type" => Some(Field::ObjectType),
                    "author" => Some(Field::Author),
                    "tag" => Some(Field::Tag),
                    "circle" => Some(Field::Circle),
                    _ => None,
                };
                match field {
                    Some(field)
                        if matches!(
                            self.peek(),
                            Some(Token {
                                tok: Tok::Op(_),
                                ..
                            })
                        ) =>
                    {
                        Ok(Expr::Field(field, self.test(false)?))
                    }
                    _ if w.contains('@') => crate::expr::parse(&w)
                        .map(Expr::TagCircle)
                        .map_err(|e| err(token.pos + e.position, e.message)),
                    Some(_) => Err(err(
                        self.peek().map_or(self.end, |t| t.pos),
                        "expected == != or =~ after the field",
                    )),
                    None => Err(err(
                        token.pos,
                        format!(
                            "unknown term {w:?}: expected tag@circle, a field (type, \
                             object_type, author, tag, circle), a JSONPath ($…), exists, not \
                             or '('"
                        ),
                    )),
                }
            }
            Tok::RParen => Err(err(token.pos, "unexpected ')'")),
            Tok::Op(_) | Tok::Literal(_) => Err(err(token.pos, "expected a term")),
        }
    }

    /// An operator and its operand; `ordered` allows `< <= > >=` (JSONPath only).
    fn test(&mut self, ordered: bool) -> Result<Test, FilterError> {
        let op = self.next("an operator")?;
        let Tok::Op(symbol) = op.tok else {
            return Err(err(op.pos, "expected one of == != =~ < <= > >="));
        };
        let operand = self.next("a value")?;
        let value = match operand.tok {
            Tok::Literal(v) => v,
            Tok::Word(w) => match w.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(w),
            },
            _ => {
                return Err(err(
                    operand.pos,
                    "expected a value (a string, number, true, false or null)",
                ));
            }
        };
        let cmp = match symbol {
            "=~" => {
                let Value::String(pattern) = value else {
                    return Err(err(operand.pos, "=~ takes a regex in a string"));
                };
                let re = regex::RegexBuilder::new(&pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| err(operand.pos, format!("bad regex: {e}")))?;
                return Ok(Test::Regex(re));
            }
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            _ => CmpOp::Ge,
        };
        if !matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
            if !ordered {
                return Err(err(op.pos, "fields compare with == != or =~"));
            }
            if !value.is_number() {
                return Err(err(operand.pos, "< <= > >= compare with a number"));
            }
        }
        if !ordered && !value.is_string() {
            return Err(err(operand.pos, "fields compare with a string"));
        }
        Ok(Test::Compare(cmp, value))
    }
}

fn json_path(text: &str, pos: usize) -> Result<Selector, FilterError> {
    let query = JsonPath::parse(text).map_err(|e| {
        // The crate counts bytes; report characters like everything else here.
        let offset = text
            .char_indices()
            .take_while(|(b, _)| *b < e.position())
            .count();
        err(pos + offset, format!("bad JSONPath: {}", e.message()))
    })?;
    // Checked by the real parser first, so both forms accept exactly the same texts.
    let plain = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match text.strip_prefix("$.") {
        Some(rest) if rest.split('.').all(plain) => Ok(Selector::Members(
            rest.split('.').map(str::to_owned).collect(),
        )),
        _ => Ok(Selector::Query(query)),
    }
}

/// What kind of value an index key is; its position in [`TopicIndex`]'s maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Type = 0,
    ObjectType = 1,
    Author = 2,
    Tag = 3,
    Circle = 4,
}

/// One key an index files a filter under: a value an activity must carry for it to match.
type Key = (KeyKind, String);

/// Keys of which a matching activity carries at least one; None when the filter can match
/// without any (it must be evaluated for every activity).
fn anchors(expr: &Expr) -> Option<Vec<Key>> {
    match expr {
        // Either side is necessary; a tag usually narrows more than a circle, which carries
        // many tags.
        Expr::TagCircle(sub) => match (&sub.tag, &sub.circle) {
            (Pattern::Exact(t), _) => Some(vec![(KeyKind::Tag, t.clone())]),
            (Pattern::Any, Pattern::Exact(c)) => Some(vec![(KeyKind::Circle, c.clone())]),
            _ => None,
        },
        Expr::Field(field, Test::Compare(CmpOp::Eq, Value::String(v))) => {
            let kind = match field {
                Field::Type => KeyKind::Type,
                Field::ObjectType => KeyKind::ObjectType,
                Field::Author => KeyKind::Author,
                Field::Tag => KeyKind::Tag,
                Field::Circle => KeyKind::Circle,
            };
            Some(vec![(kind, v.clone())])
        }
        // Any one side's keys are necessary; the side with the fewest narrows most, and an
        // activity type (few values, shared by most activities) narrows least.
        Expr::And(all) => all.iter().filter_map(anchors).min_by_key(|keys| {
            (
                keys.iter().any(|(kind, _)| *kind == KeyKind::Type),
                keys.len(),
            )
        }),
        Expr::Or(any) => {
            let mut keys = Vec::new();
            for side in any {
                keys.extend(anchors(side)?);
            }
            Some(keys)
        }
        _ => None,
    }
}

/// Many topics' filters, indexed so that an activity is checked only against the filters it
/// could pass.
#[derive(Debug, Clone)]
pub struct TopicIndex<T> {
    topics: Vec<(T, Filter)>,
    /// Per [`KeyKind`]: value → the topics filed under it. Looked up by `&str`, so matching an
    /// activity allocates no keys.
    by_key: [HashMap<String, Vec<usize>>; 5],
    unindexed: Vec<usize>,
}

impl<T> Default for TopicIndex<T> {
    fn default() -> Self {
        TopicIndex {
            topics: Vec::new(),
            by_key: Default::default(),
            unindexed: Vec::new(),
        }
    }
}

impl<T: Clone> TopicIndex<T> {
    /// Adds a topic's filter.
    pub fn insert(&mut self, topic: T, filter: Filter) {
        let at = self.topics.len();
        match anchors(filter.expr()) {
            Some(keys) => {
                for (kind, value) in keys {
                    let list = self.by_key[kind as usize].entry(value).or_default();
                    if list.last() != Some(&at) {
                        list.push(at);
                    }
                }
            }
            None => self.unindexed.push(at),
        }
        self.topics.push((topic, filter));
    }

    /// How many filters it holds.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The topics whose filters the activity passes, in insertion order.
    pub fn matching(&self, facts: &Facts<'_>) -> Vec<T> {
        let mut candidates: Vec<usize> = self.unindexed.clone();
        let mut look = |kind: KeyKind, value: &str| {
            if let Some(list) = self.by_key[kind as usize].get(value) {
                candidates.extend_from_slice(list);
            }
        };
        look(KeyKind::Type, facts.activity_type);
        if let Some(o) = facts.object_type {
            look(KeyKind::ObjectType, o);
        }
        look(KeyKind::Author, facts.author);
        for tag in &facts.tags {
            look(KeyKind::Tag, tag);
        }
        for circle in &facts.circles {
            look(KeyKind::Circle, circle);
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter_map(|i| self.topics.get(i))
            .filter(|(_, filter)| filter.matches(facts))
            .map(|(topic, _)| topic.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Value {
        json!({
            "type": "Create", "actor": "user:shop", "to": ["circle:sales", "topic:orders"],
            "tag": ["paid", "sys:note"],
            "object": {"type": "Note", "amount": 250, "status": "paid", "sku": "A-17",
                       "lines": [{"qty": 1}, {"qty": 5}]}
        })
    }

    fn check(filter: &str) -> bool {
        let record = order();
        Filter::parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(&Facts::of(&record))
    }

    #[test]
    fn every_kind_of_term_matches_what_it_says() {
        for (filter, want) in [
            ("paid@sales", true),
            ("paid@*", true),
            ("*@sales", true),
            ("refund@sales", false),
            ("paid@ops", false),
            ("type == Create", true),
            ("type == \"Like\"", false),
            ("type != Like", true),
            ("object_type == Note", true),
            ("author == shop", true),
            ("author =~ \"^sh\"", true),
            ("tag == paid", true),
            ("tag != paid", false),
            ("circle == sales", true),
            ("$.object.amount > 100", true),
            ("$.object.amount >= 250", true),
            ("$.object.amount < 250", false),
            ("$.object.amount == 250.0", true),
            ("$.object.status == \"paid\"", true),
            ("$.object.status != \"paid\"", false),
            ("$.object.sku =~ \"^A-[0-9]+$\"", true),
            ("$.object.sku =~ \"^B\"", false),
            ("exists $.object.coupon", false),
            ("exists $.object.sku", true),
            ("$.object.lines[*].qty > 3", true),
            ("$.object.lines[?@.qty > 3].qty == 5", true),
            ("$.object.status > 1", false),
            ("$['object']['amount'] > 100", true),
            ("exists $.object.status.deeper", false),
            ("exists $.object.lines", true),
            ("paid@sales and $.object.amount > 1000", false),
            (
                "paid@sales and ($.object.amount > 1000 or author == shop)",
                true,
            ),
            ("not paid@sales", false),
            ("not (type == Like) and exists $.object", true),
            ("a@b or paid@sales and type == Create", true),
        ] {
            assert_eq!(check(filter), want, "{filter}");
        }
    }

    #[test]
    fn errors_say_where() {
        for (filter, position) in [
            ("", 0),
            ("paid@sales and", 14),
            ("paid@sales and (type == Create", 30),
            ("$.object.[", 9),
            ("$.object.amount > \"x\"", 18),
            ("type > 3", 5),
            ("colour == red", 0),
            ("paid@sales extra", 11),
            ("$.a =~ \"(\"", 7),
            ("exists type", 7),
            ("type == Create )", 15),
            ("pa id@x", 0),
            ("a@b@c", 3),
            ("\"open", 0),
        ] {
            let e = Filter::parse(filter).expect_err(filter);
            assert_eq!(e.position, position, "{filter}: {e}");
        }
    }

    #[test]
    fn the_index_finds_what_a_full_scan_finds() {
        let filters = [
            "paid@sales",
            "refund@*",
            "type == Like",
            "author == shop and $.object.amount > 100",
            "$.object.amount > 1",
            "type == Create or tag == urgent",
            "not type == Like",
            "*@*",
            "circle == ops or author == shop",
        ];
        let mut index = TopicIndex::default();
        for (i, f) in filters.iter().enumerate() {
            index.insert(i, Filter::parse(f).expect("filter"));
        }
        let records = [
            order(),
            json!({"type": "Like", "actor": "user:bo", "object": "x", "to": ["circle:ops"], "tag": ["refund"]}),
            json!({"type": "Create", "actor": "user:cy", "object": {"type": "Article"}}),
        ];
        for record in &records {
            let facts = Facts::of(record);
            let scanned: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| Filter::parse(f).expect("filter").matches(&facts))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(index.matching(&facts), scanned, "{record}");
        }
    }
}
