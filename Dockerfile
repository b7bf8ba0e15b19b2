# syntax=docker/dockerfile:1
#
# warren: multi-stage build. The runtime image holds only the broker binary and the default
# config, runs as an unprivileged user, and keeps its data in the /var/lib/warren volume.
#
#   docker build -t warren .
#   docker run --rm -p 5672:5672 -p 15672:15672 -v warren-data:/var/lib/warren warren
#
# Clients reaching the container through a port mapping do not come from loopback, so the
# default guest user (loopback-only, as in RabbitMQ) cannot log in from them: mount a config
# with your own users (`-v ./my.toml:/etc/warren/config.toml:ro`), or, for local experiments
# only, pass `-e WARREN_GUEST_LOOPBACK_ONLY=false`.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin warren \
    && install -D -m 0755 target/release/warren /out/warren

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 warren \
    && useradd --system --uid 10001 --gid warren --home-dir /var/lib/warren \
       --no-create-home --shell /usr/sbin/nologin warren \
    && install -d -o warren -g warren -m 0750 /var/lib/warren \
    && install -d -m 0755 /etc/warren
COPY --from=builder /out/warren /usr/local/bin/warren
COPY config.toml /etc/warren/config.toml

ENV WARREN_CONFIG=/etc/warren/config.toml \
    WARREN_DATA_DIR=/var/lib/warren \
    WARREN_BIND=0.0.0.0

USER warren:warren
WORKDIR /var/lib/warren
VOLUME /var/lib/warren
# 5672: AMQP 0-9-1; 15672: HTTP management API, /metrics and the dashboard; 5671: AMQP over
# TLS when [tls] in the config has a certificate.
EXPOSE 5672 15672 5671
# SIGTERM closes every connection with 320 CONNECTION_FORCED and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/warren"]
CMD ["serve"]
