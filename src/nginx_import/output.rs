//! [`Translation::to_toml`]: the ringproxy configuration, commented with the nginx line each
//! setting comes from and with every warning, so a reviewer can check it against the source.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Setting, Translation};

/// A TOML string literal (quoted and escaped).
fn quote(s: &str) -> String {
    ::toml::Value::String(s.to_string()).to_string()
}

/// A duration as ringproxy's config reads it (humantime): whole seconds or milliseconds.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `# nginx: <text> (file:line)`
fn source<T>(s: &Setting<T>) -> String {
    format!("# nginx: {} ({})", s.nginx, s.at)
}

impl Translation {
    /// A ready ringproxy configuration: `[ring] compat = "nginx"`, the key, the mapped
    /// timeouts and health settings, and the backends in nginx's listing order. Untranslated
    /// parts are listed as comments at the top.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "# ringproxy configuration translated from nginx by `ringproxy import-nginx`:\n\
             # upstream {:?} ({}), read from {}.",
            self.upstream,
            self.upstream_at,
            self.main_file.display()
        );
        if self.is_partial() {
            let _ = writeln!(
                w,
                "#\n# PARTIAL: {} thing(s) could not be translated; check each before use:",
                self.warnings.len()
            );
            for warning in &self.warnings {
                let _ = writeln!(w, "#   {warning}");
            }
        }

        let proxy: Vec<String> = [
            self.connect_timeout.as_ref().map(|s| {
                format!(
                    "{}\nconnect_timeout = {}",
                    source(s),
                    quote(&duration(s.value))
                )
            }),
            self.request_timeout.as_ref().map(|s| {
                format!(
                    "{}\n# (nginx times each read from the backend; ringproxy times the wait for \
                     the response headers)\nrequest_timeout = {}",
                    source(s),
                    quote(&duration(s.value))
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !proxy.is_empty() {
            let _ = writeln!(w, "\n[proxy]\n{}", proxy.join("\n"));
        }

        let _ = writeln!(
            w,
            "\n[ring]\n\
             # nginx's `hash ... consistent` ring: the same points (160 per unit of weight) and the\n\
             # same key hash, so every key keeps the server nginx gave it. Backends are identified\n\
             # by their nginx address strings, and their order below (nginx's listing order)\n\
             # settles ties between colliding points: keep it, and add new backends last.\n\
             compat = \"nginx\""
        );

        let health: Vec<String> = [
            self.fail_threshold
                .as_ref()
                .map(|s| format!("{}\nfail_threshold = {}", source(s), s.value)),
            self.eject_for
                .as_ref()
                .map(|s| format!("{}\neject_for = {}", source(s), quote(&duration(s.value)))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !health.is_empty() {
            let _ = writeln!(
                w,
                "\n[health]\n# nginx counts failures per server; ringproxy ejects after this many in \
                 a row.\n{}",
                health.join("\n")
            );
        }

        let _ = writeln!(w, "\n[affinity]");
        if let Some(hash) = &self.hash {
            let _ = writeln!(w, "{}", source(hash));
        }
        match &self.key {
            Some(key) => {
                let _ = writeln!(
                    w,
                    "# The key is nginx's own expression, rendering the bytes nginx hashes.\n\
                     key = [{}]",
                    quote(&format!("template:{key}"))
                );
            }
            None => {
                let _ = writeln!(
                    w,
                    "# NOT TRANSLATED: the hash key (see the warnings above); pick key sources here.\n\
                     # key = [\"header:x-user-id\"]"
                );
            }
        }
        let _ = writeln!(
            w,
            "# nginx balances requests with an empty key round robin: \"random\" is the equivalent.\n\
             on_missing = \"random\""
        );

        let _ = writeln!(
            w,
            "\n# The servers of upstream {:?}, in nginx's listing order.",
            self.upstream
        );
        for b in &self.backends {
            let _ = writeln!(w, "\n# nginx: server {} ({})", b.id, b.at);
            if b.down {
                let _ = writeln!(
                    w,
                    "# `down` in nginx: drain it after start (POST /backends/{}/drain).",
                    b.id
                );
            }
            let _ = writeln!(
                w,
                "[[backends]]\nid = {}\naddress = {}\nweight = {}",
                quote(&b.id),
                quote(&b.address),
                b.weight
            );
        }
        out
    }
}
