//! `ringproxy demo`: three in-process cache stand-ins behind a real proxy, plus a fourth that is
//! not in the ring yet, so a join can be tried with curl.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::server::{ServeError, Server};

/// Serves `name\n` to every request on `listener` until `shutdown` fires.
pub async fn named_backend(listener: TcpListener, name: String, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let body = Bytes::from(format!("{name}\n"));
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let body = body.clone();
                async move {
                    let mut res = Response::new(Full::new(body));
                    res.headers_mut()
                        .insert("content-type", "text/plain".parse().expect("static"));
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs the demo until `shutdown` fires.
pub async fn run(shutdown: CancellationToken) -> Result<(), ServeError> {
    let mut addrs: Vec<(String, SocketAddr)> = Vec::new();
    for name in ["cache-a", "cache-b", "cache-c", "cache-d"] {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("static");
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "demo backend",
                addr,
                source,
            })?;
        addrs.push((name.to_string(), listener.local_addr().expect("bound")));
        tokio::spawn(named_backend(listener, name.to_string(), shutdown.clone()));
    }
    // The demo goes through the same config parser as a real deployment.
    let mut text = String::from(
        "[proxy]\nlisten = \"127.0.0.1:8080\"\nshutdown_grace = \"2s\"\ndebug_headers = true\n\
         [admin]\nlisten = \"127.0.0.1:9090\"\n\
         [affinity]\nkey = [\"header:x-user-id\", \"query:uid\"]\n",
    );
    for (id, addr) in &addrs[..3] {
        text.push_str(&format!(
            "[[backends]]\nid = \"{id}\"\naddress = \"{addr}\"\n"
        ));
    }
    let config = Config::parse(&text).expect("the demo config is valid");
    let server = Server::bind(&config).await?;
    let (p, a) = (server.proxy_addr(), server.admin_addr());
    let d = addrs[3].1;
    println!(
        r#"ringproxy demo: proxy on http://{p}, admin on http://{a}
backends cache-a, cache-b, cache-c are in the ring; cache-d ({d}) is running but not yet in it.

Open http://{a}/ in a browser for the status page (the ring, live figures, previews).

Try:
  curl -H 'x-user-id: 42' http://{p}/                    # the same user always gets the same cache
  curl 'http://{a}/route?key=42'                         # ask which backend owns a key
  for u in $(seq 1 12); do curl -s -H "x-user-id: user-$u" http://{p}/; done
  curl -X POST http://{a}/ring/plan -d '{{"join": [{{"id": "cache-d", "address": "{d}"}}]}}'   # what a join would move
  curl -X PUT http://{a}/backends/cache-d -d '{{"address": "{d}"}}'   # join cache-d
  for u in $(seq 1 12); do curl -s -H "x-user-id: user-$u" http://{p}/; done   # only keys that moved to cache-d changed
  curl http://{a}/ring                                   # each backend's share of the hash space
  curl -X DELETE http://{a}/backends/cache-d             # leave: its keys go back where they were
Press Ctrl-C to stop."#
    );
    server.run(shutdown).await?;
    Ok(())
}
