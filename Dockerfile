# Trading Hydra in a container: the real-time loop against Alpaca, paper unless you say live twice.
#
#   docker build -t trading-hydra .
#   docker run -d --name hydra --stop-timeout 60 \
#     -v "$PWD/.env:/app/.env:ro" -v hydra-state:/app/state -v hydra-logs:/app/logs trading-hydra
#   docker exec hydra python -m engine status        # also halt / resume / health: they never take the run's lock
#   docker stop hydra                                # SIGTERM: the tick in progress ends, then run_end, exit 0
#
# Keys: mount .env (python-dotenv reads it, quotes included), or pass `--env-file .env` with unquoted values
# (Docker keeps quotes as part of the value). Your own config: mount it over /app/config (and machines, rules).
# One container per state volume: a second engine on the same volume exits 1 at once.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY schemas ./schemas
COPY config ./config
COPY machines ./machines
COPY rules ./rules
# `report --prompt` fills in the analyst prompt, read beside the package (engine/operator/report.py PROMPT_FILE).
COPY tools/analyst_prompt.txt ./tools/
# Editable: the engine finds schemas/, config/, machines/ and rules/ beside its package (engine/paths.py).
# tzdata: the configured time zones, whether or not the base image ships /usr/share/zoneinfo.
# compileall: the engine's bytecode, written once here (PYTHONDONTWRITEBYTECODE keeps any run from writing it, and
# an editable install does not), so the health check every 30 s does not compile the whole engine each time.
RUN pip install -e . tzdata \
    && python -m compileall -q engine \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin hydra \
    && mkdir -p state logs \
    && chown hydra:hydra state logs
USER hydra
VOLUME ["/app/state", "/app/logs"]

# The engine stops on SIGTERM after the tick in progress; give it time (`docker run --stop-timeout 60`, or
# `stop_grace_period: 60s` in compose): Docker's default of 10 s can cut a tick stuck on a slow broker.
STOPSIGNAL SIGTERM
# Healthy while the last tick is younger than 3 x runner.loop_interval_seconds + 30 s. `|| exit 1`: Docker
# reserves exit code 2, which the engine uses for a bad config.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD python -m engine health || exit 1

# Paper: live trading needs ALPACA_PAPER=false *and* `run --broker alpaca --live`.
CMD ["python", "-m", "engine", "run", "--broker", "alpaca"]
