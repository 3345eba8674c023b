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
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
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
