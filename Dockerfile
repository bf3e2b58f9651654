# metasrgan on CPUs: `docker build -t metasrgan .`, then e.g.
#   docker run --rm -v /data:/data metasrgan bids /data/ds /data/ds/derivatives/metasrgan \
#       participant --participant-label 01 --scale 2
# The entry point is the `metasrgan` command; docs/apptainer.md turns the image into an
# Apptainer/Singularity image for clusters.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
LABEL org.opencontainers.image.title="metasrgan" \
      org.opencontainers.image.description="Arbitrary-scale super-resolution of brain MRI (Meta-SRGAN); BIDS App" \
      org.opencontainers.image.licenses="MIT"

# Outputs are the user's; caches go where any user (Apptainer runs as the caller) may write.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib

WORKDIR /opt/metasrgan
# torch first, from the CPU-only index: the default wheel brings 2+ GB of CUDA libraries.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md LICENSE CITATION.cff ./
COPY src ./src
# training recipes: metasrgan train --config /opt/metasrgan/configs/quick.yaml
COPY configs ./configs
# the project itself, from this folder: its dependencies' ranges are in pyproject.toml
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[bids]" \
    && metasrgan --version \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin metasrgan

USER 1000:1000
WORKDIR /data
ENTRYPOINT ["metasrgan"]
CMD ["--help"]
