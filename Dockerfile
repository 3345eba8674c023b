# Build stage: compile the release binaries.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin ringproxy --bin ringproxy-node

# Runtime stage: just the binaries, a non-root user and the config path.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home ringproxy \
 && mkdir -p /etc/ringproxy
COPY --from=build /src/target/release/ringproxy /src/target/release/ringproxy-node /usr/local/bin/
COPY config/ringproxy.toml /etc/ringproxy/ringproxy.toml
USER ringproxy
EXPOSE 8080 9090
ENV RINGPROXY_CONFIG=/etc/ringproxy/ringproxy.toml
ENTRYPOINT ["ringproxy"]
