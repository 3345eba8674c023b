//! Change previews: what a membership change would do to the ring, worked out before doing it.
//!
//! `POST /ring/plan` and `ringproxy plan` both call [`plan`] with the ring as it is and a
//! [`Change`] (backends that join, leave, or get a new weight). The planned ring is built the
//! way a real change builds it: the members afterwards, by id and weight, laid out by
//! [`Ring::new`] with the current ring's vnodes. The ring depends on nothing else (not on
//! addresses, not on the order of changes), so its fingerprint is the one the change will have.
//! What moves is [`moved`]: exact interval arithmetic over the two rings' point lists, not a
//! sample of keys. Nothing here changes anything; nothing here does I/O.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::{validate_address, validate_id, validate_weight};
use crate::ring::{moved, Member, Moved, Placement, Ring};

/// What every plan answer says about how it was computed.
pub const NOTE: &str = "exact: computed by interval arithmetic over the current and the planned \
rings' point lists (every arc of the hash circle measured), not by sampling keys";

/// A membership change to preview, validated field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Backends that join.
    pub join: Vec<Join>,
    /// Ids of backends that leave.
    pub leave: Vec<String>,
    /// New weights of backends that stay, by id, in the order given.
    pub weight: Vec<(String, u32)>,
}

/// A backend that joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Its ring identity.
    pub id: String,
    /// Where it would be reached (validated; it does not place anything on the ring).
    pub address: String,
    /// Units of vnodes.
    pub weight: u32,
}

/// Why a change cannot be planned: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// The field, as a path into the request (`join[1].address`, `weight.cache-a`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

/// What happens to one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Joins the ring.
    Joins,
    /// Leaves the ring.
    Leaves,
    /// Stays with another weight.
    Reweighted,
    /// Stays as it is (it may still gain keys from others).
    Stays,
}

impl Action {
    /// Its name in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Joins => "joins",
            Action::Leaves => "leaves",
            Action::Reweighted => "reweighted",
            Action::Stays => "stays",
        }
    }
}

/// One backend before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendPlan {
    /// Ring identity.
    pub id: Arc<str>,
    /// What happens to it.
    pub action: Action,
    /// Weight before (`None` for a joiner).
    pub weight_before: Option<u32>,
    /// Weight after (`None` for a leaver).
    pub weight_after: Option<u32>,
    /// Share of the hash space before.
    pub share_before: f64,
    /// Share of the hash space after.
    pub share_after: f64,
    /// Share of the hash space it takes over from others.
    pub moved_in: f64,
    /// Share of the hash space it hands to others.
    pub moved_out: f64,
    /// A joiner's address.
    pub address: Option<String>,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The current ring's fingerprint.
    pub fingerprint_before: String,
    /// Points of the current ring.
    pub points_before: usize,
    /// The planned ring, built as the real change would build it.
    pub after: Ring,
    /// What moves, exactly.
    pub moved: Moved,
    /// Every backend of either ring, by id.
    pub backends: Vec<BackendPlan>,
}

impl Change {
    /// Reads `{"join": [{"id","address","weight"}], "leave": [ids], "weight": {id: w}}`; every
    /// part is optional, unknown fields are errors, and each error names its field.
    pub fn from_json(body: &Value) -> Result<Change, PlanError> {
        let Value::Object(body) = body else {
            return Err(error(
                "body",
                r#"expected a JSON object like {"join":[{"id":"cache-e","address":"10.0.0.5:80","weight":1}],"leave":["cache-b"],"weight":{"cache-a":2}}"#,
            ));
        };
        if let Some(key) = body
            .keys()
            .find(|k| !matches!(k.as_str(), "join" | "leave" | "weight"))
        {
            return Err(error(
                key.as_str(),
                "unknown field; expected join, leave and weight",
            ));
        }
        let mut change = Change::default();
        if let Some(join) = body.get("join") {
            for (i, item) in array(join, "join")?.iter().enumerate() {
                change.join.push(join_item(item, i)?);
            }
        }
        if let Some(leave) = body.get("leave") {
            for (i, item) in array(leave, "leave")?.iter().enumerate() {
                let field = format!("leave[{i}]");
                let id = item
                    .as_str()
                    .ok_or_else(|| error(&field, "expected a backend id (a string)"))?;
                validate_id(id).map_err(|m| error(&field, m))?;
                change.leave.push(id.to_string());
            }
        }
        if let Some(weight) = body.get("weight") {
            let Value::Object(map) = weight else {
                return Err(error(
                    "weight",
                    r#"expected an object of new weights by id, like {"cache-a": 2}"#,
                ));
            };
            for (id, w) in map {
                let field = format!("weight.{id}");
                validate_id(id).map_err(|m| error(&field, m))?;
                change.weight.push((id.clone(), weight_value(w, &field)?));
            }
        }
        Ok(change)
    }

    /// Reads a `--join ID=ADDR[:W]` argument: `cache-e=10.0.0.5:80` or `cache-e=10.0.0.5:80:2`.
    pub fn parse_join(arg: &str) -> Result<Join, PlanError> {
        let field = format!("--join {arg}");
        let (id, rest) = arg
            .split_once('=')
            .ok_or_else(|| error(&field, "expected ID=HOST:PORT or ID=HOST:PORT:WEIGHT"))?;
        validate_id(id).map_err(|m| error(&field, format!("id {m}")))?;
        // HOST:PORT:WEIGHT when what precedes the last colon is an address by itself.
        let (address, weight) = match rest.rsplit_once(':') {
            Some((address, w)) if validate_address(address).is_ok() => {
                let w: i64 = w
                    .parse()
                    .map_err(|_| error(&field, format!("weight {w:?} is not a whole number")))?;
                (address, w)
            }
            _ => (rest, 1),
        };
        validate_address(address).map_err(|m| error(&field, m))?;
        let weight = validate_weight(weight).map_err(|m| error(&field, format!("weight {m}")))?;
        Ok(Join {
            id: id.to_string(),
            address: address.to_string(),
            weight,
        })
    }

    /// Reads a `--weight ID=W` argument.
    pub fn parse_weight(arg: &str) -> Result<(String, u32), PlanError> {
        let field = format!("--weight {arg}");
        let (id, w) = arg
            .split_once('=')
            .ok_or_else(|| error(&field, "expected ID=WEIGHT"))?;
        validate_id(id).map_err(|m| error(&field, format!("id {m}")))?;
        let w: i64 = w
            .parse()
            .map_err(|_| error(&field, format!("weight {w:?} is not a whole number")))?;
        let w = validate_weight(w).map_err(|m| error(&field, format!("weight {m}")))?;
        Ok((id.to_string(), w))
    }

    /// Reads a `--leave ID` argument.
    pub fn parse_leave(arg: &str) -> Result<String, PlanError> {
        validate_id(arg).map_err(|m| error(format!("--leave {arg}"), m))?;
        Ok(arg.to_string())
    }
}

fn array<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>, PlanError> {
    value
        .as_array()
        .ok_or_else(|| error(field, "expected a JSON array"))
}

fn weight_value(value: &Value, field: &str) -> Result<u32, PlanError> {
    let w = value
        .as_i64()
        .ok_or_else(|| error(field, "expected a whole number from 1 to 10000"))?;
    validate_weight(w).map_err(|m| error(field, m))
}

fn join_item(item: &Value, i: usize) -> Result<Join, PlanError> {
    let at = |name: &str| format!("join[{i}].{name}");
    let Value::Object(item) = item else {
        return Err(error(
            format!("join[{i}]"),
            r#"expected an object like {"id":"cache-e","address":"10.0.0.5:80","weight":1}"#,
        ));
    };
    if let Some(key) = item
        .keys()
        .find(|k| !matches!(k.as_str(), "id" | "address" | "weight"))
    {
        return Err(error(
            at(key),
            "unknown field; expected id, address and weight",
        ));
    }
    let text = |name: &str| -> Result<String, PlanError> {
        item.get(name)
            .ok_or_else(|| error(at(name), "missing"))?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| error(at(name), "expected a string"))
    };
    let id = text("id")?;
    validate_id(&id).map_err(|m| error(at("id"), m))?;
    let address = text("address")?;
    validate_address(&address).map_err(|m| error(at("address"), m))?;
    let weight = match item.get("weight") {
        Some(w) => weight_value(w, &at("weight"))?,
        None => 1,
    };
    Ok(Join {
        id,
        address,
        weight,
    })
}

/// Plans `change` against `current`: checks it the way the real changes would (members that
/// leave or are re-weighted must exist, joiners must not, nothing twice), builds the ring it
/// would lead to, and measures exactly what moves.
pub fn plan(current: &Ring, change: &Change) -> Result<Plan, PlanError> {
    let mut weights: Vec<(Arc<str>, u32)> = current
        .members()
        .iter()
        .map(|m| (m.id.clone(), m.weight))
        .collect();
    let find = |list: &[(Arc<str>, u32)], id: &str| list.iter().position(|(m, _)| &**m == id);
    for (i, id) in change.leave.iter().enumerate() {
        let field = format!("leave[{i}]");
        if change.leave[..i].contains(id) {
            return Err(error(field, format!("{id:?} is listed twice")));
        }
        let at = find(&weights, id)
            .ok_or_else(|| error(&field, format!("no backend with id {id:?}")))?;
        weights.remove(at);
    }
    for (id, w) in &change.weight {
        let field = format!("weight.{id}");
        if change.leave.contains(id) {
            return Err(error(field, format!("{id:?} is also leaving")));
        }
        let at = find(&weights, id)
            .ok_or_else(|| error(&field, format!("no backend with id {id:?}")))?;
        weights[at].1 = *w;
    }
    for (i, j) in change.join.iter().enumerate() {
        let field = format!("join[{i}].id");
        if change.join[..i].iter().any(|x| x.id == j.id) {
            return Err(error(field, format!("{:?} is listed twice", j.id)));
        }
        if current.index_of(&j.id).is_some() {
            return Err(error(
                field,
                format!(
                    "{:?} is already a member; change its weight instead (an address change moves no keys)",
                    j.id
                ),
            ));
        }
        weights.push((j.id.as_str().into(), j.weight));
    }
    // Built as the change would build it: the same placement, and for nginx's (listing order
    // matters) the members in the current order with joiners last.
    let members = weights.iter().map(|(id, w)| Member::new(id.clone(), *w));
    let after = match current.placement() {
        Placement::Ringproxy => Ring::new(members, current.vnodes()),
        Placement::Nginx => Ring::nginx(members),
    }
    .map_err(|e| error("ring", e.to_string()))?;
    let moved = moved(current, &after);
    let backends = backends(current, &after, change, &moved);
    Ok(Plan {
        fingerprint_before: current.fingerprint(),
        points_before: current.points(),
        after,
        moved,
        backends,
    })
}

/// Every member of either ring, sorted by id, with its shares and flows.
fn backends(before: &Ring, after: &Ring, change: &Change, moved: &Moved) -> Vec<BackendPlan> {
    let shares = |ring: &Ring| -> HashMap<Arc<str>, (u32, f64)> {
        ring.shares()
            .into_iter()
            .enumerate()
            .map(|(i, (_, s))| (ring.member(i).id.clone(), (ring.member(i).weight, s)))
            .collect()
    };
    let (old, new) = (shares(before), shares(after));
    let mut ids: Vec<Arc<str>> = old.keys().chain(new.keys()).cloned().collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let (wb, sb) = old.get(&id).map_or((None, 0.0), |&(w, s)| (Some(w), s));
            let (wa, sa) = new.get(&id).map_or((None, 0.0), |&(w, s)| (Some(w), s));
            let action = match (wb, wa) {
                (None, _) => Action::Joins,
                (_, None) => Action::Leaves,
                (Some(b), Some(a)) if a != b => Action::Reweighted,
                _ => Action::Stays,
            };
            let flow_sum = |pick: fn(&crate::ring::Flow) -> &Option<Arc<str>>| -> f64 {
                moved
                    .flows
                    .iter()
                    .filter(|f| pick(f).as_deref() == Some(&*id))
                    .map(|f| f.share)
                    // Not `sum`: an empty f64 sum is -0.0.
                    .fold(0.0, |a, b| a + b)
            };
            BackendPlan {
                action,
                weight_before: wb,
                weight_after: wa,
                share_before: sb,
                share_after: sa,
                moved_in: flow_sum(|f| &f.to),
                moved_out: flow_sum(|f| &f.from),
                address: change
                    .join
                    .iter()
                    .find(|j| *j.id == *id)
                    .map(|j| j.address.clone()),
                id,
            }
        })
        .collect()
}

impl Plan {
    /// The plan as JSON, as `POST /ring/plan` and `ringproxy plan --json` print it.
    pub fn to_json(&self) -> Value {
        let backends: Vec<Value> = self
            .backends
            .iter()
            .map(|b| {
                let mut o = Map::new();
                o.insert("id".into(), json!(&*b.id));
                o.insert("change".into(), json!(b.action.as_str()));
                if let Some(a) = &b.address {
                    o.insert("address".into(), json!(a));
                }
                o.insert("weight_before".into(), json!(b.weight_before));
                o.insert("weight".into(), json!(b.weight_after));
                o.insert("share_before".into(), json!(b.share_before));
                o.insert("share".into(), json!(b.share_after));
                o.insert("moved_in".into(), json!(b.moved_in));
                o.insert("moved_out".into(), json!(b.moved_out));
                Value::Object(o)
            })
            .collect();
        let flows: Vec<Value> = self
            .moved
            .flows
            .iter()
            .map(|f| json!({"from": f.from.as_deref(), "to": f.to.as_deref(), "share": f.share}))
            .collect();
        json!({
            "moved": self.moved.share,
            "exact": true,
            "note": NOTE,
            "fingerprint_before": self.fingerprint_before,
            "fingerprint": self.after.fingerprint(),
            "algorithm": self.after.algorithm(),
            "vnodes": self.after.vnodes(),
            "points_before": self.points_before,
            "points": self.after.points(),
            "backends": backends,
            "flows": flows,
        })
    }

    /// The plan for people: what moves, each backend's share before and after, the flows.
    pub fn to_text(&self) -> String {
        let pct = |x: f64| format!("{:.2}%", x * 100.0);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "moved: {} of the hash space (= of the keys) changes backend",
            pct(self.moved.share)
        );
        let _ = writeln!(
            out,
            "ring:  fingerprint {} -> {}, {} -> {} points, vnodes {}",
            self.fingerprint_before,
            self.after.fingerprint(),
            self.points_before,
            self.after.points(),
            self.after.vnodes()
        );
        let _ = writeln!(out, "       ({NOTE})");
        let _ = writeln!(out);
        let width = self
            .backends
            .iter()
            .map(|b| b.id.chars().count())
            .max()
            .unwrap_or(0)
            .max(7);
        let _ = writeln!(
            out,
            "{:width$}  {:10}  {:>9}  {:>12}  {:>11}  {:>8}  {:>9}",
            "backend", "change", "weight", "share before", "share after", "moved in", "moved out"
        );
        let weight = |w: Option<u32>| w.map_or_else(|| "-".to_string(), |w| w.to_string());
        for b in &self.backends {
            let _ = writeln!(
                out,
                "{:width$}  {:10}  {:>9}  {:>12}  {:>11}  {:>8}  {:>9}{}",
                b.id,
                b.action.as_str(),
                format!("{} -> {}", weight(b.weight_before), weight(b.weight_after)),
                pct(b.share_before),
                pct(b.share_after),
                pct(b.moved_in),
                pct(b.moved_out),
                b.address
                    .as_ref()
                    .map(|a| format!("  ({a})"))
                    .unwrap_or_default(),
            );
        }
        if !self.moved.flows.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "flows (from -> to: share of the hash space):");
            let name = |id: &Option<Arc<str>>| id.as_deref().unwrap_or("(none)").to_string();
            for f in &self.moved.flows {
                let _ = writeln!(
                    out,
                    "  {:width$} -> {:width$}  {}",
                    name(&f.from),
                    name(&f.to),
                    pct(f.share)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
