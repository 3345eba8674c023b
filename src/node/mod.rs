//! Node mode: the consistent-hash ring behind the Maelstrom JSON-lines message protocol.
//!
//! A test harness drives `ringproxy-node` (or `ringproxy node`) with one JSON message per line
//! on stdin, `{"src","dest","body"}`, and reads one reply per line on stdout; logs go to stderr.
//! The node answers with the very [`Ring`](crate::ring::Ring) the proxy routes with (one member
//! per server, weight 1, the proxy's default vnodes unless `init` says otherwise), so the harness
//! checks the real algorithm, not a copy of it.
//!
//! # Messages
//!
//! | request                                   | reply body (besides `type`, `in_reply_to`, `msg_id`)              |
//! |-------------------------------------------|-------------------------------------------------------------------|
//! | `init` {node_id, node_ids, servers?, vnodes?} | — (servers = `servers`, else `node_ids` minus `node_id`)      |
//! | `add_servers` {servers} / `add_server` {server} | `servers`: the whole current list, sorted                   |
//! | `remove_servers` {servers} / `remove_server` {server} | `servers`                                             |
//! | `get_server` (or `route`, `route_request`, `lookup`) {key} | `key`, `server`                                  |
//! | `get_servers` / `ring_state`              | `servers`, `shares` {server: fraction of the hash space}, `vnodes` |
//! | `ring_add_node` {new_node, keys?} / `ring_remove_node` {node, keys?} | `keys_migrated`, `total_keys`, `migration_pct`, `source_nodes`, `destination_nodes`, `servers` |
//!
//! The reply type is the request type + `_ok`. The key may be given as `key`, `client_id`,
//! `user_id` or `session_id` (first present wins), as a string or a number (a number routes like
//! its decimal text, so `42` and `"42"` land on the same server). `ring_add_node` and
//! `ring_remove_node` compare the owner of every key before and after the change, over `keys` if
//! given, else over `key-0` … `key-9999`, which makes the minimal-redistribution promise visible:
//! adding an (n+1)th server moves about 1/(n+1) of the keys, all of them to the new server.
//!
//! Membership changes are idempotent: adding a present server or removing an absent one
//! succeeds and changes nothing. A request is applied whole or not at all. A second `init`
//! starts over.
//!
//! # Errors
//!
//! Errors are replies of type `error` with a Maelstrom `code` and a `text`: 10 (not supported)
//! for an unknown type, 11 (temporarily unavailable) for a lookup on an empty ring, 12 (malformed
//! request) for a missing or ill-typed field, an empty server id, or a change the ring refuses
//! (too many points). A line that is not JSON, has no string `body.type`, has no string `src` to
//! answer to, or is longer than [`MAX_LINE_BYTES`] is logged to stderr and skipped; messages that
//! carry `in_reply_to` are replies to us and are ignored. No input stops the node: it ends at EOF
//! (success) or when writing stdout fails (an I/O error).
//!
//! # Layout
//!
//! - `wire.rs`: reading bounded lines, parsing envelopes, writing replies; [`run`], [`run_stdio`].
//! - `handlers.rs`: the node's state and one function per message type.

mod handlers;
mod wire;

pub use wire::{run, run_stdio, MAX_LINE_BYTES};
