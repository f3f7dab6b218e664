//! The registry of custom activity and object types: each has a JSON Schema its payload must
//! satisfy and default actions its objects carry. Unregistered custom types are refused.

use crate::error::ApiError;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tidings_core::activity::{
    ACTIVITY_TYPES, Action, Draft, OBJECT_TYPES, TypeStatus, is_http_url,
};
use tidings_core::expr::is_valid_slug;
use tidings_store::model::CustomType;

struct Registered {
    kind: String,
    validator: jsonschema::Validator,
    actions: Vec<Action>,
}

/// Custom types by name; cheap to clone.
#[derive(Clone, Default)]
pub struct TypeRegistry {
    types: Arc<RwLock<HashMap<String, Registered>>>,
}

/// Checks a custom type definition and compiles its schema.
fn compile(custom: &CustomType) -> Result<Registered, ApiError> {
    let bad = |message: String| ApiError::bad_request("invalid_type", message);
    if custom.name.is_empty()
        || custom.name.len() > 64
        || !custom.name.chars().all(|c| c.is_ascii_alphanumeric())
        || !custom.name.starts_with(|c: char| c.is_ascii_uppercase())
    {
        return Err(bad(format!(
            "type name {:?} must be CamelCase letters and digits",
            custom.name
        )));
    }
    if ACTIVITY_TYPES.contains(&custom.name.as_str())
        || OBJECT_TYPES.contains(&custom.name.as_str())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "type_builtin",
            format!("{} is a built-in type", custom.name),
        ));
    }
    if custom.kind != "activity" && custom.kind != "object" {
        return Err(bad("kind must be \"activity\" or \"object\"".into()));
    }
    let validator = jsonschema::validator_for(&custom.schema)
        .map_err(|e| bad(format!("schema is not a valid JSON Schema: {e}")))?;
    let mut actions = Vec::new();
    let list = match &custom.actions {
        Value::Null => Vec::new(),
        Value::Array(items) => items.clone(),
        _ => return Err(bad("actions must be a list".into())),
    };
    for item in list {
        let name = item.get("name").and_then(Value::as_str).unwrap_or("");
        let url = item.get("url").and_then(Value::as_str).unwrap_or("");
        // As for an activity's own actions: a known method, named by a string.
        let method = match item.get("method") {
            None | Some(Value::Null) => "GET".to_owned(),
            Some(Value::String(m)) => m.to_ascii_uppercase(),
            Some(_) => return Err(bad(format!("action {item}: method must be a string"))),
        };
        if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(bad(format!(
                "action {item}: method must be GET, POST, PUT, PATCH or DELETE"
            )));
        }
        if !is_valid_slug(name) || !is_http_url(url) {
            return Err(bad(format!(
                "action {item} needs a slug name and an absolute http(s) url"
            )));
        }
        actions.push(Action {
            name: name.to_owned(),
            url: url.to_owned(),
            method,
        });
    }
    Ok(Registered {
        kind: custom.kind.clone(),
        validator,
        actions,
    })
}

impl TypeRegistry {
    /// Validates and adds (or replaces) a type.
    pub fn register(&self, custom: &CustomType) -> Result<(), ApiError> {
        let registered = compile(custom)?;
        self.types
            .write()
            .map_err(|_| ApiError::internal("type registry lock poisoned"))?
            .insert(custom.name.clone(), registered);
        Ok(())
    }

    /// Checks a definition without adding it.
    pub fn check(&self, custom: &CustomType) -> Result<(), ApiError> {
        compile(custom).map(|_| ())
    }

    /// Whether a type name is built in, registered or unknown.
    pub fn status(&self, name: &str) -> TypeStatus {
        if ACTIVITY_TYPES.contains(&name) || OBJECT_TYPES.contains(&name) {
            return TypeStatus::BuiltIn;
        }
        match self.types.read() {
            Ok(types) if types.contains_key(name) => TypeStatus::Custom,
            _ => TypeStatus::Unknown,
        }
    }

    /// Validates custom payloads against their schemas and adds default actions.
    pub fn apply(&self, input: &Value, draft: &mut Draft) -> Result<(), ApiError> {
        let types = self
            .types
            .read()
            .map_err(|_| ApiError::internal("type registry lock poisoned"))?;
        let mut checks: Vec<(&str, &Value, &str)> = Vec::new();
        if let Some(t) = types.get(&draft.activity_type) {
            if t.kind != "activity" {
                return Err(wrong_kind(&draft.activity_type, "an object", "type"));
            }
            checks.push((draft.activity_type.as_str(), input, "$"));
        }
        if let Some(object_type) = &draft.object_type
            && let Some(t) = types.get(object_type)
        {
            if t.kind != "object" {
                return Err(wrong_kind(object_type, "an activity", "object.type"));
            }
            checks.push((object_type.as_str(), &draft.object, "object"));
        }
        let mut defaults = Vec::new();
        for (name, payload, field) in checks {
            let Some(t) = types.get(name) else { continue };
            let problems: Vec<Value> = t
                .validator
                .iter_errors(payload)
                .take(10)
                .map(|e| json!({"path": e.instance_path.to_string(), "message": e.to_string()}))
                .collect();
            if !problems.is_empty() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "schema_violation",
                    format!("{field} does not match the schema of {name}"),
                )
                .with_details(json!({ "field": field, "problems": problems })));
            }
            defaults.extend(t.actions.iter().cloned());
        }
        drop(types);
        draft.add_default_actions(&defaults);
        Ok(())
    }
}

fn wrong_kind(name: &str, what: &str, field: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_type",
        format!("{name} is registered as {what} type"),
    )
    .with_details(json!({ "field": field }))
}
