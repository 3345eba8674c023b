//! `include` patterns, expanded as nginx does: `glob(3)` with no flags (`ngx_open_glob`,
//! `src/os/unix/ngx_files.c`), so `*`, `?` and `[...]` match within one path component, a
//! wildcard never matches a leading `.`, `\` escapes, matches come back sorted bytewise (nginx
//! never sets a locale), and a pattern matching nothing includes nothing.

use std::path::{Path, PathBuf};

/// Whether `pattern` has glob characters (nginx checks for any of `*?[`).
pub(super) fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The paths matching `pattern` (absolute), sorted; errors only from reading a directory that
/// exists.
pub(super) fn expand(pattern: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = vec![PathBuf::new()];
    let components: Vec<_> = pattern.components().collect();
    for (i, component) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let part = component.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if !is_pattern(&part) {
                let path = base.join(component.as_os_str());
                // Intermediate components must be directories; the last must exist.
                if (last && path.exists()) || path.is_dir() {
                    next.push(path);
                }
                continue;
            }
            let entries = match std::fs::read_dir(if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            }) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if matches(part.as_bytes(), name.as_bytes()) && (last || entry.path().is_dir()) {
                    next.push(base.join(&*name));
                }
            }
        }
        found = next;
    }
    found.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(found)
}

/// `fnmatch(pattern, name, FNM_PERIOD)` for one path component.
pub(super) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    match_from(pattern, name)
}

fn match_from(mut p: &[u8], mut n: &[u8]) -> bool {
    // Backtracking over the last '*' only: enough for glob patterns, linear in practice.
    let mut star: Option<(&[u8], &[u8])> = None;
    loop {
        match p.first() {
            Some(b'*') => {
                p = &p[1..];
                star = Some((p, n));
                continue;
            }
            Some(&c) if !n.is_empty() => {
                let step = match c {
                    b'?' => Some(1),
                    b'[' => match class(&p[1..], n[0]) {
                        Class::Unclosed => (n[0] == b'[').then_some(1),
                        Class::Matched(len) => Some(len),
                        Class::NoMatch => None,
                    },
                    b'\\' if p.len() > 1 => (p[1] == n[0]).then_some(2),
                    _ => (c == n[0]).then_some(1),
                };
                if let Some(len) = step {
                    p = &p[len..];
                    n = &n[1..];
                    continue;
                }
            }
            None if n.is_empty() => return true,
            _ => {}
        }
        // Mismatch: let the last '*' swallow one more character.
        match star {
            Some((sp, sn)) if !sn.is_empty() => {
                star = Some((sp, &sn[1..]));
                p = sp;
                n = &sn[1..];
            }
            _ => return false,
        }
    }
}

enum Class {
    /// The class matched, taking this many pattern bytes (including the `[`).
    Matched(usize),
    NoMatch,
    /// No closing `]`: the `[` is a literal.
    Unclosed,
}

/// Matches `c` against the class starting right after `[`. `!` or `^` negates, `]` first is
/// literal, `a-z` is a range.
fn class(p: &[u8], c: u8) -> Class {
    let negate = matches!(p.first(), Some(b'!' | b'^'));
    let mut i = usize::from(negate);
    let mut hit = false;
    let mut first = true;
    loop {
        let Some(&x) = p.get(i) else {
            return Class::Unclosed;
        };
        if x == b']' && !first {
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&e| e != b']') {
            hit |= (x..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
    if hit != negate {
        Class::Matched(i + 2)
    } else {
        Class::NoMatch
    }
}
