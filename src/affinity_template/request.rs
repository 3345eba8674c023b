//! How nginx derives its variables from a request, ported from its source (1.22 – 1.29) so a
//! key renders to the very bytes nginx hashes. Each function names the nginx function it
//! mirrors; file references are to `src/http/` in nginx's tree.

use std::net::{IpAddr, Ipv6Addr};

/// The parts of a request target nginx's request-line parser
/// (`ngx_http_parse_request_line`, `ngx_http_parse.c`) tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target<'a> {
    /// The host of an absolute-form target (`http://Host:80/x`), before validation.
    pub host: Option<&'a [u8]>,
    /// From the start of the path on: `$request_uri` (`r->unparsed_uri`). For an absolute
    /// target without a path it is `/`; with `?` right after the authority it starts with `?`.
    pub uri: &'a [u8],
    /// The absolute target had `?` right after the authority (`r->empty_path_in_uri`): the
    /// normalized path gets a leading `/`.
    pub empty_path: bool,
}

/// Splits a request target as nginx's request-line parser does; `None` where nginx answers
/// 400 (neither origin-form nor absolute-form, e.g. `*`, or a malformed authority).
pub(super) fn parse_target(target: &[u8]) -> Option<Target<'_>> {
    if target.first() == Some(&b'/') {
        return Some(Target {
            host: None,
            uri: target,
            empty_path: false,
        });
    }
    // scheme: a letter, then letters, digits, '+', '-', '.'; then "://".
    let scheme_len = target
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))
        .unwrap_or(target.len());
    if scheme_len == 0 || !target[0].is_ascii_alphabetic() {
        return None;
    }
    let rest = target[scheme_len..].strip_prefix(b"://")?;
    // host: an IP literal in brackets, or letters, digits, '.', '-'.
    let host_len = if rest.first() == Some(&b'[') {
        1 + rest[1..].iter().position(|&c| c == b']')? + 1
    } else {
        rest.iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')))
            .unwrap_or(rest.len())
    };
    let (host, mut after) = rest.split_at(host_len);
    if let Some(port) = after.strip_prefix(b":") {
        let digits = port.iter().take_while(|c| c.is_ascii_digit()).count();
        after = &port[digits..];
    }
    match after.first() {
        None => Some(Target {
            host: Some(host),
            uri: b"/",
            empty_path: false,
        }),
        Some(b'/') => Some(Target {
            host: Some(host),
            uri: after,
            empty_path: false,
        }),
        Some(b'?') => Some(Target {
            host: Some(host),
            uri: after,
            empty_path: true,
        }),
        Some(_) => None,
    }
}

/// The normalized path (`$uri`) and the query (`$args`) of `uri` (a [`Target::uri`]), as
/// `ngx_http_parse_complex_uri` (`ngx_http_parse.c`) computes them with `merge_slashes on`
/// (nginx's default): `%XX` decoded (a decoded `%`, `#` or `?` stays literal, `%00` is
/// rejected), `//` merged, `.` and `..` segments resolved; the query is everything after the
/// first raw `?` up to a `#`, never decoded. `None` where nginx answers 400: a bad escape or a
/// `..` that climbs above the root.
///
/// nginx runs this parser only when the request-line parser flagged the URI as complex, and
/// it is the identity on the URIs it does not flag, so running it always gives the same bytes.
pub(super) fn normalize(uri: &[u8], empty_path: bool) -> Option<(Vec<u8>, &[u8])> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Usual,
        Slash,
        Dot,
        DotDot,
        Quoted,
        QuotedSecond,
    }
    // nginx's `u -= 4` then back to the previous '/': drop the "/.." just written and the
    // segment before it; climbing above the root is an error.
    fn back_up(u: &mut Vec<u8>) -> Option<()> {
        let mut i = u.len().checked_sub(4)?;
        loop {
            if u[i] == b'/' {
                u.truncate(i + 1);
                return Some(());
            }
            i = i.checked_sub(1)?;
        }
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);

    let mut u = Vec::with_capacity(uri.len() + 1);
    if empty_path {
        u.push(b'/');
    }
    let (mut state, mut quoted_state) = (St::Usual, St::Usual);
    let mut decoded = 0u8;
    // Why the scan stopped: the end of the URI, a '#', or a '?' (the query starts at `p`).
    #[derive(PartialEq)]
    enum Exit {
        End,
        Hash,
        Query,
    }
    let mut exit = Exit::End;
    let mut p = 0;
    // `ch` is the character being looked at; `advance` fetches the next one. A decoded `%XX`
    // is looked at again in the state before the `%`, without advancing.
    let mut ch = 0u8;
    let mut advance = true;
    loop {
        if advance {
            if p == uri.len() {
                break;
            }
            ch = uri[p];
            p += 1;
        }
        advance = true;
        match state {
            St::Usual => match ch {
                b'/' => {
                    state = St::Slash;
                    u.push(ch);
                }
                b'%' => (quoted_state, state) = (state, St::Quoted),
                b'?' => {
                    exit = Exit::Query;
                    break;
                }
                b'#' => {
                    exit = Exit::Hash;
                    break;
                }
                _ => u.push(ch),
            },
            St::Slash => match ch {
                // merge_slashes on: a second '/' is dropped.
                b'/' => {}
                b'.' => {
                    state = St::Dot;
                    u.push(ch);
                }
                b'%' => (quoted_state, state) = (state, St::Quoted),
                b'?' => {
                    exit = Exit::Query;
                    break;
                }
                b'#' => {
                    exit = Exit::Hash;
                    break;
                }
                _ => {
                    state = St::Usual;
                    u.push(ch);
                }
            },
            St::Dot => match ch {
                b'/' => {
                    state = St::Slash;
                    u.pop();
                }
                b'.' => {
                    state = St::DotDot;
                    u.push(ch);
                }
                b'%' => (quoted_state, state) = (state, St::Quoted),
                b'?' | b'#' => {
                    u.pop();
                    exit = if ch == b'?' { Exit::Query } else { Exit::Hash };
                    break;
                }
                _ => {
                    state = St::Usual;
                    u.push(ch);
                }
            },
            St::DotDot => match ch {
                b'/' | b'?' | b'#' => {
                    back_up(&mut u)?;
                    if ch != b'/' {
                        exit = if ch == b'?' { Exit::Query } else { Exit::Hash };
                        break;
                    }
                    state = St::Slash;
                }
                b'%' => (quoted_state, state) = (state, St::Quoted),
                _ => {
                    state = St::Usual;
                    u.push(ch);
                }
            },
            St::Quoted => {
                decoded = hex(ch)?;
                state = St::QuotedSecond;
            }
            St::QuotedSecond => {
                let c = (decoded << 4) | hex(ch)?;
                match c {
                    0 => return None,
                    b'%' | b'#' | b'?' => {
                        state = St::Usual;
                        u.push(c);
                    }
                    _ => {
                        state = quoted_state;
                        ch = c;
                        advance = false;
                    }
                }
            }
        }
    }
    match exit {
        Exit::Hash => Some((u, b"")),
        Exit::Query => {
            let rest = &uri[p..];
            let end = rest.iter().position(|&c| c == b'#').unwrap_or(rest.len());
            Some((u, &rest[..end]))
        }
        // Ran off the end: an escape cannot be left open, a dot segment is finished.
        Exit::End => {
            match state {
                St::Quoted | St::QuotedSecond => return None,
                St::Dot => {
                    u.pop();
                }
                St::DotDot => back_up(&mut u)?,
                St::Usual | St::Slash => {}
            }
            Some((u, b""))
        }
    }
}

/// The host as `ngx_http_validate_host` (`ngx_http_request.c`) leaves it: the port cut off
/// (`[v6]` literals kept whole), one trailing dot dropped, lowercased. `None` where nginx
/// answers 400: empty, `..`, a `/`, a control character or space.
pub(super) fn validate_host(host: &[u8]) -> Option<Vec<u8>> {
    #[derive(PartialEq)]
    enum St {
        Usual,
        Literal,
        Rest,
    }
    let mut state = St::Usual;
    let mut dot_pos = None;
    let mut host_len = host.len();
    for (i, &ch) in host.iter().enumerate() {
        match ch {
            b'.' => {
                if dot_pos.map(|d: usize| d + 1) == Some(i) {
                    return None;
                }
                dot_pos = Some(i);
            }
            b':' if state == St::Usual => {
                host_len = i;
                state = St::Rest;
            }
            b'[' if i == 0 => state = St::Literal,
            b']' if state == St::Literal => {
                host_len = i + 1;
                state = St::Rest;
            }
            b'/' => return None,
            c if c <= 0x20 || c == 0x7f => return None,
            _ => {}
        }
    }
    if host_len > 0 && dot_pos == Some(host_len - 1) {
        host_len -= 1;
    }
    if host_len == 0 {
        return None;
    }
    Some(host[..host_len].to_ascii_lowercase())
}

/// The raw value of argument `name` (lowercase) in `args`, as `ngx_http_arg`
/// (`ngx_http_parse.c`): the name matches case-insensitively at the start or after `&` and
/// must be followed by `=`; the value runs to the next `&`, not decoded. `k=` gives an empty
/// value, `k` alone (no `=`) is not a match.
pub(super) fn arg<'a>(args: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    if name.is_empty() || args.len() <= name.len() {
        return None;
    }
    // The name must end before the last byte, leaving room for its '='.
    for p in 0..args.len() - name.len() {
        if !args[p..p + name.len()].eq_ignore_ascii_case(name) {
            continue;
        }
        if (p == 0 || args[p - 1] == b'&') && args[p + name.len()] == b'=' {
            let value = &args[p + name.len() + 1..];
            let end = value.iter().position(|&c| c == b'&').unwrap_or(value.len());
            return Some(&value[..end]);
        }
    }
    None
}

/// The value of cookie `name` in one `Cookie` header value, as
/// `ngx_http_parse_multi_header_lines_internal` with `;` (`ngx_http_parse.c`, nginx ≥ 1.23):
/// pairs are separated by `;`, spaces (not tabs) around the name and after `=` are skipped,
/// the name matches case-insensitively, the value runs to the next `;` (trailing spaces kept).
/// (nginx 1.22 also split pairs at `,`.)
pub(super) fn cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    if name.len() > header.len() {
        return None;
    }
    let end = header.len();
    let mut start = 0;
    while start < end {
        let matched = header[start..]
            .get(..name.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(name));
        if matched {
            let mut s = start + name.len();
            while s < end && header[s] == b' ' {
                s += 1;
            }
            if s < end && header[s] == b'=' {
                s += 1;
                while s < end && header[s] == b' ' {
                    s += 1;
                }
                let len = header[s..]
                    .iter()
                    .position(|&c| c == b';')
                    .unwrap_or(end - s);
                return Some(&header[s..s + len]);
            }
            start = s;
        }
        // Skip to after the next ';' and the spaces that follow.
        while start < end {
            start += 1;
            if header[start - 1] == b';' {
                break;
            }
        }
        while start < end && header[start] == b' ' {
            start += 1;
        }
    }
    None
}

/// Whether nginx keeps a request header of this name: with its defaults
/// (`ignore_invalid_headers on`, `underscores_in_headers off`) a name with anything but
/// letters, digits and `-` is dropped (`ngx_http_parse_header_line`), so no `$http_` sees it.
pub(super) fn valid_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Whether header `name` is what `$http_<var>` names: lowercased, `-` read as `_`
/// (`ngx_http_variable_unknown_header`, `ngx_http_variables.c`).
pub(super) fn header_matches(name: &[u8], var: &[u8]) -> bool {
    name.len() == var.len()
        && name.iter().zip(var).all(|(&n, &v)| {
            let n = if n == b'-' {
                b'_'
            } else {
                n.to_ascii_lowercase()
            };
            n == v
        })
}

/// `$remote_addr`: the peer's address as `ngx_sock_ntop` writes it, IPv6 by `ngx_inet6_ntop`
/// (`src/core/ngx_inet.c`): the first longest run of two or more zero groups becomes `::`,
/// groups in lowercase hex, and `::ffff:a.b.c.d` / `::a.b.c.d` keep the IPv4 tail.
pub(super) fn remote_addr(ip: IpAddr, out: &mut Vec<u8>) {
    use std::io::Write;
    match ip {
        IpAddr::V4(v4) => {
            let _ = write!(out, "{v4}");
        }
        IpAddr::V6(v6) => inet6_ntop(v6, out),
    }
}

fn inet6_ntop(addr: Ipv6Addr, out: &mut Vec<u8>) {
    use std::io::Write;
    let p = addr.octets();
    let groups = addr.segments();
    // The first longest run of zero groups, if longer than one.
    let (mut zero, mut max, mut run, mut last) = (None, 1, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g != 0 {
            if max < run {
                (zero, max) = (Some(last), run);
            }
            run = 0;
            continue;
        }
        if run == 0 {
            last = i;
        }
        run += 1;
    }
    if max < run {
        (zero, max) = (Some(last), run);
    }
    let mut n = 8;
    if zero == Some(0) {
        if (max == 5 && p[10] == 0xff && p[11] == 0xff)
            || max == 6
            || (max == 7 && p[14] != 0 && p[15] != 1)
        {
            n = 6;
        }
        out.push(b':');
    }
    let mut i = 0;
    while i < n {
        if Some(i) == zero {
            out.push(b':');
            i += max;
            continue;
        }
        let _ = write!(out, "{:x}", groups[i]);
        if i < 7 {
            out.push(b':');
        }
        i += 1;
    }
    if n == 6 {
        let _ = write!(out, "{}.{}.{}.{}", p[12], p[13], p[14], p[15]);
    }
}
