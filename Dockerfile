# segdial in one CPU image: the HTTP service (segdial serve), the Rasa action server (segdial
# actions), the migrations (segdial db upgrade) and training (segdial train). docker-compose.yml
# runs each as a service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1

WORKDIR /app

# torch first, from PyTorch's CPU index: the package's torch==2.13.0 is then already met, and pip
# never fetches a CUDA build (gigabytes this image does not need).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY dialogue ./dialogue
COPY metarl_core ./metarl_core
COPY simulators ./simulators
COPY segdial ./segdial
RUN pip install .

COPY models ./models
COPY configs ./configs

# The package lives in site-packages, so the shipped policy and NLU are named by path.
ENV SEGDIAL_MODEL_PATH=/app/models/default \
    SEGDIAL_NLU_PATH=/app/models/nlu \
    SEGDIAL_HOST=0.0.0.0

RUN useradd --create-home --uid 1000 segdial && chown -R segdial /app
USER segdial

EXPOSE 8000 5055
CMD ["segdial", "serve"]
