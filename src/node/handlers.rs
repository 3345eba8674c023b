//! The node's state and one handler per message type.
//!
//! Handlers take the request body and return the reply's extra fields, or a [`NodeError`];
//! [`Node::handle`] wraps either into a reply envelope. A handler validates everything before it
//! changes anything, so a failed request leaves the node as it was.

use std::collections::BTreeSet;

use serde_json::{json, Map, Number, Value};

use crate::config::DEFAULT_VNODES;
use crate::ring::{Member, Ring};

/// How many keys `ring_add_node` / `ring_remove_node` compare when the request has no `keys`.
const SAMPLE_KEYS: usize = 10_000;

/// Where a routing request may carry its key, in order of preference.
const KEY_FIELDS: [&str; 4] = ["key", "client_id", "user_id", "session_id"];

type Fields = Map<String, Value>;

/// A request to answer: its envelope checked, its body an object with a string `type`.
pub struct Request {
    pub src: String,
    pub dest: Option<String>,
    /// `body.msg_id`, echoed as `in_reply_to`; `None` if absent or null.
    pub msg_id: Option<Value>,
    pub kind: String,
    pub body: Fields,
}

/// Why a request fails, with its Maelstrom error code.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Holds the type as JSON text, cut short by [`brief`].
    #[error("unsupported message type {0}")]
    NotSupported(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Malformed(String),
}

impl NodeError {
    pub fn code(&self) -> u32 {
        match self {
            NodeError::NotSupported(_) => 10,
            NodeError::Unavailable(_) => 11,
            NodeError::Malformed(_) => 12,
        }
    }
}

/// The node: who it is, its servers, and the ring built from them.
pub struct Node {
    /// Our id, from `init`; until then replies come from the request's `dest`.
    id: Option<String>,
    vnodes: u32,
    servers: BTreeSet<String>,
    ring: Ring,
    next_msg_id: u64,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            id: None,
            vnodes: DEFAULT_VNODES,
            servers: BTreeSet::new(),
            ring: Ring::empty(DEFAULT_VNODES),
            next_msg_id: 0,
        }
    }
}

impl Node {
    /// Answers one request: `<type>_ok` with the handler's fields, or an `error`.
    pub fn handle(&mut self, request: Request) -> Value {
        let body = &request.body;
        let result = match request.kind.as_str() {
            "init" => self.init(body),
            "add_servers" => server_list(body, "servers").and_then(|s| self.add(s)),
            "add_server" => server_id(body, "server").and_then(|s| self.add([s].into())),
            "remove_servers" => server_list(body, "servers").and_then(|s| self.remove(&s)),
            "remove_server" => server_id(body, "server").and_then(|s| self.remove(&[s].into())),
            "get_server" | "route" | "route_request" | "lookup" => self.get_server(body),
            "get_servers" | "ring_state" => Ok(self.ring_state()),
            "ring_add_node" => self.ring_add_node(body),
            "ring_remove_node" => self.ring_remove_node(body),
            other => Err(NodeError::NotSupported(brief(&other.into()))),
        };
        let (kind, fields) = match result {
            Ok(fields) => (format!("{}_ok", request.kind), fields),
            Err(e) => {
                tracing::debug!(kind = request.kind, code = e.code(), "error reply: {e}");
                let mut fields = Fields::new();
                fields.insert("code".into(), e.code().into());
                fields.insert("text".into(), e.to_string().into());
                ("error".to_owned(), fields)
            }
        };
        self.reply(request, kind, fields)
    }

    /// The reply envelope; keys in protocol order: `src`, `dest`, `body` and, inside the body,
    /// `type`, `in_reply_to`, `msg_id`, then `fields`.
    fn reply(&mut self, request: Request, kind: String, fields: Fields) -> Value {
        let mut body = Fields::new();
        body.insert("type".into(), kind.into());
        if let Some(msg_id) = request.msg_id {
            body.insert("in_reply_to".into(), msg_id);
        }
        body.insert("msg_id".into(), self.next_msg_id.into());
        self.next_msg_id += 1;
        body.extend(fields);
        let src = self.id.clone().or(request.dest).unwrap_or_default();
        let mut envelope = Fields::new();
        envelope.insert("src".into(), src.into());
        envelope.insert("dest".into(), request.src.into());
        envelope.insert("body".into(), body.into());
        envelope.into()
    }

    fn init(&mut self, body: &Fields) -> Result<Fields, NodeError> {
        let id = server_id(body, "node_id")?;
        let vnodes = match present(body, "vnodes") {
            None => DEFAULT_VNODES,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    malformed(format!(
                        "`vnodes` must be an integer from 1 to {}; got {}",
                        u32::MAX,
                        brief(v)
                    ))
                })?,
        };
        let servers = if present(body, "servers").is_some() {
            server_list(body, "servers")?
        } else {
            let mut servers = server_list(body, "node_ids")?;
            servers.remove(&id);
            servers
        };
        let ring = build_ring(&servers, vnodes)?;
        tracing::info!(node_id = id, servers = servers.len(), vnodes, "initialised");
        *self = Node {
            id: Some(id),
            vnodes,
            servers,
            ring,
            next_msg_id: self.next_msg_id,
        };
        Ok(Fields::new())
    }

    fn add(&mut self, new: BTreeSet<String>) -> Result<Fields, NodeError> {
        let mut servers = self.servers.clone();
        servers.extend(new);
        self.set_servers(servers)?;
        Ok(self.servers_field())
    }

    fn remove(&mut self, gone: &BTreeSet<String>) -> Result<Fields, NodeError> {
        let servers = self.servers.difference(gone).cloned().collect();
        self.set_servers(servers)?;
        Ok(self.servers_field())
    }

    fn get_server(&self, body: &Fields) -> Result<Fields, NodeError> {
        let (key, bytes) = routing_key(body)?;
        let index = self.ring.lookup(bytes.as_bytes()).ok_or_else(|| {
            NodeError::Unavailable("no servers in the ring; add some with add_servers".into())
        })?;
        let mut fields = Fields::new();
        fields.insert("key".into(), key);
        fields.insert("server".into(), (*self.ring.member(index).id).into());
        Ok(fields)
    }

    fn ring_state(&self) -> Fields {
        let shares: Fields = (self.ring.members().iter())
            .zip(self.ring.shares())
            .map(|(m, (_points, fraction))| (m.id.to_string(), json_f64(fraction)))
            .collect();
        let mut fields = self.servers_field();
        fields.insert("shares".into(), shares.into());
        fields.insert("vnodes".into(), self.vnodes.into());
        fields
    }

    fn ring_add_node(&mut self, body: &Fields) -> Result<Fields, NodeError> {
        let node = server_id(body, "new_node")?;
        let keys = sample_keys(body)?;
        let mut servers = self.servers.clone();
        servers.insert(node);
        self.change_and_compare(servers, &keys)
    }

    fn ring_remove_node(&mut self, body: &Fields) -> Result<Fields, NodeError> {
        let node = server_id(body, "node")?;
        let keys = sample_keys(body)?;
        let mut servers = self.servers.clone();
        servers.remove(&node);
        self.change_and_compare(servers, &keys)
    }

    /// Moves to `servers` and reports which of `keys` changed owner, and between whom.
    fn change_and_compare(
        &mut self,
        servers: BTreeSet<String>,
        keys: &[String],
    ) -> Result<Fields, NodeError> {
        let after = build_ring(&servers, self.vnodes)?;
        let (mut moved, mut sources, mut destinations) = (0u64, BTreeSet::new(), BTreeSet::new());
        for key in keys {
            let old = owner(&self.ring, key);
            let new = owner(&after, key);
            if old != new {
                moved += 1;
                sources.extend(old);
                destinations.extend(new);
            }
        }
        let pct = if keys.is_empty() {
            0.0
        } else {
            moved as f64 * 100.0 / keys.len() as f64
        };
        let mut fields = Fields::new();
        fields.insert("keys_migrated".into(), moved.into());
        fields.insert("total_keys".into(), keys.len().into());
        fields.insert("migration_pct".into(), json_f64(pct));
        fields.insert("source_nodes".into(), json!(sources));
        fields.insert("destination_nodes".into(), json!(destinations));
        self.servers = servers;
        self.ring = after;
        fields.extend(self.servers_field());
        Ok(fields)
    }

    /// Rebuilds the ring for `servers`, or keeps everything as it was if the ring refuses them.
    fn set_servers(&mut self, servers: BTreeSet<String>) -> Result<(), NodeError> {
        if servers != self.servers {
            self.ring = build_ring(&servers, self.vnodes)?;
            self.servers = servers;
        }
        Ok(())
    }

    fn servers_field(&self) -> Fields {
        let mut fields = Fields::new();
        fields.insert("servers".into(), json!(self.servers));
        fields
    }
}

fn build_ring(servers: &BTreeSet<String>, vnodes: u32) -> Result<Ring, NodeError> {
    let members = servers.iter().map(|s| Member::new(s.as_str(), 1));
    Ring::new(members, vnodes).map_err(|e| malformed(format!("the ring refuses this change: {e}")))
}

fn owner<'r>(ring: &'r Ring, key: &str) -> Option<&'r str> {
    ring.lookup(key.as_bytes()).map(|i| &*ring.member(i).id)
}

fn malformed(text: impl Into<String>) -> NodeError {
    NodeError::Malformed(text.into())
}

/// The field's value, treating an explicit `null` as absent.
fn present<'b>(body: &'b Fields, field: &str) -> Option<&'b Value> {
    body.get(field).filter(|v| !v.is_null())
}

/// A required server id: a non-empty string.
fn server_id(body: &Fields, field: &str) -> Result<String, NodeError> {
    match present(body, field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(v) => Err(malformed(format!(
            "`{field}` must be a non-empty string; got {}",
            brief(v)
        ))),
        None => Err(malformed(format!("missing field `{field}`"))),
    }
}

/// A required list of server ids; duplicates collapse.
fn server_list(body: &Fields, field: &str) -> Result<BTreeSet<String>, NodeError> {
    let Some(value) = present(body, field) else {
        return Err(malformed(format!("missing field `{field}`")));
    };
    let bad = |got: &Value| {
        malformed(format!(
            "`{field}` must be an array of non-empty strings; got {}",
            brief(got)
        ))
    };
    let items = value.as_array().ok_or_else(|| bad(value))?;
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(item)),
        })
        .collect()
}

/// The routing key as given (echoed back) and as the text that is hashed.
fn routing_key(body: &Fields) -> Result<(Value, String), NodeError> {
    let Some((field, value)) = KEY_FIELDS
        .iter()
        .find_map(|&f| present(body, f).map(|v| (f, v)))
    else {
        return Err(malformed(format!(
            "missing key: give one of `{}`",
            KEY_FIELDS.join("`, `")
        )));
    };
    let text = key_text(value).ok_or_else(|| {
        malformed(format!(
            "`{field}` must be a string or a number; got {}",
            brief(value)
        ))
    })?;
    Ok((value.clone(), text))
}

/// Keys are strings; a number stands for its JSON text.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `keys` to compare a ring change over, or `key-0` … `key-9999`.
fn sample_keys(body: &Fields) -> Result<Vec<String>, NodeError> {
    let Some(value) = present(body, "keys") else {
        return Ok((0..SAMPLE_KEYS).map(|i| format!("key-{i}")).collect());
    };
    let bad = |got: &Value| {
        malformed(format!(
            "`keys` must be an array of strings or numbers; got {}",
            brief(got)
        ))
    };
    let items = value.as_array().ok_or_else(|| bad(value))?;
    items
        .iter()
        .map(|k| key_text(k).ok_or_else(|| bad(k)))
        .collect()
}

/// A finite float as JSON (non-finite values, which cannot happen here, become `null`).
fn json_f64(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A value's JSON text for an error message, cut short so a huge input is not echoed back.
fn brief(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
