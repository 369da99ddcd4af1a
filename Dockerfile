# vqbot on a GPU host: `docker compose up` (see docker-compose.yml), or
#   docker build -t vqbot . && docker run --gpus all --env-file .env -v ./models:/models -v ./data:/data vqbot
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VQBOT_MODEL_DIR=/models \
    VQBOT_DATABASE=/data/vqbot.sqlite3 \
    HF_HOME=/models/hf

# A C compiler: torch.compile's Triton kernels (the worker compiles on CUDA by default) build their
# launchers with it at run time, and the runtime image has none.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY db ./db
COPY engine ./engine
COPY jobspec ./jobspec
COPY worker ./worker
COPY vqbot_cli ./vqbot_cli
RUN pip install .

VOLUME ["/models", "/data"]
# Runs as an unprivileged user; the volumes must be writable by uid 1000.
RUN useradd --uid 1000 --create-home vqbot && mkdir -p /models /data && chown vqbot /models /data
USER vqbot
ENTRYPOINT ["vqbot"]
CMD ["run"]
