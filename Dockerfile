# morgate: multi-stage image. The build stage compiles on Debian bookworm; the runtime stage is
# bookworm-slim with only the shared libraries, running as an unprivileged user. Both stages
# install packages through scripts/deps, the one dependency list of the project.
#
#   docker build -t morgate .
#   docker run --rm -v morgate-data:/var/lib/morgate morgate morgatectl init
#   docker run -v morgate-data:/var/lib/morgate -p 8080:8080 morgate        (embedded defaults)
#   docker run -v morgate-data:/var/lib/morgate -v ./conf:/etc/morgate -p 8080:8080 \
#       morgate morgate --config /etc/morgate/morgate.json               (your config)
# Inside the container the API listens on 0.0.0.0:8080 and /healthz, /readyz, /metrics on
# 0.0.0.0:9090 (MORGATE_LISTEN / MORGATE_ADMIN_LISTEN); publish 9090 only to your monitoring.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/deps scripts/deps
RUN scripts/deps --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make MODE=release all \
 && make MODE=release install PREFIX=/usr/local DESTDIR=/out

FROM debian:bookworm-slim
COPY scripts/deps /tmp/deps
RUN /tmp/deps --runtime && rm -rf /var/lib/apt/lists/* /tmp/deps \
 && useradd --system --uid 10001 --home-dir /var/lib/morgate --shell /usr/sbin/nologin morgate \
 && mkdir -p /var/lib/morgate /etc/morgate \
 && chown morgate:morgate /var/lib/morgate && chmod 0700 /var/lib/morgate
COPY --from=build /out/usr/local/ /usr/local/
COPY config/ /etc/morgate/
USER morgate
WORKDIR /var/lib/morgate
ENV MORGATE_DB=/var/lib/morgate/morgate.db \
    MORGATE_PEPPER_FILE=/var/lib/morgate/morgate.pepper \
    MORGATE_LISTEN=0.0.0.0:8080 \
    MORGATE_ADMIN_LISTEN=0.0.0.0:9090
VOLUME ["/var/lib/morgate", "/etc/morgate"]
EXPOSE 8080 9090
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT []
CMD ["morgate"]
