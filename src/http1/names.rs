//! What a header name means to the relay, decided once per line while a head is parsed: the
//! parsers act on framing and `Connection` lines, and record in [`Lines`] which lines the
//! rewrite drops or treats apart, so no later pass compares names again.

/// The header names the relay treats apart from end-to-end ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name {
    /// Anything else: forwarded as received.
    EndToEnd,
    /// Always hop-by-hop (RFC 9110 §7.6.1): `Keep-Alive`, `Proxy-Connection`, `TE`,
    /// `Trailer`, `Proxy-Authenticate`, `Proxy-Authorization`.
    Hop,
    /// `Upgrade`: hop-by-hop, and a request with it goes to hyper.
    Upgrade,
    /// `Connection`: hop-by-hop, and names more.
    Connection,
    /// `Content-Length`: kept, even when `Connection` names it.
    ContentLength,
    /// `Transfer-Encoding`: kept, even when `Connection` names it.
    TransferEncoding,
    /// `Expect`.
    Expect,
    /// `Host`.
    Host,
    /// `X-Forwarded-For`.
    ForwardedFor,
    /// `X-Forwarded-Proto`.
    ForwardedProto,
}

impl Name {
    /// Classifies `name` by its length first: most names are settled by one compare.
    pub(super) fn of(name: &[u8]) -> Name {
        let is = |known: &[u8]| eq_lower(name, known);
        match name.len() {
            2 if is(b"te") => Name::Hop,
            4 if is(b"host") => Name::Host,
            6 if is(b"expect") => Name::Expect,
            7 if is(b"upgrade") => Name::Upgrade,
            7 if is(b"trailer") => Name::Hop,
            10 if is(b"connection") => Name::Connection,
            10 if is(b"keep-alive") => Name::Hop,
            14 if is(b"content-length") => Name::ContentLength,
            15 if is(b"x-forwarded-for") => Name::ForwardedFor,
            16 if is(b"proxy-connection") => Name::Hop,
            17 if is(b"transfer-encoding") => Name::TransferEncoding,
            17 if is(b"x-forwarded-proto") => Name::ForwardedProto,
            18 if is(b"proxy-authenticate") => Name::Hop,
            19 if is(b"proxy-authorization") => Name::Hop,
            _ => Name::EndToEnd,
        }
    }

    /// Hop-by-hop by name alone (`Connection` included), whatever `Connection` lists.
    pub(super) fn is_hop(self) -> bool {
        matches!(self, Name::Hop | Name::Upgrade | Name::Connection)
    }

    /// A framing header: it stays even when a `Connection` line names it.
    pub(super) fn is_framing(self) -> bool {
        matches!(self, Name::ContentLength | Name::TransferEncoding)
    }
}

/// `text` equals `lower` but for ASCII case, where `lower` is lowercase letters, digits and
/// `-`, and `text` came through the parsers (a header name, or a token of a header value):
/// its bytes are tab, space, visible ASCII or above 0x7F. Compares eight bytes at a time.
///
/// Why setting bit 0x20 of each byte is exact here: it maps a byte onto a lowercase letter
/// only from that letter in either case, onto a digit only from the digit or a control byte
/// 0x10–0x19, onto `-` only from `-` or CR; the parsers let no control byte but tab through,
/// and tab becomes `)`, which is not in `lower`.
pub(super) fn eq_lower(text: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    let n = lower.len();
    if text.len() != n {
        return false;
    }
    if n < 8 {
        return text.iter().zip(lower).all(|(&t, &l)| t | 0x20 == l);
    }
    const CASE: u64 = 0x2020_2020_2020_2020;
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    // Eight-byte words from the start; the last one ends at the end, overlapping the one before.
    let mut at = 0;
    loop {
        if word(text, at) | CASE != word(lower, at) | CASE {
            return false;
        }
        if at + 8 == n {
            return true;
        }
        at = (at + 8).min(n - 8);
    }
}

/// Which header lines of a head have a name the rewrite acts on: bit `i` is line `i` (the
/// parsers take at most 100 lines; `head.rs` asserts that fits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lines {
    /// Hop-by-hop by name, `Connection` and `Upgrade` included.
    pub hop: u128,
    /// `Connection`.
    pub connection: u128,
    /// `Upgrade`.
    pub upgrade: u128,
    /// `Host`.
    pub host: u128,
    /// `X-Forwarded-For`.
    pub forwarded_for: u128,
    /// `X-Forwarded-Proto`.
    pub forwarded_proto: u128,
}

impl Lines {
    /// Records that line `i` is named `name`.
    pub(super) fn add(&mut self, i: usize, name: Name) {
        let bit = 1u128 << i;
        if name.is_hop() {
            self.hop |= bit;
        }
        match name {
            Name::Connection => self.connection |= bit,
            Name::Upgrade => self.upgrade |= bit,
            Name::Host => self.host |= bit,
            Name::ForwardedFor => self.forwarded_for |= bit,
            Name::ForwardedProto => self.forwarded_proto |= bit,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the parsers let through in names and values.
    fn parsed_bytes() -> impl Iterator<Item = u8> {
        std::iter::once(b'\t').chain(0x20..=0x7e).chain(0x80..=0xff)
    }

    #[test]
    fn eq_lower_agrees_with_eq_ignore_ascii_case_byte_for_byte() {
        let targets = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        for &t in targets {
            for x in parsed_bytes() {
                assert_eq!(
                    eq_lower(&[x], &[t]),
                    x.eq_ignore_ascii_case(&t),
                    "{x:#04x} vs {t:#04x}"
                );
            }
        }
    }

    #[test]
    fn eq_lower_checks_every_position_of_every_length() {
        let alphabet = b"proxy-authorization-0123456789";
        for n in 1..=alphabet.len() {
            let lower = &alphabet[..n];
            let upper = lower.to_ascii_uppercase();
            assert!(eq_lower(lower, lower));
            assert!(
                eq_lower(&upper, lower),
                "{}",
                String::from_utf8_lossy(&upper)
            );
            assert!(!eq_lower(&lower[..n - 1], lower), "shorter");
            // One byte off, at each position in turn: caught wherever the words overlap.
            for at in 0..n {
                for x in parsed_bytes() {
                    let mut text = upper.clone();
                    text[at] = x;
                    assert_eq!(
                        eq_lower(&text, lower),
                        text.eq_ignore_ascii_case(lower),
                        "{} vs {}",
                        String::from_utf8_lossy(&text),
                        String::from_utf8_lossy(lower)
                    );
                }
            }
        }
    }

    #[test]
    fn names_are_classified_in_any_case() {
        assert_eq!(Name::of(b"Content-Length"), Name::ContentLength);
        assert_eq!(Name::of(b"TRANSFER-ENCODING"), Name::TransferEncoding);
        assert_eq!(Name::of(b"x-Forwarded-Proto"), Name::ForwardedProto);
        assert_eq!(Name::of(b"Proxy-Authorization"), Name::Hop);
        assert_eq!(Name::of(b"Keep-Alive"), Name::Hop);
        assert_eq!(Name::of(b"Connection"), Name::Connection);
        assert_eq!(Name::of(b"Content-Lengt_"), Name::EndToEnd);
        assert_eq!(Name::of(b"Content-Type"), Name::EndToEnd);
        assert_eq!(Name::of(b"Hos"), Name::EndToEnd);
    }
}
