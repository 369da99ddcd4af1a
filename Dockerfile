# vqbot on a GPU host: `docker compose up -d` (see docker-compose.yml), or
#   docker build -t vqbot . && docker run --gpus all --env-file .env -v ./models:/models -v ./data:/data vqbot
#
# The torch the project is tested and measured with: torch 2.14.1 and torchvision 0.29.1, pinned as
# .ci/run pins them (tests/cli/test_container_files.py keeps the two equal). Its PyPI wheel
# (2.14.1+cu130) brings CUDA 13.0's runtime, cuDNN, NCCL and Triton as pip packages, so the base needs
# no CUDA of its own (a CUDA base image would only add a second, unused copy): a slim Python of the
# version the tests run on (3.11), and on the host the NVIDIA driver (580 or newer for CUDA 13.0) and
# the NVIDIA Container Toolkit. Not built here (no Docker engine where vqbot is developed): see README.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    VQBOT_MODEL_DIR=/models \
    VQBOT_DATABASE=/data/vqbot.sqlite3 \
    VQBOT_DATA_DIR=/data \
    HF_HOME=/models/hf

# A C compiler: torch.compile's Triton kernels (the worker compiles on CUDA by default) build their
# launchers with it at run time (Python's headers come with this image).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*

# torch in a layer of its own (about 4 GB with its CUDA libraries): changing vqbot's code rebuilds only what follows.
RUN pip install torch==2.14.1 torchvision==0.29.1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY db ./db
COPY engine ./engine
COPY jobspec ./jobspec
COPY worker ./worker
COPY vqbot_cli ./vqbot_cli
RUN pip install .

# An unprivileged user owns the volumes' mount points. The chown comes before VOLUME: once a path is
# declared a volume, later changes to it in the build are thrown away. Host folders mounted there
# must be writable by uid 1000 too (docker-compose.yml says how).
RUN useradd --uid 1000 --create-home vqbot && mkdir -p /models /data && chown vqbot:vqbot /models /data
VOLUME ["/models", "/data"]
USER vqbot

# Healthy while this container's bot is connected to Discord and its workers report (both read from
# the database, see `vqbot health`); the start period covers the first download and compile.
HEALTHCHECK --interval=30s --timeout=20s --start-period=10m --retries=3 CMD ["vqbot", "health"]

ENTRYPOINT ["vqbot"]
CMD ["run"]
