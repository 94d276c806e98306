# The service in a container. Its socket directory is a volume shared with
# hero_proc's: mount the host's $HERO_SOCKET_DIR at /run/hero.
#   docker build -t hero_codescalers .
#   docker run -v "$HERO_SOCKET_DIR:/run/hero" hero_codescalers
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hero
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV HERO_SOCKET_DIR=/run/hero \
    HERO_CODESCALERS_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/run/hero"]
USER hero
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["hero_codescalers", "health"]
ENTRYPOINT ["hero_codescalers"]
CMD ["serve"]
