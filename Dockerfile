# The service in a container. It runs as uid 10001, gid 10001 ("hero"), never root.
#
#   docker build -t hero_codescalers .
#   docker run -d --name hero_codescalers \
#       -v "$HERO_SOCKET_DIR:/run/hero" -v hero_codescalers_state:/var/lib/hero_codescalers \
#       --group-add "$(stat -c %g "$HERO_SOCKET_DIR/hero_proc/rpc.sock")" \
#       -e HERO_CODESCALERS_SOCKET_GROUP="$(stat -c %g "$HERO_SOCKET_DIR/hero_proc/rpc.sock")" \
#       hero_codescalers
#
# /run/hero is the host's $HERO_SOCKET_DIR: hero_proc's socket is there, and the service
# adds hero_codescalers/rpc.sock. --group-add gives the container the group of hero_proc's
# socket (to reach it); HERO_CODESCALERS_SOCKET_GROUP gives the service's socket the same
# group (so that the host's callers in it may connect; its mode is 0660). The directory
# must let uid 10001 or that group create hero_codescalers/ in it (or create it beforehand,
# owned by 10001). HEALTHCHECK: `hero_codescalers health` exits 0 ok, 3 unreachable,
# 4 degraded (hero_proc does not answer); every failure is Docker's 1, unhealthy.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY openrpc/sdk/hero_codescalers_sdk ./openrpc/sdk/hero_codescalers_sdk
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 hero \
    && useradd --system --uid 10001 --gid hero --no-create-home --shell /usr/sbin/nologin hero \
    && install -d -o hero -g hero -m 0755 /run/hero \
    && install -d -o hero -g hero -m 0700 /var/lib/hero_codescalers
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/hero_codescalers-*.whl \
    && rm -rf /wheels
ENV HERO_SOCKET_DIR=/run/hero \
    HERO_CODESCALERS_STATE_DIR=/var/lib/hero_codescalers \
    HERO_CODESCALERS_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/run/hero", "/var/lib/hero_codescalers"]
USER 10001:10001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "hero_codescalers health > /dev/null || exit 1"]
ENTRYPOINT ["hero_codescalers"]
CMD ["serve"]
