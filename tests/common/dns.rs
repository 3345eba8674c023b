//! A small authoritative DNS server on 127.0.0.1:0 (UDP and TCP on the same port) for the
//! discovery tests. It answers A, AAAA and SRV from a table the test changes while it runs, says
//! NXDOMAIN for names it doesn't hold, and fails on purpose when told: an rcode for every query
//! (`fail_with`), silence (`drop_all`, what a resolver sees as a timeout), or truncated UDP
//! answers (`truncate_udp`, to push the resolver onto TCP). Messages go through hickory-proto's
//! `Message` (via hickory-resolver's re-export, so always the resolver's own version); the only
//! hand-written wire detail is TCP's two-byte length prefix.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// One SRV record as the test writes it.
#[derive(Debug, Clone)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

pub fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
    SrvRecord {
        priority,
        weight,
        port,
        target: target.to_string(),
    }
}

#[derive(Default)]
struct Entry {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    srv: Vec<SrvRecord>,
}

enum Mode {
    Answer,
    Fail(ResponseCode),
    Drop,
}

struct Zone {
    names: HashMap<String, Entry>,
    mode: Mode,
    ttl: u32,
    truncate_udp: bool,
}

/// The running server; stops (both sockets, every TCP connection) on drop.
pub struct TestDns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Sets the A records of `name` (an empty list: the name exists with no A records, i.e.
    /// NOERROR without answers). Names are case-insensitive, trailing dot optional.
    pub fn set_a(&self, name: &str, ips: Vec<Ipv4Addr>) {
        self.edit(name, |entry| entry.a = ips);
    }

    pub fn set_aaaa(&self, name: &str, ips: Vec<Ipv6Addr>) {
        self.edit(name, |entry| entry.aaaa = ips);
    }

    pub fn set_srv(&self, name: &str, records: Vec<SrvRecord>) {
        self.edit(name, |entry| entry.srv = records);
    }

    /// Forgets `name`: NXDOMAIN from now on.
    pub fn remove(&self, name: &str) {
        self.zone().names.remove(&key(name));
    }

    /// Every query gets this rcode (SERVFAIL, REFUSED, ...) and no answers.
    pub fn fail_with(&self, rcode: ResponseCode) {
        self.zone().mode = Mode::Fail(rcode);
    }

    /// Every query is read and never answered: the resolver times out.
    pub fn drop_all(&self) {
        self.zone().mode = Mode::Drop;
    }

    /// Back to answering from the table.
    pub fn answer_normally(&self) {
        self.zone().mode = Mode::Answer;
    }

    /// TTL of every record from now on (default 1).
    pub fn set_ttl(&self, ttl: u32) {
        self.zone().ttl = ttl;
    }

    /// UDP answers come back empty with the TC bit set, as when they don't fit: a resolver
    /// must retry over TCP.
    pub fn truncate_udp(&self, on: bool) {
        self.zone().truncate_udp = on;
    }

    /// Queries received so far, answered or not, over either transport.
    pub fn queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst) + self.tcp_queries.load(Ordering::SeqCst)
    }

    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` queries have arrived in total; panics after `within`.
    pub async fn wait_queries(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.queries() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "DNS server saw {} queries in {within:?}, expected at least {n}",
                self.queries()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn zone(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.zone.lock().unwrap()
    }

    fn edit(&self, name: &str, change: impl FnOnce(&mut Entry)) {
        change(self.zone().names.entry(key(name)).or_default());
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the server with an empty table (everything NXDOMAIN), TTL 1.
pub async fn start_dns() -> TestDns {
    // UDP picks the port, TCP takes the same one; on the rare clash, pick again.
    let mut tries = 0;
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp),
            Err(e) => {
                tries += 1;
                assert!(tries < 20, "no port free for both UDP and TCP: {e}");
            }
        }
    };
    let addr = udp.local_addr().unwrap();
    let zone = Arc::new(Mutex::new(Zone {
        names: HashMap::new(),
        mode: Mode::Answer,
        ttl: 1,
        truncate_udp: false,
    }));
    let udp_queries = Arc::new(AtomicUsize::new(0));
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let tasks = vec![
        tokio::spawn(serve_udp(udp, zone.clone(), udp_queries.clone())),
        tokio::spawn(serve_tcp(tcp, zone.clone(), tcp_queries.clone())),
    ];
    TestDns {
        addr,
        zone,
        udp_queries,
        tcp_queries,
        tasks,
    }
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>, queries: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 4096];
    loop {
        // An error on an unconnected UDP socket is not expected; stop rather than spin, and
        // the test's bounded waits will say so.
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let Ok(request) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let reply = answer(&zone.lock().unwrap(), &request, true);
        if let Some(bytes) = reply.and_then(|m| m.to_vec().ok()) {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>, queries: Arc<AtomicUsize>) {
    // Owned here so aborting this task closes every connection too.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_tcp_connection(stream, zone.clone(), queries.clone()));
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        queries.fetch_add(1, Ordering::SeqCst);
        let Ok(request) = Message::from_vec(&buf) else {
            return;
        };
        let reply = answer(&zone.lock().unwrap(), &request, false);
        let Some(bytes) = reply.and_then(|m| m.to_vec().ok()) else {
            continue;
        };
        let Ok(len) = u16::try_from(bytes.len()) else {
            return;
        };
        if stream.write_all(&len.to_be_bytes()).await.is_err()
            || stream.write_all(&bytes).await.is_err()
        {
            return;
        }
    }
}

/// The reply to `request` from `zone`, or `None` to stay silent.
fn answer(zone: &Zone, request: &Message, udp: bool) -> Option<Message> {
    let id = request.metadata.id;
    let op_code = request.metadata.op_code;
    let mut response = match zone.mode {
        Mode::Drop => return None,
        Mode::Fail(rcode) => Message::error_msg(id, op_code, rcode),
        Mode::Answer => Message::response(id, op_code),
    };
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    for query in &request.queries {
        response.add_query(query.clone());
    }
    if !matches!(zone.mode, Mode::Answer) {
        return Some(response);
    }
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return Some(response);
    };
    if udp && zone.truncate_udp {
        response.metadata.truncation = true;
        return Some(response);
    }
    let Some(entry) = zone.names.get(&key(&query.name().to_ascii())) else {
        response.metadata.response_code = ResponseCode::NXDomain;
        return Some(response);
    };
    let name = query.name().clone();
    let ttl = zone.ttl;
    let data: Vec<RData> = match query.query_type() {
        RecordType::A => entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
        RecordType::AAAA => entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
        RecordType::SRV => entry
            .srv
            .iter()
            .map(|r| {
                let target = Name::from_ascii(&r.target).unwrap();
                RData::SRV(SRV::new(r.priority, r.weight, r.port, target))
            })
            .collect(),
        _ => Vec::new(),
    };
    for data in data {
        response.add_answer(Record::from_rdata(name.clone(), ttl, data));
    }
    Some(response)
}

/// Table key: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
